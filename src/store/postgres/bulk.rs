//! Filling an empty PostgreSQL region in one transaction, as `pg_restore` does: the table locked,
//! secondary indexes dropped and built again at the end.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sqlx::Postgres;

use super::PgStore;
use crate::store::{Applied, Batch, StoreError};

impl PgStore {
    pub(super) async fn wants_bulk_load(&self) -> Result<bool, StoreError> {
        self.bounded(async {
            let (empty,): (bool,) =
                sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM vente)").fetch_one(self.db()).await.map_err(self.err())?;
            Ok(empty)
        })
        .await
    }

    pub(super) async fn begin_bulk_load(&self) -> Result<Option<Box<dyn super::BulkLoad + '_>>, StoreError> {
        self.bounded(async {
            let mut tx = self.begin().await.map_err(self.err())?;
            sqlx::query("SELECT set_config('dsms.applying', 'on', true), set_config('lock_timeout', '1s', true)")
                .execute(self.on(&mut tx))
                .await
                .map_err(self.err())?;
            // Readers of the table come and go quickly; one that holds it longer lets the round
            // apply batches as usual instead.
            match sqlx::query("LOCK TABLE vente IN ACCESS EXCLUSIVE MODE").execute(self.on(&mut tx)).await {
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => return Ok(None),
                other => other.map_err(self.err())?,
            };
            let (empty,): (bool,) =
                sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM vente)").fetch_one(self.on(&mut tx)).await.map_err(self.err())?;
            if !empty {
                return Ok(None);
            }
            // Every index but the primary key, in creation order (the planner breaks cost ties
            // by it), to be built again as they were.
            let indexes: Vec<(String, String)> = sqlx::query_as(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid = 'vente'::regclass AND NOT i.indisprimary ORDER BY i.indexrelid",
            )
            .fetch_all(self.on(&mut tx))
            .await
            .map_err(self.err())?;
            for (name, _) in &indexes {
                sqlx::query(&format!("DROP INDEX {name}")).execute(self.on(&mut tx)).await.map_err(self.err())?;
            }
            let load: Box<dyn super::BulkLoad + '_> = Box::new(PgBulkLoad {
                store: self,
                tx,
                indexes: indexes.into_iter().map(|(_, definition)| definition).collect(),
                copying: AtomicBool::new(true),
            });
            Ok(Some(load))
        })
        .await
    }
}

/// A bulk load into an empty PostgreSQL region (`Store::begin_bulk_load`): one transaction, the
/// table locked, its secondary indexes dropped until `finish` builds them again from `indexes`.
struct PgBulkLoad<'a> {
    store: &'a PgStore,
    tx: sqlx::Transaction<'static, Postgres>,
    indexes: Vec<String>,
    /// `apply_in`'s choice for this load: the table starts empty, so `COPY` first.
    copying: AtomicBool,
}

/// How long building the indexes again may take: sorting is far faster than maintaining them
/// row by row, but it runs as one statement per index, whatever the statement timeout.
const INDEX_BUILD_LIMIT: Duration = Duration::from_secs(600);

#[async_trait::async_trait]
impl super::BulkLoad for PgBulkLoad<'_> {
    async fn apply(&mut self, batch: &Batch) -> Result<Applied, StoreError> {
        let Self { store, tx, copying, .. } = self;
        store.bounded(store.apply_in(tx, batch, copying)).await
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        let Self { store, mut tx, indexes, .. } = *self;
        let err = store.err();
        let build = async {
            let limit = format!("{}s", INDEX_BUILD_LIMIT.as_secs());
            sqlx::query("SELECT set_config('statement_timeout', $1, true), set_config('maintenance_work_mem', '256MB', true)")
                .bind(&limit)
                .execute(store.on(&mut tx))
                .await
                .map_err(&err)?;
            for definition in &indexes {
                sqlx::query(definition).execute(store.on(&mut tx)).await.map_err(&err)?;
            }
            store.commit(tx).await.map_err(&err)
        };
        tokio::time::timeout(INDEX_BUILD_LIMIT + store.limits.connect_timeout, build).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                region: store.region.clone(),
                message: format!("index non reconstruits en {INDEX_BUILD_LIMIT:?}"),
            })
        })
    }
}
