//! A write pushed to this region from the region it was written in (`Store::push`), in one
//! message: one call of the `dsms_push` function (migration 0009) in autocommit. What the
//! function leaves for judgement, and what it cannot take (versions too far ahead of the clock),
//! goes through the full apply.

use super::PgStore;
use crate::domain::lww::{Seen, Verdict, dedupe_by_id, judge_versions};
use crate::domain::version::Hlc;
use crate::domain::{RegionName, Vente, VenteId, Version};
use crate::store::quarantine::any_beyond;
use crate::store::{Applied, Batch, StoreError};

/// A row `dsms_push` left: its id, and the stored version and history.
type Left = (uuid::Uuid, i64, String, String);

impl PgStore {
    pub(super) async fn push(&self, rows: &[Vente]) -> Result<Applied, StoreError> {
        let rows = dedupe_by_id(rows);
        if rows.is_empty() {
            return Ok(Applied::default());
        }
        // A version too far ahead is quarantined by the full apply, which also reads the
        // database's clock.
        if any_beyond(&rows, (self.clock)(), self.max_future) {
            return self.apply(&Batch::push(rows.into_owned())).await;
        }
        let left = self.bounded(self.push_call(&rows)).await?;
        let written = (rows.len() - left.len()) as u64;
        // Left rows the same or older and already seen change nothing; anything else (a conflict,
        // a stored row that cannot be read) is judged again by the full apply.
        let judge_again: Vec<Vente> = rows
            .iter()
            .filter(|v| {
                left.iter().find(|(id, ..)| *id == v.id.0).is_some_and(|(_, hlc, origin, seen)| {
                    let stored = Version { hlc: Hlc(*hlc), origin: RegionName::new(origin) };
                    match Seen::decode(seen) {
                        Some(seen) => !matches!(judge_versions((&v.version, &v.seen), (&stored, &seen)), Verdict::Same | Verdict::Stale),
                        None => true,
                    }
                })
            })
            .cloned()
            .collect();
        let mut applied = Applied { rows: written, conflicts: 0 };
        if !judge_again.is_empty() {
            let again = self.apply(&Batch::push(judge_again)).await?;
            applied.rows += again.rows;
            applied.conflicts += again.conflicts;
        }
        Ok(applied)
    }

    async fn push_call(&self, rows: &[Vente]) -> Result<Vec<Left>, StoreError> {
        let n = rows.len();
        let mut ids: Vec<VenteId> = Vec::with_capacity(n);
        let (mut produits, mut norms, mut montants, mut dates) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut regions, mut times, mut deleted, mut hlcs) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut origins, mut seens) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for v in rows {
            ids.push(v.id);
            produits.push(v.produit.as_str());
            norms.push(v.produit.search_key());
            montants.push(v.montant.to_decimal());
            dates.push(v.date_vente.get());
            regions.push(v.region.as_str());
            times.push(v.updated_at);
            deleted.push(v.deleted);
            hlcs.push(v.version.hlc.0);
            origins.push(v.version.origin.as_str());
            seens.push(v.seen.encode());
        }
        let ids: Vec<uuid::Uuid> = ids.into_iter().map(|id| id.0).collect();
        let call = sqlx::query_as(
            "SELECT id, hlc, origin, seen FROM dsms_push($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::date[], $6::text[], \
             $7::timestamptz[], $8::bool[], $9::int8[], $10::text[], $11::text[])",
        )
        .bind(&ids)
        .bind(&produits)
        .bind(&norms)
        .bind(&montants)
        .bind(&dates)
        .bind(&regions)
        .bind(&times)
        .bind(&deleted)
        .bind(&hlcs)
        .bind(&origins)
        .bind(&seens);
        // On the push lane when it is free: a connection of its own, out of the pool, so that no release
        // check (one more round trip: sqlx pings every connection given back) follows the call.
        let Ok(mut lane) = self.push_lane.try_lock() else {
            return call.fetch_all(self.db()).await.map_err(self.err());
        };
        let conn = match lane.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await.map_err(self.err())?.detach(),
        };
        let conn = lane.insert(conn);
        let left = call.fetch_all(self.on(&mut *conn)).await;
        if left.is_err() {
            // Perhaps broken: the next push opens another.
            lane.take();
        }
        left.map_err(self.err())
    }
}
