//! PostgreSQL local writes: the clock row stamps each write (its lock orders the region's
//! writers, so versions are unique) and one multi-row upsert stores it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::PgStore;
use super::lanes::Lane;
use crate::domain::lww::{Seen, dedupe_by_id};
use crate::domain::version::{ClockOverflow, Hlc};
use crate::domain::write::{decide, first_of, local_vente, stamp};
use crate::domain::{LocalWrite, NewVente, Vente, VenteId, WriteOutcome};
use crate::store::StoreError;

impl PgStore {
    /// Inserts or replaces rows in one statement (arrays unnested server-side). With
    /// `only_if_newer`, a stored row is replaced only by a greater version: the LWW rule, which
    /// must agree with `Version`'s `Ord` (origin is `COLLATE "C"`, compared bytewise as in Rust).
    pub(super) async fn upsert(
        &self,
        conn: &mut PgConnection,
        rows: &[Vente],
        only_if_newer: bool,
        via: Option<uuid::Uuid>,
    ) -> Result<u64, sqlx::Error> {
        let arrays = VenteArrays::of(rows);
        let condition = if only_if_newer { "WHERE (EXCLUDED.hlc, EXCLUDED.origin) > (vente.hlc, vente.origin)" } else { "" };
        let sql = format!(
            "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen, via) \
             SELECT *, $12::uuid FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::date[], $6::text[], \
                                  $7::timestamptz[], $8::bool[], $9::int8[], $10::text[], $11::text[]) \
             ON CONFLICT (id) DO UPDATE SET produit = EXCLUDED.produit, produit_norm = EXCLUDED.produit_norm, \
               montant = EXCLUDED.montant, date_vente = EXCLUDED.date_vente, region = EXCLUDED.region, \
               updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, hlc = EXCLUDED.hlc, \
               origin = EXCLUDED.origin, seen = EXCLUDED.seen, via = EXCLUDED.via, txid = pg_current_xact_id() {condition}"
        );
        let done = arrays.bind(sqlx::query(&sql)).bind(via).execute(self.on(&mut *conn)).await?;
        Ok(done.rows_affected())
    }

    /// Advances the clock to stamp `n` local writes at `now`, locking the clock row until commit;
    /// returns the last value stamped. The wall time is the later of `now` (this server's clock)
    /// and the database's own: a server whose clock runs behind still stamps at the database's
    /// time, so causality holds whichever clock is off. The clock never passes `i64::MAX`: a
    /// clock that cannot take `n` more values is an error, never a wrap.
    pub(super) async fn stamp(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        n: usize,
    ) -> Result<Result<i64, ClockOverflow>, sqlx::Error> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let wall = Hlc::from_wall_ms(now.timestamp_millis());
        let Ok(wall_last) = wall.checked_add(n - 1) else { return Ok(Err(ClockOverflow { hlc: wall.0, n })) };
        let stamped: Option<(i64,)> = sqlx::query_as(
            "UPDATE dsms_clock SET hlc = greatest(hlc + $1, $2, \
               ((floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint << 16) + $1 - 1) \
             WHERE hlc <= $3 RETURNING hlc",
        )
        .bind(n)
        .bind(wall_last.0)
        .bind(i64::MAX - n)
        .fetch_optional(self.on(&mut *conn))
        .await?;
        match stamped {
            Some((hlc,)) => Ok(Ok(hlc)),
            None => {
                let (hlc,): (i64,) = sqlx::query_as("SELECT hlc FROM dsms_clock").fetch_one(self.on(&mut *conn)).await?;
                Ok(Err(ClockOverflow { hlc, n }))
            }
        }
    }

    fn overflow(&self, e: ClockOverflow) -> StoreError {
        StoreError::Database { region: self.region.clone(), message: e.to_string() }
    }

    /// The rows a local write replaces, locked, and the greatest version stored among them. A row
    /// that cannot be decoded is quarantined and read as absent (a write then replaces it: any
    /// writer may fix it), but its version still counts, so the write passes it.
    async fn locked_for_write(
        &self,
        conn: &mut PgConnection,
        ids: &[VenteId],
    ) -> Result<(HashMap<VenteId, Vente>, Option<i64>), StoreError> {
        let (found, unreadable) = self.get_many_readable(conn, ids).await?;
        let mut floor = found.values().map(|v| v.version.hlc.0).max();
        if !unreadable.is_empty() {
            let ids: Vec<uuid::Uuid> = unreadable.iter().map(|id| id.0).collect();
            let (bad_floor,): (Option<i64>,) = sqlx::query_as("SELECT max(hlc) FROM vente WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_one(self.on(&mut *conn))
                .await
                .map_err(self.err())?;
            floor = floor.max(bad_floor);
        }
        Ok((found, floor))
    }

    /// A create of a sale this region does not hold, in one statement (autocommit: one round
    /// trip): the clock row is stamped and locked first, as in every local write, then the row is
    /// inserted unless its id is stored. `None` when nothing was written (the id is stored, even
    /// unreadable, or the clock cannot take one more value): the full write then decides.
    async fn create_fresh(&self, id: VenteId, new: &NewVente, now: DateTime<Utc>) -> Result<Option<Vente>, StoreError> {
        let wall = Hlc::from_wall_ms(now.timestamp_millis());
        let planned = local_vente(&self.region, id, new, now, wall.0, None);
        let statement = || {
            sqlx::query_as::<_, (i64,)>(
                "WITH c AS (UPDATE dsms_clock SET hlc = greatest(hlc + 1, $1, \
                 (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint << 16) \
               WHERE hlc < $2 RETURNING hlc) \
             INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen) \
             SELECT $3, $4, $5, $6, $7, $8, $9, false, c.hlc, $10, $11 || c.hlc FROM c \
             ON CONFLICT (id) DO NOTHING RETURNING hlc",
            )
            .bind(wall.0)
            .bind(i64::MAX)
            .bind(id.0)
            .bind(planned.produit.as_str())
            .bind(planned.produit.search_key())
            .bind(planned.montant.to_decimal())
            .bind(planned.date_vente.get())
            .bind(planned.region.as_str())
            .bind(planned.updated_at)
            .bind(self.region.as_str())
            .bind(Seen::first_write_prefix(&self.region))
        };
        let mut on = self.lane(Lane::Write).await.map_err(self.err())?;
        let stamped = match statement().fetch_optional(self.on(on.conn())).await {
            // Once more if the link broke: a create that committed the first time then finds its id
            // stored, and the full write answers it as a replay.
            Err(e) if on.broken(&e) => statement().fetch_optional(self.db()).await,
            stamped => stamped,
        }
        .map_err(self.err())?;
        Ok(stamped.map(|(hlc,)| stamp(planned, &self.region, now, hlc, None)))
    }

    pub(super) async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.bounded(async {
            if let LocalWrite::Create { id, vente } = write {
                if let Some(created) = self.create_fresh(*id, vente, now).await? {
                    return Ok(WriteOutcome::Written(created));
                }
            }
            let mut tx = self.begin().await.map_err(self.err())?;
            let hlc = self.stamp(&mut tx, now, 1).await.map_err(self.err())?.map_err(|e| self.overflow(e))?;
            // Locked, and passed: a plain SQL write to this row may be stamped above our clock.
            let (mut current, floor) = self.locked_for_write(&mut tx, &[write.id()]).await?;
            let current = current.remove(&write.id());
            let hlc =
                crate::store::foreign::pass_stored(&mut tx, hlc, 1, floor).await.map_err(self.err())?.map_err(|e| self.overflow(e))?;
            let base = current.as_ref().map(|c| c.seen.clone());
            let outcome = decide(write, current);
            let WriteOutcome::Written(planned) = outcome else { return Ok(outcome) };
            let vente = stamp(planned, &self.region, now, hlc, base.as_ref());
            self.upsert(&mut tx, std::slice::from_ref(&vente), false, None).await.map_err(self.err())?;
            self.commit(tx).await.map_err(self.err())?;
            Ok(WriteOutcome::Written(vente))
        })
        .await
    }

    pub(super) async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let mut tx = self.begin().await.map_err(self.err())?;
            let last = self.stamp(&mut tx, now, rows.len()).await.map_err(self.err())?.map_err(|e| self.overflow(e))?;
            let ids: Vec<VenteId> = rows.iter().map(|(id, _)| *id).collect();
            let (stored, floor) = self.locked_for_write(&mut tx, &ids).await?;
            let last = crate::store::foreign::pass_stored(&mut tx, last, rows.len(), floor)
                .await
                .map_err(self.err())?
                .map_err(|e| self.overflow(e))?;
            let ventes: Vec<Vente> = rows
                .iter()
                .zip(first_of(last, rows.len())..)
                .map(|((id, new), hlc)| local_vente(&self.region, *id, new, now, hlc, stored.get(id).map(|v| &v.seen)))
                .collect();
            self.upsert(&mut tx, &dedupe_by_id(&ventes), false, None).await.map_err(self.err())?;
            self.commit(tx).await.map_err(self.err())?;
            Ok(ventes)
        })
        .await
    }
}

/// Sales as one array per column, bound as `$1`…`$11` of an `unnest`: id, produit, produit_norm,
/// montant, date_vente, region, updated_at, deleted, hlc, origin, seen.
pub(super) struct VenteArrays<'a> {
    ids: Vec<uuid::Uuid>,
    produits: Vec<&'a str>,
    norms: Vec<String>,
    montants: Vec<rust_decimal::Decimal>,
    dates: Vec<chrono::NaiveDate>,
    regions: Vec<&'a str>,
    times: Vec<DateTime<Utc>>,
    deleted: Vec<bool>,
    hlcs: Vec<i64>,
    origins: Vec<&'a str>,
    seens: Vec<String>,
}

impl<'a> VenteArrays<'a> {
    pub(super) fn of(rows: &'a [Vente]) -> Self {
        Self {
            ids: rows.iter().map(|v| v.id.0).collect(),
            produits: rows.iter().map(|v| v.produit.as_str()).collect(),
            norms: rows.iter().map(|v| v.produit.search_key()).collect(),
            montants: rows.iter().map(|v| v.montant.to_decimal()).collect(),
            dates: rows.iter().map(|v| v.date_vente.get()).collect(),
            regions: rows.iter().map(|v| v.region.as_str()).collect(),
            times: rows.iter().map(|v| v.updated_at).collect(),
            deleted: rows.iter().map(|v| v.deleted).collect(),
            hlcs: rows.iter().map(|v| v.version.hlc.0).collect(),
            origins: rows.iter().map(|v| v.version.origin.as_str()).collect(),
            seens: rows.iter().map(|v| v.seen.encode()).collect(),
        }
    }

    /// Binds the eleven arrays, in order, to `query`.
    pub(super) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.produits)
            .bind(&self.norms)
            .bind(&self.montants)
            .bind(&self.dates)
            .bind(&self.regions)
            .bind(&self.times)
            .bind(&self.deleted)
            .bind(&self.hlcs)
            .bind(&self.origins)
            .bind(&self.seens)
    }
}
