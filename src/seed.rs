//! Realistic demo sales for Senegalese shops: `dsms seed --count N`.

use std::process::ExitCode;

use chrono::{Days, NaiveDate};
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::app;
use crate::config::Config;
use crate::domain::vente::DateVente;
use crate::domain::version::system_clock;
use crate::domain::{Montant, NewVente, Produit, RegionName, VenteId};
use crate::ventes::Ventes;

/// Products and a typical price range in FCFA.
const PRODUITS: &[(&str, i64, i64)] = &[
    ("Riz brisé 50 kg", 16_000, 22_000),
    ("Huile d'arachide 20 L", 18_000, 26_000),
    ("Sucre en poudre 50 kg", 25_000, 32_000),
    ("Lait en poudre 2,5 kg", 9_000, 13_500),
    ("Thiéboudienne (plat)", 1_500, 3_500),
    ("Café Touba 1 kg", 2_500, 4_500),
    ("Tissu wax 6 yards", 8_000, 25_000),
    ("Boubou brodé", 25_000, 120_000),
    ("Téléphone Tecno Spark", 65_000, 110_000),
    ("Ordinateur portable HP", 250_000, 650_000),
    ("Téléviseur 43 pouces", 180_000, 320_000),
    ("Ciment 50 kg", 4_000, 5_200),
    ("Bouteille de gaz 6 kg", 2_800, 3_500),
    ("Panneau solaire 200 W", 75_000, 140_000),
    ("Moto Jakarta", 450_000, 750_000),
    ("Sac d'oignons 25 kg", 7_500, 14_000),
    ("Mil 10 kg", 3_000, 5_000),
    ("Bissap séché 1 kg", 1_200, 2_500),
    ("Climatiseur split", 220_000, 480_000),
    ("Réfrigérateur 250 L", 190_000, 380_000),
];

/// `count` random sales dated within the 180 days before `today`, spread over `regions`.
pub fn generate(count: usize, regions: &[RegionName], today: NaiveDate, rng: &mut impl Rng) -> Vec<(VenteId, NewVente)> {
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(&(name, low, high)) = PRODUITS.choose(rng) else { break };
        let Some(region) = regions.choose(rng) else { break };
        let fcfa = rng.random_range(low..=high);
        let cents = if rng.random_bool(0.2) { fcfa * 100 + rng.random_range(1..100) } else { fcfa * 100 };
        let date = today.checked_sub_days(Days::new(rng.random_range(0..180))).unwrap_or(today);
        let (Ok(produit), Ok(montant), Ok(date_vente)) = (Produit::parse(name), Montant::from_cents(cents), DateVente::new(date, today))
        else {
            continue;
        };
        rows.push((VenteId::generate(), NewVente { produit, montant, date_vente, region: region.clone() }));
    }
    rows
}

pub async fn run(config: &Config, count: u64) -> anyhow::Result<ExitCode> {
    let stores = app::open_stores(config).await?;
    app::migrate_all(&stores).await?;
    let ventes = Ventes::new(stores, system_clock());
    let regions: Vec<RegionName> = ventes.regions().iter().cloned().collect();
    let progress = crate::csvio::progress_bar(Some(count), "ventes");
    let mut rng = rand::rng();
    let mut left = count;
    while left > 0 {
        let n = left.min(5_000);
        let rows = generate(usize::try_from(n)?, &regions, ventes.today(), &mut rng);
        ventes.record_batch(rows).await?;
        progress.inc(n);
        left -= n;
    }
    progress.finish_and_clear();
    println!("{count} ventes créées");
    Ok(ExitCode::SUCCESS)
}
