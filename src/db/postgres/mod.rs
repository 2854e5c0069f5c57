//! The PostgreSQL store: documents, vectors, text and content in tables of
//! one database (see [`schema`]), searched by pgvector's HNSW with
//! iterative index scans for filters, and by PostgreSQL's full-text search.
//! The only code that imports `postgres`.
//!
//! Several servers may share one database: every call runs in its own
//! transaction on a pooled connection and keeps no state between calls
//! but the connections, so what one server commits, the others read at
//! once. Writes of one document id are serialised by a transaction-level
//! advisory lock on (collection, id), so concurrent upserts of the same id
//! leave exactly one version; a write returns after `COMMIT`, which
//! PostgreSQL makes durable before it answers.
mod filter;
mod pool;
pub mod schema;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pgvector::Vector;
use postgres::error::SqlState;
use postgres::{GenericClient, Row, Transaction};
use serde_json::{Map, Value};
use thiserror::Error;

use super::backend::{Backend, StoreKind, ValidDocument};
use super::backup::{BackupProgress, BackupReport};
use super::search::{hybrid_depth, HybridOptions, MAX_K};
use super::{
    not_found, Change, CollectionInfo, CollectionOptions, CollectionStats, Content, ContentData,
    ContentInfo, DbError, DbOptions, DbStats, Document, Hit, Result,
};
use crate::index::fusion::{fuse, Fusion};
use crate::index::lexical::text_units;
use crate::index::{Filter, GroupBy, IndexHit, IndexStats};
use crate::types::{now_ms, Modality, SegmentMatch, Span, VectorEncoding};
use filter::{filter_sql, Params};
use pool::{Pool, Pooled};
use schema::VectorIndex;

/// Connections a server keeps at most (`storage.pool_size`).
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a call waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Attempts at a write that PostgreSQL aborted for a deadlock.
const WRITE_ATTEMPTS: usize = 5;
/// Vectors per INSERT statement.
const VECTOR_ROWS_PER_STATEMENT: usize = 500;
/// Words of a lexical query used (the rest are ignored).
const MAX_QUERY_WORDS: usize = 64;
/// A grouped search fetches more rows until it has `k` documents, up to
/// this many rows.
const MAX_SEARCH_ROWS: usize = 40_000;

#[derive(Debug, Error)]
pub enum PgError {
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(String),
    #[error(
        "the PostgreSQL database {url} was created for model {stored_model:?} with dimension \
         {stored_dim}; it cannot be used with model {requested_model:?} with dimension \
         {requested_dim}"
    )]
    IncompatibleModel {
        url: String,
        stored_model: String,
        stored_dim: usize,
        requested_model: String,
        requested_dim: usize,
    },
    #[error("PostgreSQL schema: {0}")]
    Schema(String),
    #[error("PostgreSQL: {0}")]
    Query(String),
    #[error("{0} is not available with the PostgreSQL store: {1}")]
    Unsupported(&'static str, &'static str),
}

impl PgError {
    /// True for a refusal caused by the caller (a database for another
    /// model, an operation this store does not offer).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PgError::IncompatibleModel { .. } | PgError::Unsupported(..)
        )
    }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> PgError {
        if e.is_closed() {
            return PgError::Connect(e.to_string());
        }
        // The server's own message is more useful than the wrapper's.
        match e.as_db_error() {
            Some(db) => PgError::Query(format!("{} ({})", db.message(), db.code().code())),
            None => PgError::Query(e.to_string()),
        }
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Postgres(e.into())
    }
}

/// A store in a PostgreSQL database. `Send + Sync`.
pub struct Postgres {
    /// The URL without its password, for messages.
    url: String,
    options: DbOptions,
    pool: Pool,
}

/// A collection's row.
struct CollectionRow {
    name: String,
    id: i32,
    vectors: VectorEncoding,
    text_fields: Vec<String>,
}

/// What a hit needs from its document's row.
struct HitRow {
    hit: IndexHit,
    modality: Modality,
    metadata: Map<String, Value>,
    spans: Vec<Span>,
}

impl Postgres {
    /// Connects, migrates the schema and checks (or records) the model.
    /// Fails when the database was created for another model or dimension.
    pub fn open(url: &str, options: DbOptions, pool_size: usize) -> Result<Postgres> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| DbError::BadInput(format!("invalid PostgreSQL URL: {e}")))?;
        let shown = redact(url);
        let pool = Pool::new(config, pool_size, POOL_WAIT);
        let meta = {
            let mut client = pool.get()?;
            let mut tx = client.transaction()?;
            let meta = schema::migrate(&mut tx, &options)?;
            tx.commit()?;
            meta
        };
        if meta.model_id != options.model_id || meta.dim != options.dim {
            return Err(PgError::IncompatibleModel {
                url: shown,
                stored_model: meta.model_id,
                stored_dim: meta.dim,
                requested_model: options.model_id,
                requested_dim: options.dim,
            }
            .into());
        }
        if meta.dtype != options.dtype {
            tracing::info!(stored = %meta.dtype, now = %options.dtype, "the database was written with another dtype");
        }
        tracing::info!(url = %shown, "PostgreSQL store ready");
        Ok(Postgres {
            url: shown,
            options,
            pool,
        })
    }

    /// The model an existing database was created for (`None` for a
    /// database without our schema), so it can be opened without a model.
    pub fn stored_options(url: &str) -> Result<Option<DbOptions>> {
        let mut client = postgres::Client::connect(url, pool::tls_connector())
            .map_err(|e| DbError::Postgres(PgError::Connect(e.to_string())))?;
        let meta = schema::read_meta(&mut client)?;
        Ok(meta.map(|m| DbOptions::new(m.model_id, m.dim, m.dtype)))
    }

    fn dim(&self) -> usize {
        self.options.dim
    }

    /// Runs `body` in a transaction, again when PostgreSQL aborted it for a
    /// deadlock or a serialisation failure.
    fn in_transaction<T>(
        &self,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.pool.get()?;
        let mut attempt = 1;
        loop {
            let mut tx = client.transaction()?;
            let outcome = body(&mut tx).and_then(|value| {
                tx.commit()?;
                Ok(value)
            });
            match outcome {
                Err(DbError::Postgres(PgError::Query(ref m)))
                    if attempt < WRITE_ATTEMPTS && is_retryable(m) =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Searches `collection` for the unit vector `query`; rows best first.
    #[allow(clippy::too_many_arguments)] // each is one independent choice of the caller
    fn vector_rows(
        &self,
        client: &mut Pooled<'_>,
        c: &CollectionRow,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
    ) -> Result<Vec<HitRow>> {
        let kind = VectorIndex::choose(self.dim(), c.vectors);
        let mut params = Params::default();
        let q = params.push(Vector::from(query.to_vec()));
        let mut conditions = format!("v.collection_id = {}", c.id);
        if let Some(id) = exclude {
            conditions.push_str(&format!(" AND v.doc_id <> {}", params.push(id.to_owned())));
        }
        if let Some(f) = filter {
            conditions.push_str(" AND ");
            conditions.push_str(&filter_sql(f, &c.name, &mut params));
        }
        let order = kind.distance_sql(self.dim(), &q);
        fetch_until_k(k, group, |limit| {
            let ef = limit.clamp(self.options.index.ef_search.max(1), 1000);
            client.set_ef_search(ef)?;
            let sql = format!(
                "SELECT v.doc_id, v.segment, (v.embedding <=> {q})::float8, d.seq, d.modality, \
                 d.metadata, d.segments \
                 FROM tkr_vectors v JOIN tkr_documents d \
                 ON d.collection_id = v.collection_id AND d.id = v.doc_id \
                 WHERE {conditions} ORDER BY {order} LIMIT {limit}"
            );
            let statement = client.statement(&sql)?;
            let mut hits = client
                .query(&statement, &params.as_refs())?
                .iter()
                .map(|r| hit_row(r, |distance| 1.0 - distance))
                .collect::<Result<Vec<_>>>()?;
            // Relaxed order: sort by the exact distance.
            hits.sort_by(|a, b| b.hit.score.total_cmp(&a.hit.score));
            Ok(hits)
        })
    }

    /// The best text units for `text`; rows best first.
    fn lexical_rows(
        &self,
        client: &mut Pooled<'_>,
        c: &CollectionRow,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<HitRow>> {
        let mut params = Params::default();
        // Any word may match; a word the parser splits matches as a phrase
        // (as in the embedded store's lexical index).
        let mut words: Vec<&str> = Vec::new();
        for word in text.split_whitespace() {
            if !words.contains(&word) && words.len() < MAX_QUERY_WORDS {
                words.push(word);
            }
        }
        if words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let query = words
            .iter()
            .map(|w| format!("phraseto_tsquery('simple', {})", params.push(w.to_string())))
            .collect::<Vec<_>>()
            .join(" || ");
        let mut conditions = format!("u.collection_id = {} AND u.tsv @@ q.query", c.id);
        if let Some(f) = filter {
            conditions.push_str(" AND ");
            conditions.push_str(&filter_sql(f, &c.name, &mut params));
        }
        fetch_until_k(k, group, |limit| {
            let sql = format!(
                "SELECT u.doc_id, u.segment, ts_rank_cd(u.tsv, q.query)::float8 AS rank, d.seq, \
                 d.modality, d.metadata, d.segments \
                 FROM tkr_text_units u JOIN tkr_documents d \
                 ON d.collection_id = u.collection_id AND d.id = u.doc_id, \
                 (SELECT {query} AS query) q \
                 WHERE {conditions} ORDER BY rank DESC, u.doc_id, u.segment LIMIT {limit}"
            );
            let statement = client.statement(&sql)?;
            client
                .query(&statement, &params.as_refs())?
                .iter()
                .map(|r| hit_row(r, |rank| rank))
                .collect()
        })
    }

    /// Inserts or replaces one document (its id locked by the caller).
    fn replace_document(
        &self,
        tx: &mut Transaction<'_>,
        c: &CollectionRow,
        id: &str,
        doc: &ValidDocument,
    ) -> Result<()> {
        let old = tx.query_opt(
            "SELECT content_hash, created_ms FROM tkr_documents \
             WHERE collection_id = $1 AND id = $2",
            &[&c.id, &id],
        )?;
        let now = now_ms() as i64;
        let mut created = now;
        if let Some(old) = old {
            created = old.get(1);
            tx.execute(
                "DELETE FROM tkr_documents WHERE collection_id = $1 AND id = $2",
                &[&c.id, &id],
            )?;
            if let Some(hash) = old.get::<_, Option<Vec<u8>>>(0) {
                release_blob(tx, &hash)?;
            }
        }
        let (hash, len, content_type, uri) = match &doc.content {
            None => (None, None, None, None),
            Some(Content::Bytes { data, content_type }) => {
                let hash = blake3::hash(data).as_bytes().to_vec();
                keep_blob(tx, &hash, data)?;
                (
                    Some(hash),
                    Some(data.len() as i64),
                    Some(content_type.clone()),
                    None,
                )
            }
            Some(Content::External { uri, content_type }) => {
                (None, None, content_type.clone(), Some(uri.clone()))
            }
        };
        let metadata = Value::Object(doc.metadata.clone());
        let spans = serde_json::to_value(&doc.spans)
            .map_err(|e| DbError::Internal(format!("spans: {e}")))?;
        tx.execute(
            "INSERT INTO tkr_documents (collection_id, id, seq, modality, text, content_hash, \
             content_len, content_type, content_uri, metadata, segments, created_ms, updated_ms) \
             VALUES ($1, $2, nextval('tkr_seq'), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &c.id,
                &id,
                &doc.modality.as_str(),
                &doc.text,
                &hash,
                &len,
                &content_type,
                &uri,
                &metadata,
                &spans,
                &created,
                &now,
            ],
        )?;
        let vectors: Vec<&[f32]> = doc.vectors.chunks(self.dim()).collect();
        for (chunk_no, chunk) in vectors.chunks(VECTOR_ROWS_PER_STATEMENT).enumerate() {
            let mut params = Params::default();
            let cid = params.push(c.id);
            let doc_id = params.push(id.to_owned());
            let values: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let segment = chunk_no * VECTOR_ROWS_PER_STATEMENT + i;
                    format!(
                        "({cid}, {doc_id}, {segment}, {})",
                        params.push(Vector::from(v.to_vec()))
                    )
                })
                .collect();
            tx.execute(
                &format!(
                    "INSERT INTO tkr_vectors (collection_id, doc_id, segment, embedding) VALUES {}",
                    values.join(", ")
                ),
                &params.as_refs(),
            )?;
        }
        let units = text_units(
            doc.text.as_deref(),
            &doc.spans,
            &doc.metadata,
            &c.text_fields,
        );
        for unit in units {
            tx.execute(
                "INSERT INTO tkr_text_units (collection_id, doc_id, segment, tsv) \
                 VALUES ($1, $2, $3, to_tsvector('simple', $4))",
                &[&c.id, &id, &(unit.segment as i32), &unit.text],
            )?;
        }
        Ok(())
    }

    fn hits(&self, rows: Vec<HitRow>, fusion: Option<&HashMap<(String, u32), Fusion>>) -> Vec<Hit> {
        rows.into_iter()
            .map(|row| {
                let segment = match row.hit.segment {
                    0 => None,
                    s => row.spans.get(s as usize - 1).map(|span| SegmentMatch {
                        index: s - 1,
                        span: span.clone(),
                    }),
                };
                let key = (row.hit.doc.to_string(), row.hit.segment);
                Hit {
                    id: row.hit.doc.to_string(),
                    score: row.hit.score,
                    modality: row.modality,
                    metadata: row.metadata,
                    segment,
                    fusion: fusion.and_then(|f| f.get(&key).cloned()),
                }
            })
            .collect()
    }
}

impl Backend for Postgres {
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn options(&self) -> &DbOptions {
        &self.options
    }

    fn dir(&self) -> Option<&Path> {
        None
    }

    fn create_collection(&self, name: &str, options: &CollectionOptions) -> Result<CollectionInfo> {
        let index = &self.options.index;
        let m = index.max_connections.clamp(2, 100);
        let ef_construction = index.ef_construction.clamp(2 * m, 1000);
        self.in_transaction(|tx| {
            let created = now_ms() as i64;
            let fields = serde_json::to_value(&options.text_fields)
                .map_err(|e| DbError::Internal(e.to_string()))?;
            let row = tx.query_opt(
                "INSERT INTO tkr_collections (name, created_ms, vectors, text_fields) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&name, &created, &options.vectors.as_str(), &fields],
            )?;
            let Some(row) = row else {
                return Err(DbError::CollectionExists(name.to_owned()));
            };
            let id: i32 = row.get(0);
            let kind = VectorIndex::choose(self.dim(), options.vectors);
            if let Some(sql) = schema::vector_index_sql(id, kind, self.dim(), m, ef_construction) {
                tx.batch_execute(&sql)?;
            }
            Ok(CollectionInfo {
                name: name.to_owned(),
                documents: 0,
                created_ms: created as u64,
                vectors: options.vectors,
                text_fields: options.text_fields.clone(),
            })
        })
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let mut client = self.pool.get()?;
        let rows = client.query(
            "SELECT c.name, c.created_ms, c.vectors, c.text_fields, \
             (SELECT count(*) FROM tkr_documents d WHERE d.collection_id = c.id) \
             FROM tkr_collections c ORDER BY c.name",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(CollectionInfo {
                    name: r.get(0),
                    created_ms: r.get::<_, i64>(1) as u64,
                    vectors: parse_encoding(r.get(2))?,
                    text_fields: parse_fields(r.get(3))?,
                    documents: r.get::<_, i64>(4) as u64,
                })
            })
            .collect()
    }

    fn drop_collection(&self, name: &str) -> Result<bool> {
        self.in_transaction(|tx| {
            let Some(row) = tx.query_opt(
                "SELECT id FROM tkr_collections WHERE name = $1 FOR UPDATE",
                &[&name],
            )?
            else {
                return Ok(false);
            };
            let id: i32 = row.get(0);
            // Content no other document refers to goes with the collection.
            tx.execute(
                "UPDATE tkr_blobs b SET refs = b.refs - c.n FROM \
                 (SELECT content_hash, count(*) AS n FROM tkr_documents \
                  WHERE collection_id = $1 AND content_hash IS NOT NULL GROUP BY 1) c \
                 WHERE b.hash = c.content_hash",
                &[&id],
            )?;
            tx.execute("DELETE FROM tkr_blobs WHERE refs <= 0", &[])?;
            tx.batch_execute(&format!(
                "DROP INDEX IF EXISTS {}",
                schema::vector_index_name(id)
            ))?;
            tx.execute("DELETE FROM tkr_collections WHERE id = $1", &[&id])?;
            Ok(true)
        })
    }

    fn check_collection(&self, name: &str) -> Result<()> {
        let mut client = self.pool.get()?;
        collection(&mut *client, name, false).map(|_| ())
    }

    fn write(&self, collection_name: &str, docs: Vec<ValidDocument>) -> Result<Vec<String>> {
        // Ids first (generated ones included), so a retried transaction
        // writes the same documents.
        let ids: Vec<String> = docs
            .iter()
            .map(|d| d.id.clone().unwrap_or_else(generate_id))
            .collect();
        self.in_transaction(|tx| {
            let c = collection(tx, collection_name, true)?;
            // Lock every id of the batch in one order: no deadlock between
            // batches that share ids.
            let mut locked: Vec<&String> = ids.iter().collect();
            locked.sort();
            locked.dedup();
            for id in locked {
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&c.id, id],
                )?;
            }
            for (id, doc) in ids.iter().zip(&docs) {
                self.replace_document(tx, &c, id, doc)?;
            }
            Ok(())
        })?;
        Ok(ids)
    }

    fn delete(&self, collection_name: &str, id: &str) -> Result<bool> {
        self.in_transaction(|tx| {
            let c = collection(tx, collection_name, true)?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&c.id, &id],
            )?;
            let Some(row) = tx.query_opt(
                "DELETE FROM tkr_documents WHERE collection_id = $1 AND id = $2 \
                 RETURNING content_hash",
                &[&c.id, &id],
            )?
            else {
                return Ok(false);
            };
            if let Some(hash) = row.get::<_, Option<Vec<u8>>>(0) {
                release_blob(tx, &hash)?;
            }
            Ok(true)
        })
    }

    fn get(&self, collection_name: &str, id: &str) -> Result<Option<Document>> {
        let mut client = self.pool.get()?;
        let c = collection(&mut *client, collection_name, false)?;
        let row = client.query_opt(
            &format!("{DOCUMENT_COLUMNS} WHERE collection_id = $1 AND id = $2"),
            &[&c.id, &id],
        )?;
        row.map(|r| document(collection_name, &r)).transpose()
    }

    fn list_documents(
        &self,
        collection_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let mut client = self.pool.get()?;
        let c = collection(&mut *client, collection_name, false)?;
        let limit = limit.min(i64::MAX as usize) as i64;
        client
            .query(
                &format!(
                    "{DOCUMENT_COLUMNS} WHERE collection_id = $1 AND ($2::text IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                ),
                &[&c.id, &after, &limit],
            )?
            .iter()
            .map(|r| document(collection_name, r))
            .collect()
    }

    fn get_content(&self, collection_name: &str, id: &str) -> Result<Option<ContentData>> {
        let mut client = self.pool.get()?;
        let c = collection(&mut *client, collection_name, false)?;
        let row = client
            .query_opt(
                "SELECT d.content_hash, d.content_type, d.content_uri, b.data \
                 FROM tkr_documents d LEFT JOIN tkr_blobs b ON b.hash = d.content_hash \
                 WHERE d.collection_id = $1 AND d.id = $2",
                &[&c.id, &id],
            )?
            .ok_or_else(|| not_found(collection_name, id))?;
        let hash: Option<Vec<u8>> = row.get(0);
        let content_type: Option<String> = row.get(1);
        let uri: Option<String> = row.get(2);
        match (hash, uri) {
            (Some(_), _) => {
                let data: Option<Vec<u8>> = row.get(3);
                let data = data.ok_or_else(|| {
                    DbError::Internal(format!("content of document {id:?} is missing"))
                })?;
                Ok(Some(ContentData::Bytes {
                    data,
                    content_type: content_type.unwrap_or_default(),
                }))
            }
            (None, Some(uri)) => Ok(Some(ContentData::External { uri, content_type })),
            (None, None) => Ok(None),
        }
    }

    fn contains(&self, collection_name: &str, ids: &[String]) -> Result<Vec<bool>> {
        let mut client = self.pool.get()?;
        let c = collection(&mut *client, collection_name, false)?;
        let found: std::collections::HashSet<String> = client
            .query(
                "SELECT id FROM tkr_documents WHERE collection_id = $1 AND id = ANY($2)",
                &[&c.id, &ids],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(ids.iter().map(|id| found.contains(id)).collect())
    }

    fn get_vectors(&self, collection_name: &str, id: &str) -> Result<Option<Vec<f32>>> {
        let mut client = self.pool.get()?;
        let c = collection(&mut *client, collection_name, false)?;
        let rows = client.query(
            "SELECT embedding FROM tkr_vectors WHERE collection_id = $1 AND doc_id = $2 \
             ORDER BY segment",
            &[&c.id, &id],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut flat = Vec::with_capacity(rows.len() * self.dim());
        for row in rows {
            flat.extend(row.get::<_, Vector>(0).to_vec());
        }
        Ok(Some(flat))
    }

    fn search(
        &self,
        collection_name: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        let mut client = self.pool.get()?;
        let c = collection_cached(&mut client, collection_name)?;
        let rows = self.vector_rows(&mut client, &c, query, k, filter, exclude, group)?;
        Ok(self.hits(rows, None))
    }

    fn search_lexical(
        &self,
        collection_name: &str,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        let mut client = self.pool.get()?;
        let c = collection_cached(&mut client, collection_name)?;
        let rows = self.lexical_rows(&mut client, &c, text, k, filter, group)?;
        Ok(self.hits(rows, None))
    }

    fn search_hybrid(
        &self,
        collection_name: &str,
        query: &[f32],
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        let depth = hybrid_depth(k).min(MAX_K);
        let mut client = self.pool.get()?;
        let c = collection_cached(&mut client, collection_name)?;
        let vector = self.vector_rows(&mut client, &c, query, depth, filter, None, group)?;
        let lexical = self.lexical_rows(&mut client, &c, text, depth, filter, group)?;
        let vector_hits: Vec<IndexHit> = vector.iter().map(|r| r.hit.clone()).collect();
        let lexical_hits: Vec<IndexHit> = lexical.iter().map(|r| r.hit.clone()).collect();
        let weights = (options.vector_weight, options.lexical_weight);
        let per_segment = group == GroupBy::Segment;
        let fused = fuse(
            &vector_hits,
            &lexical_hits,
            weights,
            options.rrf_k,
            k,
            per_segment,
        );
        // Each fused hit with the row it came from (either list has it).
        let mut rows: HashMap<(String, u32), HitRow> = HashMap::new();
        for row in vector.into_iter().chain(lexical) {
            rows.entry((row.hit.doc.to_string(), row.hit.segment))
                .or_insert(row);
        }
        let mut ordered = Vec::with_capacity(fused.len());
        let mut fusion = HashMap::new();
        for (hit, f) in fused {
            let key = (hit.doc.to_string(), hit.segment);
            if let Some(mut row) = rows.remove(&key) {
                row.hit = hit;
                fusion.insert(key, f);
                ordered.push(row);
            }
        }
        Ok(self.hits(ordered, Some(&fusion)))
    }

    fn highlights(
        &self,
        collection_name: &str,
        text: &str,
        query: &str,
    ) -> Result<Vec<(usize, usize)>> {
        self.check_collection(collection_name)?;
        Ok(crate::index::lexical::highlights(text, query))
    }

    fn stats(&self) -> Result<DbStats> {
        let mut client = self.pool.get()?;
        let collections = self.list_collections()?;
        let blobs = client.query_one(
            "SELECT count(*), COALESCE(sum(length(data)), 0)::bigint FROM tkr_blobs",
            &[],
        )?;
        let last_seq: i64 = client
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tkr_seq",
                &[],
            )?
            .get(0);
        let size: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])?
            .get(0);
        let version: i32 = client
            .query_one("SELECT max(version) FROM tkr_migrations", &[])?
            .get(0);
        Ok(DbStats {
            store: StoreKind::Postgres,
            model_id: self.options.model_id.clone(),
            dim: self.dim(),
            dtype: self.options.dtype.clone(),
            format_version: version as u32,
            documents: collections.iter().map(|c| c.documents).sum(),
            collections: collections
                .into_iter()
                .map(|c| CollectionStats {
                    name: c.name,
                    documents: c.documents,
                    index: IndexStats {
                        documents: c.documents as usize,
                        ..IndexStats::default()
                    },
                })
                .collect(),
            blobs: blobs.get::<_, i64>(0) as u64,
            blob_bytes: blobs.get::<_, i64>(1) as u64,
            change_log_entries: 0,
            last_seq: last_seq as u64,
            flushes: 0,
            size_on_disk: size as u64,
        })
    }

    fn changes_after(&self, _after: u64, _limit: usize) -> Result<Vec<Change>> {
        Err(PgError::Unsupported(
            "the change log",
            "PostgreSQL keeps its own (logical replication)",
        )
        .into())
    }

    fn flush_count(&self) -> u64 {
        0
    }

    fn reindex(&self, collection_name: Option<&str>) -> Result<()> {
        let mut client = self.pool.get()?;
        let ids: Vec<i32> = match collection_name {
            Some(name) => vec![collection(&mut *client, name, false)?.id],
            None => client
                .query("SELECT id FROM tkr_collections", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        for id in ids {
            client.batch_execute(&format!("REINDEX INDEX {}", schema::vector_index_name(id)))?;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<()> {
        // Nothing derived lives outside the database.
        Ok(())
    }

    fn wait_background(&self) {}

    fn backup(&self, _dest: &Path, _progress: &dyn Fn(&BackupProgress)) -> Result<BackupReport> {
        Err(PgError::Unsupported(
            "backup",
            "back up the database with pg_dump or your provider's snapshots, or copy it into \
             an embedded store with `tkr-embed migrate`",
        )
        .into())
    }

    fn close(self: Box<Self>) -> Result<()> {
        tracing::debug!(url = %self.url, "PostgreSQL store closed");
        Ok(())
    }
}

/// The columns [`document`] reads.
const DOCUMENT_COLUMNS: &str = "SELECT id, modality, text, content_hash, content_len, \
    content_type, content_uri, metadata, segments, created_ms, updated_ms, seq FROM tkr_documents";

fn document(collection_name: &str, r: &Row) -> Result<Document> {
    let hash: Option<Vec<u8>> = r.get(3);
    let content_type: Option<String> = r.get(5);
    let uri: Option<String> = r.get(6);
    let content = match (hash, uri) {
        (Some(hash), _) => Some(ContentInfo::Stored {
            content_type: content_type.unwrap_or_default(),
            len: r.get::<_, Option<i64>>(4).unwrap_or(0) as u64,
            hash: hex::encode(hash),
        }),
        (None, Some(uri)) => Some(ContentInfo::External { uri, content_type }),
        (None, None) => None,
    };
    Ok(Document {
        id: r.get(0),
        collection: collection_name.to_owned(),
        modality: parse_modality(r.get(1))?,
        text: r.get(2),
        content,
        metadata: parse_object(r.get(7))?,
        created_ms: r.get::<_, i64>(9) as u64,
        updated_ms: r.get::<_, i64>(10) as u64,
        seq: r.get::<_, i64>(11) as u64,
        segments: parse_spans(r.get(8))?,
    })
}

/// A search row: doc_id, segment, a score source, seq, modality,
/// metadata, segments.
fn hit_row(r: &Row, score: impl Fn(f64) -> f64) -> Result<HitRow> {
    let id: String = r.get(0);
    Ok(HitRow {
        hit: IndexHit {
            doc: Arc::from(id.as_str()),
            seq: r.get::<_, i64>(3) as u64,
            segment: r.get::<_, i32>(1) as u32,
            score: score(r.get(2)) as f32,
        },
        modality: parse_modality(r.get(4))?,
        metadata: parse_object(r.get(5))?,
        spans: parse_spans(r.get(6))?,
    })
}

/// The `k` best hits from `fetch(limit)` (up to `limit` rows, best first):
/// grouped per document, fetched again deeper while grouping left fewer
/// than `k` and there may be more rows.
fn fetch_until_k(
    k: usize,
    group: GroupBy,
    mut fetch: impl FnMut(usize) -> Result<Vec<HitRow>>,
) -> Result<Vec<HitRow>> {
    let mut limit = k.max(1);
    loop {
        let rows = fetch(limit)?;
        let fetched = rows.len();
        let hits = group_rows(rows, group);
        if hits.len() >= k || fetched < limit || limit >= MAX_SEARCH_ROWS {
            return Ok(hits.into_iter().take(k).collect());
        }
        limit = (limit * 4).min(MAX_SEARCH_ROWS);
    }
}

/// Rows in order; per document only its best row unless grouping by
/// segment.
fn group_rows(rows: Vec<HitRow>, group: GroupBy) -> Vec<HitRow> {
    if group == GroupBy::Segment {
        return rows;
    }
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|r| seen.insert(r.hit.doc.clone()))
        .collect()
}

/// A collection's row by name (read by [`collection_row`]).
const COLLECTION_SQL: &str = "SELECT id, vectors, text_fields FROM tkr_collections WHERE name = $1";

/// The collection's row (`FOR SHARE` in writes, so it cannot be dropped
/// under them).
fn collection(
    client: &mut impl GenericClient,
    name: &str,
    for_write: bool,
) -> Result<CollectionRow> {
    let row = match for_write {
        true => client.query_opt(&format!("{COLLECTION_SQL} FOR SHARE"), &[&name])?,
        false => client.query_opt(COLLECTION_SQL, &[&name])?,
    };
    collection_row(name, row)
}

/// The collection's row (id, vectors, text_fields), or unknown.
fn collection_row(name: &str, row: Option<Row>) -> Result<CollectionRow> {
    let row = row.ok_or_else(|| DbError::UnknownCollection(name.to_owned()))?;
    Ok(CollectionRow {
        name: name.to_owned(),
        id: row.get(0),
        vectors: parse_encoding(row.get(1))?,
        text_fields: parse_fields(row.get(2))?,
    })
}

/// [`collection`] through the connection's prepared statement (searches).
fn collection_cached(client: &mut Pooled<'_>, name: &str) -> Result<CollectionRow> {
    let statement = client.statement(COLLECTION_SQL)?;
    collection_row(name, client.query_opt(&statement, &[&name])?)
}

/// One more reference to the blob `hash`, storing it when new.
fn keep_blob(tx: &mut Transaction<'_>, hash: &[u8], data: &[u8]) -> Result<()> {
    let updated = tx.execute(
        "UPDATE tkr_blobs SET refs = refs + 1 WHERE hash = $1",
        &[&hash],
    )?;
    if updated == 0 {
        tx.execute(
            "INSERT INTO tkr_blobs (hash, data, refs) VALUES ($1, $2, 1) \
             ON CONFLICT (hash) DO UPDATE SET refs = tkr_blobs.refs + 1",
            &[&hash, &data],
        )?;
    }
    Ok(())
}

/// One reference less to the blob `hash`, removing it at none.
fn release_blob(tx: &mut Transaction<'_>, hash: &[u8]) -> Result<()> {
    tx.execute(
        "UPDATE tkr_blobs SET refs = refs - 1 WHERE hash = $1",
        &[&hash],
    )?;
    tx.execute(
        "DELETE FROM tkr_blobs WHERE hash = $1 AND refs <= 0",
        &[&hash],
    )?;
    Ok(())
}

/// 32 hex digits from a per-process random seed, a counter and the clock:
/// unique across servers without asking the database.
fn generate_id() -> String {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| RandomState::new().hash_one(std::process::id()));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(&nanos.to_le_bytes());
    hex::encode(&hasher.finalize().as_bytes()[..16])
}

fn is_retryable(message: &str) -> bool {
    [
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::T_R_SERIALIZATION_FAILURE,
    ]
    .iter()
    .any(|state| message.ends_with(&format!("({})", state.code())))
}

fn parse_modality(s: &str) -> Result<Modality> {
    s.parse()
        .map_err(|e| DbError::Internal(format!("stored modality: {e}")))
}

fn parse_encoding(s: &str) -> Result<VectorEncoding> {
    s.parse()
        .map_err(|e| DbError::Internal(format!("stored vector encoding: {e}")))
}

fn parse_fields(v: Value) -> Result<Vec<String>> {
    serde_json::from_value(v).map_err(|e| DbError::Internal(format!("stored text fields: {e}")))
}

fn parse_spans(v: Value) -> Result<Vec<Span>> {
    serde_json::from_value(v).map_err(|e| DbError::Internal(format!("stored segments: {e}")))
}

fn parse_object(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(DbError::Internal(
            "stored metadata is not a JSON object".into(),
        )),
    }
}

/// The URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(invalid URL)".to_owned(),
    }
}
