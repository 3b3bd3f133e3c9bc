//! Adopting the guide's databases. Owns: turning a `vente` table created by the guide's steps 1–9
//! (Spring Data JPA / Hibernate, maybe its `optimization_indexes.sql`) into dsms's table before the
//! migrations run. Leaves: the schema itself (migrations/), the foreign-write triggers and what
//! dsms does alongside them (foreign.rs), every other SQL (postgres/, sqlite/).
//!
//! Adoption keeps every row and gives each one a version from its `updated_at`, the same in every
//! region for the same content, so the first round merges diverged regions by the guide's rule: the
//! latest `updated_at` wins, deletes included. Its steps, in one transaction:
//! - refuse (changing nothing) when a row breaks a rule dsms could not read it back with (no
//!   product, amount ≤ 0 or ≥ 10^10, no date, no region): the message names a few ids to fix;
//! - drop the guide's six indexes (same names as dsms's, other shapes): the migrations build
//!   dsms's ones;
//! - convert: `produit`, `region` to `text` (product trimmed), `montant` to `numeric(12,2)`
//!   (a float is first read as its shortest decimal, 15 significant digits, then rounded half
//!   away from zero to cents: 1500.555 → 1500.56), `updated_at` to `timestamptz` (a timestamp
//!   without time zone is read as UTC), a missing `updated_at` read as 1970-01-01, a missing
//!   `deleted` as false;
//! - add dsms's columns: search key; version `hlc` = `updated_at`'s milliseconds in the high bits,
//!   its microseconds within the millisecond and 6 bits of a content hash in the low 16 (equal
//!   versions then mean equal content), origin = the row's `region`, `seen` = that one entry;
//! - create the clock row past every version.

use sqlx::{PgPool, Row};

use super::StoreError;
use crate::domain::RegionName;

/// The guide's index names, which are also dsms's.
const GUIDE_INDEXES: [&str; 6] =
    ["idx_vente_updated_at", "idx_vente_deleted", "idx_vente_region", "idx_vente_date_vente", "idx_vente_sync", "idx_vente_produit"];

/// The columns the guide's entity has; `deleted` and `updated_at` may hold NULLs.
const GUIDE_COLUMNS: [&str; 7] = ["id", "produit", "montant", "date_vente", "region", "updated_at", "deleted"];

/// Rust `str::trim`'s white space, as a bracket expression for PostgreSQL regular expressions.
const SPACE: &str = r"[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// Adopts the database's `vente` table if it is the guide's (no version column yet); returns
/// whether it did. Safe to call on every migrate: a dsms table or no table is left alone.
pub(crate) async fn adopt_guide_table(pool: &PgPool, region: &RegionName) -> Result<bool, StoreError> {
    let err = |e| StoreError::from_sqlx(region, e);
    let refuse = |message: String| StoreError::Database { region: region.clone(), message };
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'vente'",
    )
    .fetch_all(pool)
    .await
    .map_err(err)?;
    if columns.is_empty() || columns.iter().any(|(name, _)| name == "hlc") {
        return Ok(false);
    }
    let type_of = |column: &str| columns.iter().find(|(name, _)| name == column).map(|(_, t)| t.as_str());
    if let Some(missing) = GUIDE_COLUMNS.iter().find(|c| type_of(c).is_none()) {
        return Err(refuse(format!("la table vente n'a pas la forme du guide : colonne « {missing} » absente")));
    }
    if type_of("id") != Some("uuid") {
        return Err(refuse("la table vente n'a pas la forme du guide : la colonne id doit être de type uuid".into()));
    }
    tracing::info!(%region, "adoption de la table vente du guide (étapes 1 à 9)");

    let mut tx = pool.begin().await.map_err(err)?;
    sqlx::query("LOCK TABLE vente IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.map_err(err)?;
    let trimmed = format!("regexp_replace(produit::text, '^{SPACE}+|{SPACE}+$', '', 'g')");
    let invalid: Vec<uuid::Uuid> = sqlx::query(&format!(
        "SELECT id FROM vente WHERE id IS NULL OR produit IS NULL OR {trimmed} = '' OR char_length({trimmed}) > 200 \
            OR {trimmed} ~ '[\\u0001-\\u001F\\u007F-\\u009F]' \
            OR montant IS NULL OR round(montant::numeric, 2) <= 0 OR round(montant::numeric, 2) >= 10000000000 \
            OR date_vente IS NULL OR region IS NULL OR btrim(region::text) = '' ORDER BY id LIMIT 6"
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?
    .iter()
    .map(|row| row.try_get::<Option<uuid::Uuid>, _>(0).map(Option::unwrap_or_default))
    .collect::<Result<_, _>>()
    .map_err(err)?;
    if !invalid.is_empty() {
        let ids: Vec<String> = invalid.iter().take(5).map(ToString::to_string).collect();
        return Err(refuse(format!(
            "adoption de la table vente du guide impossible : des ventes n'ont pas de produit, de montant > 0 et < 10^10, \
             de date ou de région (par exemple {}) ; corrigez-les puis relancez « dsms migrate » (rien n'a été modifié)",
            ids.join(", ")
        )));
    }

    for index in GUIDE_INDEXES {
        sqlx::query(&format!("DROP INDEX IF EXISTS {index}")).execute(&mut *tx).await.map_err(err)?;
    }
    let updated_at = if type_of("updated_at") == Some("timestamp without time zone") {
        "coalesce(updated_at AT TIME ZONE 'UTC', 'epoch')"
    } else {
        "coalesce(updated_at, 'epoch')"
    };
    let statements = [
        format!(
            "ALTER TABLE vente ALTER COLUMN produit TYPE text USING {trimmed}, \
             ALTER COLUMN montant TYPE numeric(12,2) USING round(montant::numeric, 2), \
             ALTER COLUMN region TYPE text, \
             ALTER COLUMN updated_at TYPE timestamptz USING {updated_at}, \
             ALTER COLUMN deleted SET DEFAULT false"
        ),
        "UPDATE vente SET deleted = coalesce(deleted, false) WHERE deleted IS NULL".into(),
        "ALTER TABLE vente ADD COLUMN produit_norm text, ADD COLUMN hlc bigint, ADD COLUMN origin text COLLATE \"C\", \
         ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id(), ADD COLUMN seen text NOT NULL DEFAULT ''"
            .into(),
        // Same content and `updated_at` in two regions: the same version, so no conflict and no write.
        "UPDATE vente SET \
            produit_norm = lower(regexp_replace(normalize(produit, NFD), \
                '[\\u0300-\\u036F\\u0483-\\u0489\\u0591-\\u05BD\\u1AB0-\\u1AFF\\u1DC0-\\u1DFF\\u20D0-\\u20FF\\uFE20-\\uFE2F]', '', 'g')), \
            hlc = (greatest(0, floor(extract(epoch FROM updated_at) * 1000))::bigint << 16) \
                | ((greatest(0, floor(extract(epoch FROM updated_at) * 1000000))::bigint % 1000) << 6) \
                | (('x' || left(md5(concat_ws('|', produit, montant::text, date_vente::text, region, deleted::text)), 8))::bit(32)::int & 63), \
            origin = region"
            .into(),
        "UPDATE vente SET seen = replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=' || hlc".into(),
        "ALTER TABLE vente ALTER COLUMN id SET NOT NULL, ALTER COLUMN produit SET NOT NULL, ALTER COLUMN produit_norm SET NOT NULL, \
         ALTER COLUMN montant SET NOT NULL, ALTER COLUMN date_vente SET NOT NULL, ALTER COLUMN region SET NOT NULL, \
         ALTER COLUMN updated_at SET NOT NULL, ALTER COLUMN deleted SET NOT NULL, ALTER COLUMN hlc SET NOT NULL, \
         ALTER COLUMN origin SET NOT NULL, \
         ADD CONSTRAINT vente_produit_check CHECK (char_length(produit) BETWEEN 1 AND 200), \
         ADD CONSTRAINT vente_montant_check CHECK (montant > 0)"
            .into(),
        // The clock passes every version held (migration 0001 then finds it there).
        "CREATE TABLE IF NOT EXISTS dsms_clock (id boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (id), hlc bigint NOT NULL)".into(),
        "INSERT INTO dsms_clock (id, hlc) SELECT true, coalesce(max(hlc), 0) FROM vente \
         ON CONFLICT (id) DO UPDATE SET hlc = greatest(dsms_clock.hlc, EXCLUDED.hlc)"
            .into(),
    ];
    for statement in &statements {
        sqlx::query(statement).execute(&mut *tx).await.map_err(err)?;
    }
    let has_key: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = 'vente'::regclass AND indisprimary)")
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
    if !has_key {
        sqlx::query("ALTER TABLE vente ADD PRIMARY KEY (id)").execute(&mut *tx).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(true)
}
