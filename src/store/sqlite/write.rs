//! SQLite local writes: the clock row stamps each write and advances the feed counter under the
//! write lock (`BEGIN IMMEDIATE`), then one multi-row upsert stores it.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::{COLUMNS, ROWS_PER_STATEMENT};
use crate::domain::lww::dedupe_by_id;
use crate::domain::version::Hlc;
use crate::domain::write::{decide, first_of, local_vente, stamp};
use crate::domain::{LocalWrite, NewVente, Vente, VenteId, WriteOutcome};
use crate::store::StoreError;

impl SqliteStore {
    /// Inserts or replaces rows; with `only_if_newer`, a stored row is replaced only by a greater
    /// version (the LWW rule, which must agree with `Version`'s `Ord`). Feed positions run from `first_seq`.
    pub(super) async fn upsert(
        tx: &mut sqlx::SqliteConnection,
        rows: &[Vente],
        first_seq: i64,
        only_if_newer: bool,
        via: Option<uuid::Uuid>,
    ) -> Result<u64, sqlx::Error> {
        let mut affected = 0;
        let mut seq = first_seq;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO vente ({COLUMNS}, produit_norm, seq, via) "));
            query.push_values(chunk, |mut b, v| {
                b.push_bind(v.id.0)
                    .push_bind(v.produit.as_str())
                    .push_bind(v.montant.cents())
                    .push_bind(v.date_vente.get())
                    .push_bind(v.region.as_str())
                    .push_bind(v.updated_at.timestamp_micros())
                    .push_bind(v.deleted)
                    .push_bind(v.version.hlc.0)
                    .push_bind(v.version.origin.as_str())
                    .push_bind(v.seen.encode())
                    .push_bind(v.produit.search_key())
                    .push_bind(seq)
                    .push_bind(via);
                seq += 1;
            });
            query.push(
                " ON CONFLICT (id) DO UPDATE SET produit = excluded.produit, produit_norm = excluded.produit_norm, \
                 montant = excluded.montant, date_vente = excluded.date_vente, region = excluded.region, \
                 updated_at = excluded.updated_at, deleted = excluded.deleted, hlc = excluded.hlc, \
                 origin = excluded.origin, seen = excluded.seen, seq = excluded.seq, via = excluded.via",
            );
            if only_if_newer {
                query.push(" WHERE (excluded.hlc, excluded.origin) > (vente.hlc, vente.origin)");
            }
            affected += query.build().execute(&mut *tx).await?.rows_affected();
        }
        Ok(affected)
    }

    /// Advances the clock to stamp `n` local writes at `now`; returns the last value and feed position.
    pub(super) async fn stamp(tx: &mut sqlx::SqliteConnection, now: DateTime<Utc>, n: usize) -> Result<(i64, i64), sqlx::Error> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let wall = Hlc::from_wall_ms(now.timestamp_millis()).0;
        sqlx::query_as("UPDATE dsms_clock SET hlc = max(hlc + ?1, ?2 + ?1 - 1), seq = seq + ?1 WHERE id = 1 RETURNING hlc, seq")
            .bind(n)
            .bind(wall)
            .fetch_one(&mut *tx)
            .await
    }

    pub(super) async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.bounded(async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let current = self.get_in(&mut tx, write.id()).await?;
            let base = current.as_ref().map(|c| c.seen.clone());
            let outcome = decide(write, current);
            let WriteOutcome::Written(planned) = outcome else { return Ok(outcome) };
            let (hlc, seq) = Self::stamp(&mut tx, now, 1).await.map_err(self.err())?;
            let vente = stamp(planned, &self.region, now, hlc, base.as_ref());
            Self::upsert(&mut tx, std::slice::from_ref(&vente), seq, false, None).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(WriteOutcome::Written(vente))
        })
        .await
    }

    pub(super) async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let ids: Vec<VenteId> = rows.iter().map(|(id, _)| *id).collect();
            let stored = self.get_many(&mut tx, &ids).await?;
            let (last_hlc, last_seq) = Self::stamp(&mut tx, now, rows.len()).await.map_err(self.err())?;
            let ventes: Vec<Vente> = rows
                .iter()
                .zip(first_of(last_hlc, rows.len())..)
                .map(|((id, new), hlc)| local_vente(&self.region, *id, new, now, hlc, stored.get(id).map(|v| &v.seen)))
                .collect();
            Self::upsert(&mut tx, &dedupe_by_id(&ventes), first_of(last_seq, rows.len()), false, None).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(ventes)
        })
        .await
    }
}
