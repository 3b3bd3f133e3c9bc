//! SQLite analytics: live sales per region, per day and the newest, in one read transaction.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::COLUMNS;
use super::SqliteStore;
use crate::domain::RegionSales;
use crate::store::StoreError;
use crate::store::row::region_sales;

impl SqliteStore {
    pub(super) async fn count_live(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM vente WHERE deleted = 0").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        self.bounded(async {
            // One read transaction: every figure comes from the same snapshot.
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            let totals: Vec<(String, i64, i64)> =
                sqlx::query_as("SELECT region, count(*), sum(montant) FROM vente WHERE deleted = 0 GROUP BY region ORDER BY region")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(self.err())?;
            let days: Vec<(String, NaiveDate, i64, i64)> = sqlx::query_as(
                "SELECT region, date_vente, count(*), sum(montant) FROM vente \
                 WHERE deleted = 0 AND date_vente >= ?1 AND date_vente <= ?2 GROUP BY region, date_vente ORDER BY region, date_vente",
            )
            .bind(since)
            .bind(today)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err())?;
            let days: Vec<_> = days.into_iter().map(|(region, date, count, cents)| (region, date, count, Decimal::new(cents, 2))).collect();
            let mut out = Vec::with_capacity(totals.len());
            for (region, count, cents) in totals {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM vente WHERE deleted = 0 AND region = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
                ))
                .bind(&region)
                .bind(i64::from(recent))
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err())?;
                let recent = rows.iter().map(|r| self.vente(r)).collect::<Result<_, _>>()?;
                out.push(region_sales(&region, count, Decimal::new(cents, 2), &days, recent));
            }
            tx.commit().await.map_err(self.err())?;
            Ok(out)
        })
        .await
    }
}
