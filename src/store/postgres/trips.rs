//! Round trips to a PostgreSQL region, counted where they are made: every statement this store
//! sends (a query, `BEGIN`, `COMMIT`, a `COPY`'s start and end) goes through `Counted`, which adds
//! one, inside a sync round, to the round's tally of that region (`RoundTrips::scope`; the round
//! report and `/metrics` show it). A statement's first use on a connection costs one more (it is
//! prepared), and the pool checks each connection it takes back (sqlx's release ping, after the
//! caller has its answer): neither is counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Error, Execute, Executor, PgConnection, PgPool, Postgres};

use crate::domain::RegionName;

tokio::task_local! {
    static ROUND: RoundTrips;
}

/// Round trips per region made by one task (a sync round) while it runs in `scope`.
#[derive(Clone, Debug, Default)]
pub struct RoundTrips(Arc<Mutex<HashMap<RegionName, u64>>>);

impl RoundTrips {
    /// Runs `work`, counting the round trips it makes to each PostgreSQL region.
    pub async fn scope<T>(&self, work: impl Future<Output = T>) -> T {
        ROUND.scope(self.clone(), work).await
    }

    /// Round trips made to `region` so far.
    pub fn of(&self, region: &RegionName) -> u64 {
        self.0.lock().map(|tally| tally.get(region).copied().unwrap_or(0)).unwrap_or(0)
    }

    fn add(&self, region: &RegionName, n: u64) {
        if let Ok(mut tally) = self.0.lock() {
            *tally.entry(region.clone()).or_default() += n;
        }
    }
}

/// Where a store's round trips are counted: its region's tally in the round under way, if any.
#[derive(Debug)]
pub(super) struct Trips {
    region: RegionName,
}

impl Trips {
    pub(super) fn new(region: RegionName) -> Self {
        Self { region }
    }

    /// Counts `n` round trips (made outside an executor: `BEGIN`, `COMMIT`, `COPY`; or by one).
    pub(super) fn add(&self, n: u64) {
        let _ = ROUND.try_with(|round| round.add(&self.region, n));
    }
}

/// An executor (the pool, or one connection) whose every statement is counted.
#[derive(Debug)]
pub(super) struct Counted<'t, E> {
    pub(super) inner: E,
    pub(super) trips: &'t Trips,
}

macro_rules! counted_executor {
    ($inner:ty) => {
        impl<'c, 't: 'c> Executor<'c> for Counted<'t, $inner> {
            type Database = Postgres;

            fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                self.trips.add(1);
                self.inner.fetch_many(query)
            }

            fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                self.trips.add(1);
                self.inner.fetch_optional(query)
            }

            fn prepare_with<'e, 'q: 'e>(self, sql: &'q str, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
            where
                'c: 'e,
            {
                self.trips.add(1);
                self.inner.prepare_with(sql, parameters)
            }

            fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
            where
                'c: 'e,
            {
                self.trips.add(1);
                self.inner.describe(sql)
            }
        }
    };
}

counted_executor!(&'c PgPool);
counted_executor!(&'c mut PgConnection);
