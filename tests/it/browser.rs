//! The web UI in a real browser: Debian's headless Chromium driven through chromedriver
//! (fantoccini, plain HTTP over loopback), each test against its own server over SQLite.

mod dashboard;
mod login;
mod session;

use std::path::Path;

use fantoccini::Locator;
use serde_json::{Value, json};

use session::{Browser, run_in_browser};

/// Fills the add form (the date keeps today's default) and sends it.
pub(crate) async fn add_through_form(b: &Browser, produit: &str, montant: &str, region: &str) {
    b.fill("#produit", produit).await;
    b.fill("#montant", montant).await;
    b.select("#region", region).await;
    b.click_to_page(".vente-form button[type=submit]").await;
}

#[tokio::test]
async fn a_sale_added_through_the_form_is_listed_in_french() {
    run_in_browser(async |b, app| {
        b.goto(app, "/").await;
        assert_eq!(b.client.title().await.unwrap(), "Système de Gestion des Ventes Multi-Régions");
        assert!(b.text_of("#aucune-vente").await.contains("Aucune vente"));
        add_through_form(b, "Mangue Kent", "1 500,50", "Thies").await;

        assert_eq!(b.text_of(".flash").await, "Vente « Mangue Kent » ajoutée.");
        assert_eq!(b.listed().await, ["Mangue Kent"]);
        assert_eq!(b.content_of("table.ventes td.num").await, "1\u{202f}500,50 FCFA");
        assert_eq!(b.content_of("table.ventes .badge").await, "Thies");
        let today = app.ventes.today().format("%d/%m/%Y").to_string();
        assert_eq!(b.content_of("table.ventes time").await, today);
        assert_eq!(b.content_of("#stat-ventes").await, "1");
        let page: Value = app.get("/api/ventes").await.json().await.unwrap();
        assert_eq!(page["items"][0]["produit"], "Mangue Kent");

        // The flash is said once: a reload no longer shows it.
        b.client.refresh().await.unwrap();
        assert!(b.client.find(Locator::Css(".flash")).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_explained_in_french_beside_each_field_and_kept() {
    run_in_browser(async |b, app| {
        b.goto(app, "/").await;
        // With the script: messages appear without a round trip, and nothing is sent.
        b.set_value("#dateVente", "").await;
        b.fill("#montant", "abc").await;
        b.click(".vente-form button[type=submit]").await;
        assert_eq!(b.content_of("#produit-erreur").await, "ce champ est obligatoire");
        assert_eq!(b.content_of("#montant-erreur").await, "le montant doit être un nombre décimal (ex. 1500 ou 750000.50)");
        assert_eq!(b.content_of("#dateVente-erreur").await, "ce champ est obligatoire");
        assert_eq!(b.content_of("#region-erreur").await, "ce champ est obligatoire");
        assert_eq!(b.client.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("produit"));
        // Fixing a field clears its message as the user types.
        b.fill("#produit", "Oignons").await;
        assert_eq!(b.content_of("#produit-erreur").await, "");

        // The server judges again (the script does not know every rule): skip the script's check.
        b.client.execute("document.querySelector('.vente-form').removeAttribute('data-validate');", vec![]).await.unwrap();
        b.fill("#montant", "12,345").await;
        b.set_value("#dateVente", "2099-01-01").await;
        b.select("#region", "Dakar").await;
        b.click_to_page(".vente-form button[type=submit]").await;
        assert!(b.text_of(".form-summary").await.contains("Le formulaire contient 2 erreurs"));
        assert_eq!(b.content_of("#montant-erreur").await, "le montant ne peut avoir plus de 2 décimales");
        assert_eq!(b.content_of("#dateVente-erreur").await, "la date ne peut pas être plus d'un jour dans le futur");
        assert_eq!(b.content_of("#produit-erreur").await, "");
        assert_eq!(b.value_of("#produit").await, "Oignons");
        assert_eq!(b.value_of("#montant").await, "12,345");
        assert_eq!(b.value_of("#dateVente").await, "2099-01-01");
        assert_eq!(b.value_of("#region").await, "Dakar");
        assert_eq!(b.client.find(Locator::Css("#montant")).await.unwrap().attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
        let page: Value = app.get("/api/ventes").await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "nothing was recorded");
    })
    .await;
}

#[tokio::test]
async fn a_sale_is_edited_through_its_form() {
    run_in_browser(async |b, app| {
        let id = app.create_vente("Dakar", "Riz brisé", "750000.5").await["id"].as_str().unwrap().to_owned();
        b.goto(app, "/").await;
        b.click_to_page(&format!("#vente-{id} a[href$='/modifier']")).await;
        assert!(b.client.title().await.unwrap().starts_with("Modifier une vente"));
        assert_eq!(b.value_of("#montant").await, "750000,50");
        b.fill("#produit", "Riz parfumé").await;
        b.fill("#montant", "2 000").await;
        b.select("#region", "Saint-Louis").await;
        b.click_to_page(".vente-form button[type=submit]").await;

        assert_eq!(b.text_of(".flash").await, "Vente « Riz parfumé » modifiée.");
        assert_eq!(b.listed().await, ["Riz parfumé"]);
        assert_eq!(b.content_of(&format!("#vente-{id} td.num")).await, "2\u{202f}000 FCFA");
        assert_eq!(b.content_of(&format!("#vente-{id} .badge")).await, "Saint-Louis");
    })
    .await;
}

#[tokio::test]
async fn a_sale_is_deleted_once_the_confirmation_is_accepted() {
    run_in_browser(async |b, app| {
        let id = app.create_vente("Thies", "Ciment 50 kg", "4690").await["id"].as_str().unwrap().to_owned();
        app.create_vente("Dakar", "Mil 10 kg", "3757").await;
        b.goto(app, "/").await;
        let delete = format!("#vente-{id} form button");

        b.click(&delete).await;
        assert_eq!(b.client.get_alert_text().await.unwrap(), "Supprimer la vente « Ciment 50 kg » (4\u{202f}690 FCFA) ?");
        b.client.dismiss_alert().await.unwrap();
        assert_eq!(b.listed().await, ["Mil 10 kg", "Ciment 50 kg"], "dismissed: nothing deleted");

        b.mark_page().await;
        b.click(&delete).await;
        b.client.accept_alert().await.unwrap();
        b.wait_for_new_page().await;
        assert_eq!(b.text_of(".flash").await, "Vente « Ciment 50 kg » supprimée.");
        assert_eq!(b.listed().await, ["Mil 10 kg"]);
        assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 404);
    })
    .await;
}

#[tokio::test]
async fn the_list_is_searched_and_filtered_by_region_and_dates() {
    run_in_browser(async |b, app| {
        for (region, produit, date) in [
            ("Dakar", "Riz brisé", "2026-01-10"),
            ("Thies", "Riz parfumé", "2026-01-12"),
            ("Dakar", "Mil", "2026-01-12"),
            ("Dakar", "RIZ local", "2026-02-01"),
        ] {
            let body = json!({"produit": produit, "montant": "1000", "dateVente": date, "region": region});
            assert_eq!(app.post_json("/api/ventes", &body).await.status(), 201);
        }
        b.goto(app, "/").await;
        b.fill("#q", "riz").await;
        b.select("#filtre-region", "Dakar").await;
        b.click_to_page(".filters button[type=submit]").await;
        assert_eq!(b.listed().await, ["RIZ local", "Riz brisé"]);
        assert_eq!(b.value_of("#q").await, "riz", "the search is kept");

        b.set_value("#from", "2026-01-01").await;
        b.set_value("#to", "2026-01-31").await;
        b.click_to_page(".filters button[type=submit]").await;
        assert_eq!(b.listed().await, ["Riz brisé"]);

        b.fill("#q", "introuvable").await;
        b.click_to_page(".filters button[type=submit]").await;
        assert!(b.text_of("#aucune-vente").await.contains("Aucune vente ne correspond"));
        b.click_to_page("#aucune-vente a").await;
        assert_eq!(b.listed().await.len(), 4, "filters cleared");
    })
    .await;
}

#[tokio::test]
async fn the_list_pages_forward_with_suivant() {
    run_in_browser(async |b, app| {
        for i in 1..=25 {
            app.create_vente("Dakar", &format!("Produit {i:02}"), "100").await;
        }
        b.goto(app, "/").await;
        let first = b.listed().await;
        assert_eq!(first.len(), 20);
        assert_eq!(first[0], "Produit 25");
        assert!(b.client.find(Locator::Css(".pagination a[rel=prev], .pagination a:not(.next)")).await.is_err(), "no way back from page 1");

        b.click_to_page(".pagination a.next").await;
        let second = b.listed().await;
        assert_eq!(second, (1..=5).rev().map(|i| format!("Produit {i:02}")).collect::<Vec<_>>());
        b.click_to_page(".pagination a:not(.next)").await;
        assert_eq!(b.listed().await, first);
    })
    .await;
}

#[tokio::test]
async fn screenshots_at_desktop_and_phone_widths_and_no_console_errors() {
    run_in_browser(async |b, app| {
        for (region, produit, montant) in [
            ("Dakar", "Réfrigérateur 250 L", "214830"),
            ("Thies", "Thiéboudienne (plat)", "2814"),
            ("Saint-Louis", "Lait en poudre 2,5 kg", "12684.47"),
            ("Dakar", "Panneau solaire 200 W", "75908"),
            ("Thies", "Tissu wax 6 yards", "15933"),
        ] {
            app.create_vente(region, produit, montant).await;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, width, mobile) in [("accueil-bureau-1280.png", 1280, false), ("accueil-telephone-375.png", 375, true)] {
            b.cdp("Emulation.setDeviceMetricsOverride", json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}))
                .await;
            b.goto(app, "/").await;
            let png = b.full_page_png().await;
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), width, "{name}");
            std::fs::write(dir.join(name), &png).unwrap();
            let scroll_width: Value = b.client.execute("return document.documentElement.scrollWidth;", vec![]).await.unwrap();
            assert_eq!(scroll_width, json!(width), "{name}: no horizontal scrolling");
        }

        // Exercise the script (inline validation, a cancelled confirm) and the other pages.
        b.fill("#montant", "x").await;
        b.click(".vente-form button[type=submit]").await;
        b.click("table.ventes form button").await;
        b.client.dismiss_alert().await.unwrap();
        b.click_to_page("table.ventes a[href$='/modifier']").await;
        b.fill("#produit", "").await;
        b.click(".vente-form button[type=submit]").await;
        let problems = |entries: Vec<Value>| -> Vec<Value> {
            entries.into_iter().filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING").collect()
        };
        let errors = problems(b.console().await);
        assert!(errors.is_empty(), "console errors: {errors:#?}");

        // The 404 page: its own status is reported (which shows the log is read), nothing else.
        b.goto(app, "/nulle-part").await;
        assert_eq!(b.text_of("h1").await, "Page introuvable");
        let (expected, errors): (Vec<Value>, Vec<Value>) =
            problems(b.console().await).into_iter().partition(|e| e["message"].as_str().unwrap_or("").contains("/nulle-part"));
        assert_eq!(expected.len(), 1, "the 404 itself is logged: {expected:#?}");
        assert!(errors.is_empty(), "console errors on the 404 page: {errors:#?}");
    })
    .await;
}
