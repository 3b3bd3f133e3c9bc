//! CSV export and import, streaming in batches (memory stays bounded whatever the size), with a
//! progress bar when standard error is a terminal.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app;
use crate::config::Config;
use crate::domain::import::ImportVerdict;
use crate::domain::vente::VenteFields;
use crate::domain::version::system_clock;
use crate::domain::{NewVente, Vente, VenteId};
use crate::store::Store;
use crate::ventes::{ImportLine, ImportMode, Ventes};

pub const HEADER: [&str; 7] = ["id", "produit", "montant", "date_vente", "region", "updated_at", "deleted"];
const BATCH: usize = 5_000;

/// A progress bar on standard error, hidden when it is not a terminal.
pub fn progress_bar(total: Option<u64>, unit: &str) -> ProgressBar {
    let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    let template = if total.is_some() {
        format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, reste {{eta}})")
    } else {
        format!("{{spinner}} {{pos}} {unit} ({{per_sec}})")
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn record(v: &Vente) -> [String; 7] {
    [
        v.id.to_string(),
        v.produit.to_string(),
        v.montant.to_string(),
        v.date_vente.to_string(),
        v.region.to_string(),
        v.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        v.deleted.to_string(),
    ]
}

/// Streams every sale of `store` as CSV, in id order; returns how many rows were written.
pub async fn export(store: &dyn Store, out: impl Write, include_deleted: bool, progress: &ProgressBar) -> anyhow::Result<u64> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(HEADER)?;
    let mut after = None;
    let mut count = 0;
    loop {
        let batch = store.scan(after, BATCH as u32, include_deleted).await?;
        for vente in &batch {
            writer.write_record(record(vente))?;
        }
        count += batch.len() as u64;
        progress.inc(batch.len() as u64);
        match batch.last() {
            Some(last) if batch.len() == BATCH => after = Some(last.id),
            _ => break,
        }
    }
    writer.flush()?;
    Ok(count)
}

pub async fn export_cmd(
    config: &Config,
    output: Option<PathBuf>,
    region: Option<String>,
    include_deleted: bool,
) -> anyhow::Result<ExitCode> {
    let stores = app::open_stores(config).await?;
    let store = match region {
        Some(name) => {
            let names = config.region_names();
            let found = names.resolve(&name).with_context(|| format!("région inconnue « {name} » ; régions : {}", names.describe()))?;
            stores.iter().find(|s| s.region() == found).cloned().context("région introuvable")?
        }
        None => first_reachable(&stores).await?,
    };
    let progress = progress_bar(store.count_live().await.ok(), "ventes");
    let count = match output {
        Some(path) => {
            let file = std::fs::File::create(&path).with_context(|| format!("création de {}", path.display()))?;
            export(store.as_ref(), std::io::BufWriter::new(file), include_deleted, &progress).await?
        }
        None => export(store.as_ref(), std::io::stdout().lock(), include_deleted, &progress).await?,
    };
    progress.finish_and_clear();
    eprintln!("{count} ventes exportées depuis {}", store.region());
    Ok(ExitCode::SUCCESS)
}

async fn first_reachable(stores: &[std::sync::Arc<dyn Store>]) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    for store in stores {
        if store.ping().await.is_ok() {
            return Ok(store.clone());
        }
    }
    anyhow::bail!("aucune région n'est joignable")
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Sales the regions did not hold.
    pub created: u64,
    /// Sales replaced by a newer line (or by the file, with `--replace`).
    pub updated: u64,
    /// Lines older than what their region holds (an edit or a deletion made after their
    /// `updated_at`): skipped.
    pub older: u64,
    /// Lines whose content their region already holds: nothing written.
    pub unchanged: u64,
    /// Lines marked `deleted=true`: not imported.
    pub deleted: u64,
    /// The first `SHOWN` skipped-as-older lines' numbers.
    pub older_lines: Vec<u64>,
    /// `(line, message)` for each line refused.
    pub rejected: Vec<(u64, String)>,
}

impl ImportReport {
    /// How many lines were written (created or updated).
    pub fn imported(&self) -> u64 {
        self.created + self.updated
    }

    fn count(&mut self, verdicts: &[ImportVerdict], lines: &[u64]) {
        for (verdict, line) in verdicts.iter().zip(lines) {
            match verdict {
                ImportVerdict::Created => self.created += 1,
                ImportVerdict::Updated => self.updated += 1,
                ImportVerdict::Unchanged => self.unchanged += 1,
                ImportVerdict::Older => {
                    self.older += 1;
                    if self.older_lines.len() < SHOWN {
                        self.older_lines.push(*line);
                    }
                }
            }
        }
    }
}

/// How many skipped or refused lines a report names one by one.
const SHOWN: usize = 20;

/// Reads an `updated_at` cell: RFC 3339 (what `export` writes), any offset, kept as UTC.
fn parse_updated_at(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| format!("updated_at : « {text} » n'est pas une date-heure RFC 3339 (2026-01-15T10:30:00Z)"))
}

/// Reads CSV (header required; `produit`, `montant`, `date_vente`, `region` columns; `id` and
/// `updated_at` (or `updatedAt`) optional; rows marked `deleted=true` are skipped) and applies each
/// line in its region, batch by batch. In `ImportMode::Dated`, a line is a write dated by its
/// `updated_at` (now when it has none): a region holding a newer version keeps it.
pub async fn import(ventes: &Ventes, input: impl Read, mode: ImportMode, progress: &ProgressBar) -> anyhow::Result<ImportReport> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::None).from_reader(input);
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let missing: Vec<&str> = ["produit", "montant", "date_vente", "region"].into_iter().filter(|c| column(c).is_none()).collect();
    if !missing.is_empty() {
        anyhow::bail!("colonnes manquantes dans l'en-tête : {}", missing.join(", "));
    }
    let [produit, montant, date_vente, region] = ["produit", "montant", "date_vente", "region"].map(|c| column(c).unwrap_or(usize::MAX));
    let (id_col, deleted_col) = (column("id"), column("deleted"));
    let updated_col = column("updated_at").or_else(|| column("updatedAt"));
    let today = ventes.today();
    let mut report = ImportReport::default();
    let (mut batch, mut batch_lines) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
    let mut line = 1; // the header's; a record's own position is used when the reader knows it
    for row in reader.records() {
        line += 1;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                line = e.position().map_or(line, csv::Position::line);
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "texte qui n'est pas de l'UTF-8 valide".to_owned(),
                    _ => e.to_string(),
                };
                report.rejected.push((line, format!("ligne illisible : {reason}")));
                continue;
            }
        };
        line = row.position().map_or(line, csv::Position::line);
        if deleted_col.and_then(|c| row.get(c)).is_some_and(|d| d.trim().eq_ignore_ascii_case("true")) {
            report.deleted += 1;
            continue;
        }
        let fields =
            VenteFields { produit: row.get(produit), montant: row.get(montant), date_vente: row.get(date_vente), region: row.get(region) };
        let id = match id_col.and_then(|c| row.get(c)).map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(VenteId::generate()),
            Some(text) => text.parse().map_err(|_| format!("id : « {text} » n'est pas un UUID")),
        };
        let dated = updated_col.and_then(|c| row.get(c)).map_or(Ok(None), parse_updated_at);
        match (id, dated, NewVente::parse(&fields, ventes.regions(), today)) {
            (Ok(id), Ok(dated), Ok(vente)) => {
                batch.push(ImportLine { id, vente, dated });
                batch_lines.push(line);
            }
            (Err(message), _, _) | (_, Err(message), _) => report.rejected.push((line, message)),
            (_, _, Err(errors)) => report.rejected.push((line, errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ; "))),
        }
        if batch.len() == BATCH {
            report.count(&ventes.import(&batch, mode).await?, &batch_lines);
            (batch, batch_lines) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
            progress.set_position(line);
        }
    }
    report.count(&ventes.import(&batch, mode).await?, &batch_lines);
    progress.set_position(line);
    Ok(report)
}

pub async fn import_cmd(config: &Config, input: Option<PathBuf>, replace: bool) -> anyhow::Result<ExitCode> {
    let stores = app::open_stores(config).await?;
    app::migrate_all(&stores).await?;
    let ventes = Ventes::new(stores, system_clock());
    let progress = progress_bar(None, "lignes");
    let mode = if replace { ImportMode::Replace } else { ImportMode::Dated };
    let report = match input {
        Some(path) => {
            let file = std::fs::File::open(&path).with_context(|| format!("ouverture de {}", path.display()))?;
            import(&ventes, std::io::BufReader::new(file), mode, &progress).await?
        }
        None => import(&ventes, std::io::stdin().lock(), mode, &progress).await?,
    };
    progress.finish_and_clear();
    for line in &report.older_lines {
        eprintln!("ligne {line} : {}", ImportVerdict::OLDER_MESSAGE);
    }
    if report.older > report.older_lines.len() as u64 {
        eprintln!("… et {} autres lignes ignorées (version plus récente en base)", report.older - report.older_lines.len() as u64);
    }
    for (line, message) in report.rejected.iter().take(SHOWN) {
        eprintln!("ligne {line} : {message}");
    }
    if report.rejected.len() > SHOWN {
        eprintln!("… et {} autres lignes refusées", report.rejected.len() - SHOWN);
    }
    eprintln!("{}", summary(&report));
    let _ = std::io::stderr().flush();
    Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The report's last line: `12 ventes importées (10 créées, 2 mises à jour), 3 ignorées (version
/// plus récente en base), 0 inchangée, 0 supprimée dans le fichier, 1 ligne refusée`.
pub fn summary(report: &ImportReport) -> String {
    format!(
        "{} ventes importées ({} créées, {} mises à jour), {} ignorées (version plus récente en base), {} inchangées, \
         {} supprimées dans le fichier, {} lignes refusées",
        report.imported(),
        report.created,
        report.updated,
        report.older,
        report.unchanged,
        report.deleted,
        report.rejected.len()
    )
}
