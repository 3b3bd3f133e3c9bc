//! SQLite local writes: the clock row stamps each write and advances the feed counter under the
//! write lock (`BEGIN IMMEDIATE`), then one multi-row upsert stores it.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::{COLUMNS, ROWS_PER_STATEMENT};
use crate::domain::lww::dedupe_by_id;
use crate::domain::version::{ClockOverflow, Hlc};
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

    /// Ends a transaction's own stamping: the clock statements mark it (`dsms = 1`) so the
    /// foreign-write triggers (migration 0092) leave its rows alone; the mark must not outlive it.
    pub(super) async fn end_stamping(tx: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE dsms_clock SET dsms = 0 WHERE id = 1").execute(&mut *tx).await.map(drop)
    }

    /// Advances the clock to stamp `n` local writes at `now` (marking the transaction as dsms's
    /// own, see `end_stamping`); returns the last value and feed position. The wall time is the
    /// later of `now` (this server's clock) and this host's clock as SQLite reads it, so that a
    /// writer whose clock runs behind still stamps at the database's time. The clock never passes
    /// `i64::MAX` (SQLite would turn the sum into a float): a clock that cannot take `n` more
    /// values is an error, never a wrap.
    pub(super) async fn stamp(
        tx: &mut sqlx::SqliteConnection,
        now: DateTime<Utc>,
        n: usize,
    ) -> Result<Result<(i64, i64), ClockOverflow>, sqlx::Error> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let wall = Hlc::from_wall_ms(now.timestamp_millis());
        let Ok(wall_last) = wall.checked_add(n - 1) else { return Ok(Err(ClockOverflow { hlc: wall.0, n })) };
        let stamped: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE dsms_clock SET hlc = max(hlc + ?1, ?2, (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) << 16) + ?1 - 1), \
               seq = seq + ?1, dsms = 1 WHERE id = 1 AND hlc <= ?3 RETURNING hlc, seq",
        )
        .bind(n)
        .bind(wall_last.0)
        .bind(i64::MAX - n)
        .fetch_optional(&mut *tx)
        .await?;
        match stamped {
            Some(stamped) => Ok(Ok(stamped)),
            None => {
                let (hlc,): (i64,) = sqlx::query_as("SELECT hlc FROM dsms_clock WHERE id = 1").fetch_one(&mut *tx).await?;
                Ok(Err(ClockOverflow { hlc, n }))
            }
        }
    }

    fn overflow(&self, e: ClockOverflow) -> StoreError {
        StoreError::Database { region: self.region.clone(), message: e.to_string() }
    }

    pub(super) async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.bounded(async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let current = self.get_in(&mut tx, write.id()).await?;
            let base = current.as_ref().map(|c| c.seen.clone());
            let outcome = decide(write, current);
            let WriteOutcome::Written(planned) = outcome else { return Ok(outcome) };
            let (hlc, seq) = Self::stamp(&mut tx, now, 1).await.map_err(self.err())?.map_err(|e| self.overflow(e))?;
            let vente = stamp(planned, &self.region, now, hlc, base.as_ref());
            Self::upsert(&mut tx, std::slice::from_ref(&vente), seq, false, None).await.map_err(self.err())?;
            Self::end_stamping(&mut tx).await.map_err(self.err())?;
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
            // A row that cannot be decoded (quarantined) is replaced like an absent one.
            let (stored, _) = self.get_many_readable(&mut tx, &ids).await?;
            let (last_hlc, last_seq) = Self::stamp(&mut tx, now, rows.len()).await.map_err(self.err())?.map_err(|e| self.overflow(e))?;
            let ventes: Vec<Vente> = rows
                .iter()
                .zip(first_of(last_hlc, rows.len())..)
                .map(|((id, new), hlc)| local_vente(&self.region, *id, new, now, hlc, stored.get(id).map(|v| &v.seen)))
                .collect();
            Self::upsert(&mut tx, &dedupe_by_id(&ventes), first_of(last_seq, rows.len()), false, None).await.map_err(self.err())?;
            Self::end_stamping(&mut tx).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(ventes)
        })
        .await
    }
}
