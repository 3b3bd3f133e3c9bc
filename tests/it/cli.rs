//! The real `dsms` binary, run in a temporary directory with a clean environment: help, migrate,
//! seed, export, import, and configuration errors.

use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory;

/// Runs `dsms args…` in `dir` with only `PATH` and `envs` set (no stray `DSMS_*` variable).
fn dsms(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dsms"));
    command.current_dir(dir).args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts exit code `code` and returns (stdout, stderr).
fn expect(output: Output, code: i32, what: &str) -> (String, String) {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(code), "{what}\nstdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

/// The rows of an export: (id, produit, montant, date_vente, region), header first.
fn rows(csv_text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(csv_text.as_bytes());
    reader.records().map(|r| r.unwrap().iter().take(5).map(str::to_owned).collect()).collect()
}

/// Every command path of the CLI (`["bench", "list"]`, …), from its own definition.
fn command_paths(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_owned());
        out.push(path.clone());
        command_paths(sub, &path, out);
    }
}

#[test]
fn every_command_has_help_and_it_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = vec![Vec::new()];
    command_paths(&dsms::cli::Cli::command(), &[], &mut paths);
    assert!(paths.len() >= 7, "{paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (stdout, _) = expect(dsms(dir.path(), &args, &[]), 0, &args.join(" "));
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
    }
    let (stdout, _) = expect(dsms(dir.path(), &["--version"], &[]), 0, "--version");
    assert!(stdout.starts_with("dsms "), "{stdout}");
    assert!(!dir.path().join("dsms-data").exists(), "--help touches nothing");
}

#[test]
fn migrate_creates_the_three_embedded_region_databases() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = expect(dsms(dir.path(), &["migrate"], &[]), 0, "migrate");
    for file in ["dakar.db", "thies.db", "saint-louis.db"] {
        assert!(dir.path().join("dsms-data").join(file).is_file(), "{file}");
    }
    for region in ["Dakar", "Thies", "Saint-Louis"] {
        assert!(stdout.contains(region), "{stdout}");
    }
    expect(dsms(dir.path(), &["migrate"], &[]), 0, "migrate again (idempotent)");
}

#[test]
fn seeded_sales_export_as_csv_and_import_into_fresh_regions_unchanged() {
    let first = tempfile::tempdir().unwrap();
    let (stdout, _) = expect(dsms(first.path(), &["seed", "--count", "50"], &[]), 0, "seed");
    assert!(stdout.contains("50"), "{stdout}");
    let (exported, _) = expect(dsms(first.path(), &["export"], &[]), 0, "export");
    assert_eq!(exported.lines().count(), 51, "a header and 50 sales:\n{exported}");
    assert_eq!(exported.lines().next(), Some("id,produit,montant,date_vente,region,updated_at,deleted"));

    let second = tempfile::tempdir().unwrap();
    std::fs::write(second.path().join("ventes.csv"), &exported).unwrap();
    let (_, stderr) = expect(dsms(second.path(), &["import", "--input", "ventes.csv"], &[]), 0, "import");
    assert!(stderr.contains("50 ventes importées"), "{stderr}");
    let output = second.path().join("again.csv");
    expect(dsms(second.path(), &["export", "--output", output.to_str().unwrap()], &[]), 0, "export again");
    let again = std::fs::read_to_string(output).unwrap();
    assert_eq!(rows(&again), rows(&exported), "same ids, products, amounts, dates and regions");

    // Every region holds every sale.
    for region in ["dakar", "THIES", "saint louis"] {
        let (from_region, _) = expect(dsms(second.path(), &["export", "--region", region], &[]), 0, region);
        assert_eq!(rows(&from_region), rows(&exported), "{region}");
    }
    let (_, stderr) = expect(dsms(second.path(), &["export", "--region", "Kaolack"], &[]), 1, "unknown region");
    assert!(stderr.contains("Kaolack"), "{stderr}");
}

#[test]
fn an_import_reports_each_bad_line_by_number_keeps_the_good_ones_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "produit,montant,date_vente,region\n\
               Riz brisé,1500,2026-01-15,Dakar\n\
               Mil,abc,2026-01-15,Thies\n\
               \"Sucre, 50 kg\",25000.50,2026-01-16,saint louis\n\
               \"Lait\nen poudre\",12,2026-01-15,Kaolack\n\
               Oignons,7500,2026-01-17,Thiès\n";
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let (_, stderr) = expect(dsms(dir.path(), &["import", "-i", "in.csv"], &[]), 1, "import with bad lines");
    assert!(stderr.contains("ligne 3") && stderr.contains("montant"), "{stderr}");
    assert!(stderr.contains("ligne 5") && stderr.contains("région inconnue"), "a quoted line break is inside line 5's record: {stderr}");
    assert!(stderr.contains("3 ventes importées (3 créées, 0 mises à jour)") && stderr.contains("2 lignes refusées"), "{stderr}");
    let (exported, _) = expect(dsms(dir.path(), &["export"], &[]), 0, "export");
    let mut produits: Vec<String> = rows(&exported).into_iter().skip(1).map(|r| r[1].clone()).collect();
    produits.sort();
    assert_eq!(produits, ["Oignons", "Riz brisé", "Sucre, 50 kg"]);

    std::fs::write(dir.path().join("no-header.csv"), "Riz,1500,2026-01-15,Dakar\n").unwrap();
    let (_, stderr) = expect(dsms(dir.path(), &["import", "-i", "no-header.csv"], &[]), 1, "no header");
    assert!(stderr.contains("colonnes manquantes"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one error, reported once: {stderr}");
}

#[test]
fn a_bad_configuration_exits_1_with_one_error_naming_the_key() {
    /// What is wrong, the `dsms.toml` (if any), the environment, what the error must mention.
    type Case<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 5] = [
        ("listen from the environment", None, &[("DSMS_LISTEN", "nonsense")], &["listen", "DSMS_LISTEN", "nonsense"]),
        ("a duration that is not one", Some("sync_interval = \"soon\"\n"), &[], &["sync_interval", "soon"]),
        ("an unknown key", Some("listen = \"127.0.0.1:0\"\ncolour = \"red\"\n"), &[], &["colour", "clé inconnue"]),
        (
            "an unknown region key",
            Some("[[regions]]\nname = \"A\"\nurl = \"sqlite://a.db\"\npasword = \"x\"\n"),
            &[],
            &["regions[0].pasword"],
        ),
        ("an unknown variable", None, &[("DSMS_LISTN", "127.0.0.1:80")], &["DSMS_LISTN"]),
    ];
    for (what, file, envs, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        if let Some(file) = file {
            std::fs::write(dir.path().join("dsms.toml"), file).unwrap();
        }
        let (stdout, stderr) = expect(dsms(dir.path(), &["migrate"], envs), 1, what);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: one error\n{stderr}");
        assert!(lines[0].starts_with("dsms: configuration invalide : "), "{what}: {stderr}");
        for needle in expected {
            assert!(lines[0].contains(needle), "{what}: {needle} in {stderr}");
        }
        assert!(stdout.is_empty(), "{what}: {stdout}");
        assert!(!dir.path().join("dsms-data").exists(), "{what}: nothing was created");
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = expect(dsms(dir.path(), &["--config", "missing.toml", "migrate"], &[]), 1, "missing --config file");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// Runs `dsms args…` in `dir` with `input` on its standard input (not a terminal).
fn dsms_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_dsms"));
    command.current_dir(dir).args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn users_are_added_listed_given_tokens_and_removed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = expect(dsms_with_input(dir.path(), &["user", "add", "awa", "--role", "vendeur"], "court\n"), 1, "short password");
    assert!(stderr.contains("au moins 10 caractères"), "{stderr}");
    let (_, stderr) =
        expect(dsms_with_input(dir.path(), &["user", "add", "awa", "--role", "chef"], "un mot de passe long\n"), 2, "bad role");
    assert!(stderr.contains("lecteur, vendeur ou admin"), "{stderr}");
    expect(dsms_with_input(dir.path(), &["user", "add", "awa", "--role", "vendeur"], "un mot de passe long\n"), 0, "add");
    let (_, stderr) = expect(dsms_with_input(dir.path(), &["user", "add", "AWA", "--role", "admin"], "un mot de passe long\n"), 1, "taken");
    assert!(stderr.contains("existe déjà"), "{stderr}");
    let (listed, _) = expect(dsms(dir.path(), &["user", "list"], &[]), 0, "list");
    assert!(listed.contains("awa") && listed.contains("vendeur") && !listed.contains("argon2"), "{listed}");
    let (token, _) = expect(dsms(dir.path(), &["user", "token", "awa"], &[]), 0, "token");
    assert!(token.trim().starts_with("dsms_") && token.trim().len() > 40, "{token}");
    let state = std::fs::read(dir.path().join("dsms-data").join("dsms-state.db")).unwrap();
    assert!(!state.windows(token.trim().len()).any(|w| w == token.trim().as_bytes()), "only the token's hash is kept");
    let (revoked, _) = expect(dsms(dir.path(), &["user", "token", "awa", "--revoke"], &[]), 0, "revoke");
    assert!(revoked.contains("1 jeton"), "{revoked}");
    expect(dsms_with_input(dir.path(), &["user", "passwd", "awa"], "un autre mot de passe\n"), 0, "passwd");
    expect(dsms(dir.path(), &["user", "remove", "awa"], &[]), 0, "remove");
    let (_, stderr) = expect(dsms(dir.path(), &["user", "remove", "awa"], &[]), 1, "remove again");
    assert!(stderr.contains("inconnu"), "{stderr}");
}

#[test]
fn serve_without_users_refuses_a_non_loopback_listen_in_one_french_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = expect(dsms(dir.path(), &["serve"], &[("DSMS_LISTEN", "0.0.0.0:0")]), 1, "protected mode");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("listen")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("dsms user add") && lines[0].contains("allow_anonymous = true"), "{stderr}");
}
