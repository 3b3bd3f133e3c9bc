//! Living with writers other than dsms (psql, the guide's application, the `sqlite3` shell): the
//! databases' triggers (PostgreSQL migration 0005, SQLite migration 0092) stamp their writes.
//! Owns: what dsms does for those triggers — recording which region a database serves (they
//! stamp with it), and keeping dsms's own PostgreSQL writes above a foreign version of the same
//! row. Leaves: the triggers (migrations/), adoption of the guide's tables (adopt.rs).

use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::RegionName;
use crate::domain::version::{ClockOverflow, Hlc};

/// Records the region this PostgreSQL database serves (the foreign-write triggers stamp with it);
/// writes nothing when it is already recorded.
pub(crate) async fn record_region_pg(pool: &PgPool, region: &RegionName) -> Result<(), StoreError> {
    sqlx::query("UPDATE dsms_meta SET region = $1 WHERE region IS DISTINCT FROM $1")
        .bind(region.as_str())
        .execute(pool)
        .await
        .map(drop)
        .map_err(|e| StoreError::from_sqlx(region, e))
}

/// Records the region this SQLite database serves (the foreign-write triggers stamp with it).
pub(crate) async fn record_region_sqlite(pool: &sqlx::SqlitePool, region: &RegionName) -> Result<(), StoreError> {
    sqlx::query("UPDATE dsms_meta SET region = ?1 WHERE id = 1 AND region IS NOT ?1")
        .bind(region.as_str())
        .execute(pool)
        .await
        .map(drop)
        .map_err(|e| StoreError::from_sqlx(region, e))
}

/// Makes `n` local writes stamped with clock values ending at `last` pass `floor`, the greatest
/// version stored (locked) in the rows they replace: a foreign write, stamped by the database's
/// trigger without taking the clock row, may stand above the clock. The caller holds the clock row
/// (it stamped `last`); returns the new last value, `last` itself when nothing needs to move, or
/// the overflow when `floor + n` would pass `i64::MAX` (a version written by hand at the very end
/// of the clock: that row can no longer be overwritten, every other one can).
pub(crate) async fn pass_stored(
    conn: &mut PgConnection,
    last: i64,
    n: usize,
    floor: Option<i64>,
) -> Result<Result<i64, ClockOverflow>, sqlx::Error> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    match floor {
        Some(floor) if floor > last.saturating_sub(n) => {
            if Hlc(floor).checked_add(n).is_err() {
                return Ok(Err(ClockOverflow { hlc: floor, n }));
            }
            let moved: Option<i64> = sqlx::query_scalar("UPDATE dsms_clock SET hlc = greatest(hlc, $1) + $2 WHERE hlc <= $3 RETURNING hlc")
                .bind(floor)
                .bind(n)
                .bind(i64::MAX - n)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(moved.ok_or(ClockOverflow { hlc: floor, n }))
        }
        _ => Ok(Ok(last)),
    }
}
