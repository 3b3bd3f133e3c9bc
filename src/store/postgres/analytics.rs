//! PostgreSQL analytics: live sales per region, per day and the newest, in one snapshot.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::COLUMNS;
use super::PgStore;
use crate::domain::RegionSales;
use crate::store::StoreError;
use crate::store::row::region_sales;

impl PgStore {
    pub(super) async fn count_live(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM vente WHERE deleted = false").fetch_one(self.db()).await.map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        self.bounded(async {
            // One snapshot for every figure.
            let mut tx = self.begin().await.map_err(self.err())?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(self.on(&mut tx))
                .await
                .map_err(self.err())?;
            let totals: Vec<(String, i64, Decimal)> = sqlx::query_as(
                "SELECT region, count(*), sum(montant) FROM vente WHERE deleted = false GROUP BY region ORDER BY region COLLATE \"C\"",
            )
            .fetch_all(self.on(&mut tx))
            .await
            .map_err(self.err())?;
            let days: Vec<(String, NaiveDate, i64, Decimal)> = sqlx::query_as(
                "SELECT region, date_vente, count(*), sum(montant) FROM vente \
                 WHERE deleted = false AND date_vente BETWEEN $1 AND $2 GROUP BY region, date_vente ORDER BY region, date_vente",
            )
            .bind(since)
            .bind(today)
            .fetch_all(self.on(&mut tx))
            .await
            .map_err(self.err())?;
            let mut out = Vec::with_capacity(totals.len());
            for (region, count, total) in totals {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM vente WHERE deleted = false AND region = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
                ))
                .bind(&region)
                .bind(i64::from(recent))
                .fetch_all(self.on(&mut tx))
                .await
                .map_err(self.err())?;
                let recent = rows.iter().map(|r| self.vente(r)).collect::<Result<_, _>>()?;
                out.push(region_sales(&region, count, total, &days, recent));
            }
            self.commit(tx).await.map_err(self.err())?;
            Ok(out)
        })
        .await
    }
}
