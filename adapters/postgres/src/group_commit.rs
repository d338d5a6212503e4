//! Group commit: concurrent inserts wait on a channel and go to PostgreSQL as one
//! prepared `INSERT … SELECT * FROM unnest(…)` per batch — one commit for many
//! sessions — while earlier batches are in flight. Each init is answered only once its
//! batch has committed.

use std::sync::Arc;
use std::time::Duration;

use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use ports::StoreError;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{NewSession, Pool, unavailable};

pub(crate) struct InsertJob {
    pub(crate) row: NewSession,
    pub(crate) done: oneshot::Sender<Result<(), StoreError>>,
}

pub(crate) async fn batch_writer(
    pool: Pool,
    mut rx: mpsc::Receiver<InsertJob>,
    max_batch: usize,
    writers: usize,
    timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(writers));
    loop {
        // Wait for a free writer *before* draining: while all writers are busy, new
        // sessions queue up and go out together in the next statement.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            insert_batch(&pool, jobs, timeout).await;
            drop(permit);
        });
    }
}

/// The grouped insert: one statement for any number of rows. The columns go as
/// arrays and `unnest` turns them back into rows:
///
/// ```sql
/// INSERT INTO sessions (session_id, wrapped_key, kek_id, session_type, client_id,
///                       created_at, expires_at, protocol)
/// SELECT * FROM unnest($1::varchar[], $2::bytea[], $3::varchar[], $4::varchar[],
///                      $5::varchar[], $6::timestamptz[], $7::timestamptz[], $8::int2[])
/// ON CONFLICT DO NOTHING RETURNING session_id
/// ```
///
/// The table is partitioned by expiry, so its primary key is (id, expiry): an id
/// already there with the same expiry is refused (`ON CONFLICT DO NOTHING`), one with
/// another expiry lands beside it. The store's contract allows that (ports'
/// `SessionStore`: an id stored twice is never served, and the lookup refuses it), so
/// no insert probes the other partitions (that probe was most of PostgreSQL's CPU per
/// init). Ids are 128 random bits: two rows of one id come only from a bug elsewhere.
///
/// Its text never changes, so each connection prepares it once (a query type of its
/// own, because diesel never caches `sql_query`); a multi-row `VALUES` list was a new
/// statement to parse and plan for every batch, with seven parameters per row.
struct InsertBatch {
    ids: Vec<String>,
    wrapped_keys: Vec<Vec<u8>>,
    kek_ids: Vec<String>,
    kinds: Vec<&'static str>,
    client_ids: Vec<String>,
    created: Vec<OffsetDateTime>,
    expires: Vec<OffsetDateTime>,
    protocols: Vec<i16>,
}

impl diesel::query_builder::QueryId for InsertBatch {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for InsertBatch {
    type SqlType = diesel::sql_types::Varchar;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertBatch {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bytea, SmallInt, Timestamptz, Varchar};
        out.push_sql(
            "INSERT INTO sessions (session_id, wrapped_key, kek_id, session_type, client_id, \
             created_at, expires_at, protocol) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Varchar>, _>(&self.ids)?;
        out.push_sql("::varchar[], ");
        out.push_bind_param::<Array<Bytea>, _>(&self.wrapped_keys)?;
        out.push_sql("::bytea[], ");
        out.push_bind_param::<Array<Varchar>, _>(&self.kek_ids)?;
        out.push_sql("::varchar[], ");
        out.push_bind_param::<Array<Varchar>, _>(&self.kinds)?;
        out.push_sql("::varchar[], ");
        out.push_bind_param::<Array<Varchar>, _>(&self.client_ids)?;
        out.push_sql("::varchar[], ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.created)?;
        out.push_sql("::timestamptz[], ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.expires)?;
        out.push_sql("::timestamptz[], ");
        out.push_bind_param::<Array<SmallInt>, _>(&self.protocols)?;
        out.push_sql("::int2[]) ON CONFLICT DO NOTHING RETURNING session_id");
        Ok(())
    }
}

async fn insert_batch(pool: &Pool, jobs: Vec<InsertJob>, timeout: Duration) {
    let (rows, replies): (Vec<NewSession>, Vec<_>) =
        jobs.into_iter().map(|j| (j.row, j.done)).unzip();
    let ids: Vec<String> = rows.iter().map(|r| r.session_id.clone()).collect();
    let batch = InsertBatch {
        ids: ids.clone(),
        wrapped_keys: rows.iter().map(|r| r.wrapped_key.clone()).collect(),
        kek_ids: rows.iter().map(|r| r.kek_id.clone()).collect(),
        kinds: rows.iter().map(|r| r.session_type).collect(),
        client_ids: rows.iter().map(|r| r.client_id.clone()).collect(),
        created: rows.iter().map(|r| r.created_at).collect(),
        expires: rows.iter().map(|r| r.expires_at).collect(),
        protocols: rows.iter().map(|r| r.protocol).collect(),
    };
    let result = tokio::time::timeout(timeout, async {
        let mut conn = pool.get().await.map_err(unavailable)?;
        batch
            .get_results::<String>(&mut conn)
            .await
            .map_err(unavailable)
    })
    .await
    .unwrap_or_else(|_| Err(StoreError::Unavailable("postgres insert: timed out".into())));
    for (id, reply) in ids.iter().zip(replies) {
        let r = match &result {
            Ok(inserted) if inserted.contains(id) => Ok(()),
            Ok(_) => Err(StoreError::Duplicate),
            Err(e) => Err(e.clone()),
        };
        let _ = reply.send(r);
    }
}
