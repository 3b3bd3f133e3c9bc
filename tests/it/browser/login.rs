//! Logging in through the browser: a vendeur adds a sale and sees no sync button; an admin runs a round.

use crate::browser::add_through_form;
use crate::browser::session::{Browser, run_in_browser_with};
use crate::helpers::{Backends, TestApp, spawn_app};

const PASSWORD: &str = "mot-de-passe-du-test";

async fn log_in(b: &Browser, app: &TestApp, name: &str) {
    b.goto(app, "/").await;
    assert!(b.client.current_url().await.unwrap().path().starts_with("/connexion"), "anonymous: the login form");
    assert!(b.client.title().await.unwrap().starts_with("Connexion"));
    b.fill("#nom", name).await;
    b.fill("#mot_de_passe", PASSWORD).await;
    b.click_to_page(".login-form button[type=submit]").await;
    assert_eq!(b.content_of("#utilisateur").await, name);
}

#[tokio::test]
async fn a_vendeur_adds_a_sale_without_a_sync_button_and_an_admin_runs_a_round() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    app.auth.add_user("moussa", dsms::auth::Role::Vendeur, PASSWORD).await.unwrap();
    app.auth.add_user("fatou", dsms::auth::Role::Admin, PASSWORD).await.unwrap();
    run_in_browser_with(&app, async |b, app| {
        log_in(b, app, "moussa").await;
        assert!(!b.has("#synchroniser").await, "a vendeur sees no sync button");
        add_through_form(b, "Mangue Kent", "1 500", "Thies").await;
        assert_eq!(b.text_of(".flash").await, "Vente « Mangue Kent » ajoutée.");
        assert_eq!(b.listed().await, ["Mangue Kent"]);
        b.goto(app, "/stats").await;
        assert!(!b.has("#synchroniser").await && !b.has(".drill-form").await, "nor drill buttons");

        b.click_to_page("#deconnexion").await;
        assert!(b.client.current_url().await.unwrap().path().starts_with("/connexion"));
        log_in(b, app, "fatou").await;
        b.click_to_page("#synchroniser").await;
        assert!(b.text_of(".flash").await.starts_with("Synchronisation réussie"), "{}", b.text_of(".flash").await);
    })
    .await;
}
