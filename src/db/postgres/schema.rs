//! The PostgreSQL schema: versioned migrations applied at open, under an
//! advisory lock so that servers starting together apply each once, and the
//! record of the model the database is for.
//!
//! Tables (all named `tkr_*`): `tkr_meta` (model id, dimension, dtype),
//! `tkr_collections`, `tkr_documents` (one row per document: metadata as
//! jsonb with a GIN index, spans of its segments as jsonb), `tkr_vectors`
//! (one row per vector: segment 0 is the primary, float32 `vector(dim)`
//! always, so stored vectors come back bit for bit), `tkr_text_units` (the
//! lexical side: one tsvector per text unit, GIN-indexed), `tkr_blobs`
//! (content bytes by blake3 hash, reference-counted). Each collection gets
//! its own partial HNSW index on `tkr_vectors` (see [`vector_index_sql`]).
use postgres::{GenericClient, Transaction};

use super::PgError;
use crate::db::DbOptions;
use crate::types::VectorEncoding;

/// Key of the advisory lock held while migrating (any constant unlikely to
/// be used by others: "tkr-embed" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x746b_722d_656d_6264;

/// pgvector's HNSW indexes `vector` up to this many dimensions...
pub const MAX_VECTOR_INDEX_DIM: usize = 2000;
/// ...and `halfvec` up to this many.
pub const MAX_HALFVEC_INDEX_DIM: usize = 4000;

/// The migrations, in order; version = position + 1. Append only: a
/// database records which ones it has.
fn migrations(dim: usize) -> Vec<String> {
    vec![format!(
        r#"
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE tkr_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE tkr_collections (
    id serial PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE,
    created_ms bigint NOT NULL,
    vectors text NOT NULL,
    text_fields jsonb NOT NULL
);
CREATE SEQUENCE tkr_seq;
CREATE TABLE tkr_blobs (
    hash bytea PRIMARY KEY,
    data bytea NOT NULL,
    refs bigint NOT NULL
);
CREATE TABLE tkr_documents (
    collection_id integer NOT NULL REFERENCES tkr_collections (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    modality text NOT NULL,
    text text,
    content_hash bytea,
    content_len bigint,
    content_type text,
    content_uri text,
    metadata jsonb NOT NULL,
    segments jsonb NOT NULL,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX tkr_documents_metadata ON tkr_documents USING gin (metadata jsonb_path_ops);
CREATE TABLE tkr_vectors (
    collection_id integer NOT NULL,
    doc_id text COLLATE "C" NOT NULL,
    segment integer NOT NULL,
    embedding vector({dim}) NOT NULL,
    PRIMARY KEY (collection_id, doc_id, segment),
    FOREIGN KEY (collection_id, doc_id) REFERENCES tkr_documents ON DELETE CASCADE
);
CREATE TABLE tkr_text_units (
    collection_id integer NOT NULL,
    doc_id text COLLATE "C" NOT NULL,
    segment integer NOT NULL,
    tsv tsvector NOT NULL,
    PRIMARY KEY (collection_id, doc_id, segment),
    FOREIGN KEY (collection_id, doc_id) REFERENCES tkr_documents ON DELETE CASCADE
);
CREATE INDEX tkr_text_units_tsv ON tkr_text_units USING gin (tsv);

-- Filter conditions (see filter.rs): equal to the value, or a list holding it.
CREATE FUNCTION tkr_eq(x jsonb, v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(x) = 'array'
        THEN EXISTS (SELECT 1 FROM jsonb_array_elements(x) AS e (value) WHERE e.value = v)
        ELSE x = v END
$$;
-- A number within the bounds given (NULL: no bound).
CREATE FUNCTION tkr_number_in(x jsonb, gt float8, gte float8, lt float8, lte float8)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(x) = 'number' THEN
        (gt IS NULL OR x::float8 > gt) AND (gte IS NULL OR x::float8 >= gte)
        AND (lt IS NULL OR x::float8 < lt) AND (lte IS NULL OR x::float8 <= lte)
    ELSE FALSE END
$$;
-- The same for a value or any item of a list.
CREATE FUNCTION tkr_in_range(x jsonb, gt float8, gte float8, lt float8, lte float8)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(x) = 'array'
        THEN EXISTS (SELECT 1 FROM jsonb_array_elements(x) AS e (value)
                     WHERE tkr_number_in(e.value, gt, gte, lt, lte))
        ELSE tkr_number_in(x, gt, gte, lt, lte) END
$$;
"#
    )]
}

/// The newest schema version this build knows.
pub fn latest_version() -> u32 {
    migrations(1).len() as u32
}

/// What the database was created for.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub model_id: String,
    pub dim: usize,
    pub dtype: String,
}

/// Applies the missing migrations and checks (or, on a new database,
/// records) the model, all in `tx` under the migration lock. Returns the
/// model recorded.
pub fn migrate(tx: &mut Transaction<'_>, options: &DbOptions) -> Result<Meta, PgError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tkr_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let applied: i32 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM tkr_migrations", &[])?
        .get(0);
    let all = migrations(options.dim);
    if applied as usize > all.len() {
        return Err(PgError::Schema(format!(
            "the database has schema version {applied}; this build knows up to {} (upgrade tkr-embed)",
            all.len()
        )));
    }
    for (i, sql) in all.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO tkr_migrations (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )?;
    }
    if let Some(meta) = read_meta(tx)? {
        return Ok(meta);
    }
    for (key, value) in [
        ("model_id", options.model_id.clone()),
        ("dim", options.dim.to_string()),
        ("dtype", options.dtype.clone()),
    ] {
        tx.execute(
            "INSERT INTO tkr_meta (key, value) VALUES ($1, $2)",
            &[&key, &value],
        )?;
    }
    Ok(Meta {
        model_id: options.model_id.clone(),
        dim: options.dim,
        dtype: options.dtype.clone(),
    })
}

/// The model recorded in `tkr_meta`; `None` when the table or the record
/// is not there (a database without our schema, or not set up yet).
pub fn read_meta(client: &mut impl GenericClient) -> Result<Option<Meta>, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('tkr_meta') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client.query("SELECT key, value FROM tkr_meta", &[])?;
    let get = |key: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == key)
            .map(|r| r.get::<_, String>(1))
    };
    let (Some(model_id), Some(dim)) = (get("model_id"), get("dim")) else {
        return Ok(None);
    };
    let dim = dim
        .parse()
        .map_err(|_| PgError::Schema(format!("tkr_meta has a bad dimension {dim:?}")))?;
    Ok(Some(Meta {
        model_id,
        dim,
        dtype: get("dtype").unwrap_or_default(),
    }))
}

/// How a collection's vectors are indexed: float32 `vector` while
/// pgvector's HNSW takes the dimension, half precision (`halfvec`, an
/// expression over the float32 column) above that or when the collection
/// asked for compressed vectors, and no index (exact scans) above 4,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorIndex {
    Float32,
    Half,
    None,
}

impl VectorIndex {
    pub fn choose(dim: usize, encoding: VectorEncoding) -> VectorIndex {
        match (dim, encoding) {
            (d, VectorEncoding::F32) if d <= MAX_VECTOR_INDEX_DIM => VectorIndex::Float32,
            (d, _) if d <= MAX_HALFVEC_INDEX_DIM => VectorIndex::Half,
            _ => VectorIndex::None,
        }
    }

    /// The expression searches order by, for the query in placeholder
    /// `query` (a `vector`); it must match the index's expression.
    pub fn distance_sql(self, dim: usize, query: &str) -> String {
        match self {
            VectorIndex::Float32 | VectorIndex::None => format!("(v.embedding <=> {query})"),
            VectorIndex::Half => {
                format!("(v.embedding::halfvec({dim}) <=> {query}::halfvec({dim}))")
            }
        }
    }
}

/// Name of a collection's vector index.
pub fn vector_index_name(collection_id: i32) -> String {
    format!("tkr_vectors_c{collection_id}")
}

/// The statement creating a collection's partial HNSW index (`None`: the
/// collection is searched by exact scans). Numbers only: no user text.
pub fn vector_index_sql(
    collection_id: i32,
    kind: VectorIndex,
    dim: usize,
    m: usize,
    ef_construction: usize,
) -> Option<String> {
    let (expression, ops) = match kind {
        VectorIndex::Float32 => ("embedding".to_owned(), "vector_cosine_ops"),
        VectorIndex::Half => (format!("(embedding::halfvec({dim}))"), "halfvec_cosine_ops"),
        VectorIndex::None => return None,
    };
    Some(format!(
        "CREATE INDEX {} ON tkr_vectors USING hnsw ({expression} {ops}) \
         WITH (m = {m}, ef_construction = {ef_construction}) WHERE collection_id = {collection_id}",
        vector_index_name(collection_id)
    ))
}
