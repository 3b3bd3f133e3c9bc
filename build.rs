//! Re-runs the build when migrations change, so `sqlx::migrate!` embeds the current files.
fn main() {
    println!("cargo:rerun-if-changed=migrations/postgres");
    println!("cargo:rerun-if-changed=migrations/sqlite");
    println!("cargo:rerun-if-changed=migrations/state");
}
