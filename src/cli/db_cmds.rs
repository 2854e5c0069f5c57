//! Commands on the embedded database (`--data-dir`): insert, get, delete,
//! search, collections, stats, reindex.
use std::{path::PathBuf, sync::Arc};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::{
    config::ConfigSources,
    db::{
        content_modality, CollectionOptions, ContentDocument, Db, DbOptions, Hit, HybridOptions,
        NewDocument, SearchMode,
    },
    engine::{EmbedRequest, Engine, ImageData},
    index::{Filter, GroupBy},
    types::{Modality, VectorEncoding},
};

#[derive(Debug, Args)]
pub struct InsertArgs {
    /// Collection (created when missing).
    #[arg(long, short, default_value = "default")]
    collection: String,
    /// Document id (default: generated). An existing id is replaced.
    #[arg(long)]
    id: Option<String>,
    /// Text of the document.
    #[arg(long)]
    text: Option<String>,
    /// Image file of the document (with --text: one fused text+image vector).
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Any supported file: image, video (sampled frames), PDF (pages and
    /// text), .txt/.md/.html (chunked).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["text", "image", "vector"])]
    file: Option<PathBuf>,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// A precomputed vector (JSON array); no model is loaded.
    #[arg(long, value_name = "JSON")]
    vector: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DocArgs {
    #[arg(long, short, default_value = "default")]
    collection: String,
    /// Document id.
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[arg(long, short, default_value = "default")]
    collection: String,
    /// Query text.
    #[arg(long)]
    text: Option<String>,
    /// Query image (with --text: a fused query).
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Use a stored document's vector as the query (it is left out of the hits).
    #[arg(long, value_name = "ID")]
    document: Option<String>,
    /// A raw query vector (JSON array).
    #[arg(long, value_name = "JSON")]
    vector: Option<String>,
    /// Number of hits.
    #[arg(long, short, default_value_t = 10)]
    k: usize,
    /// Metadata filter, e.g. '{"field":"lang","eq":"en"}' (see the README).
    #[arg(long, value_name = "JSON")]
    filter: Option<String>,
    /// `vector` (nearest embeddings), `lexical` (BM25 over the text: needs
    /// --text only, loads no model) or `hybrid` (both, fused by reciprocal
    /// rank; --text, optionally with --image, or --vector with --text).
    #[arg(long, default_value = "vector", value_name = "MODE")]
    mode: SearchMode,
    /// `document` (one hit per document, the default) or `segment` (one per
    /// matching segment: several chunks, pages or scenes of one document).
    #[arg(long, default_value = "document", value_name = "GROUP")]
    group_by: GroupBy,
    /// Hybrid: reciprocal-rank-fusion constant.
    #[arg(long, default_value_t = 60.0, value_name = "K")]
    rrf_k: f32,
    /// Hybrid: weight of the vector list.
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    vector_weight: f32,
    /// Hybrid: weight of the lexical list.
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    lexical_weight: f32,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CollectionsCommand {
    /// List collections with their document counts (the default).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a collection.
    Create {
        name: String,
        /// How the index holds vectors: `f32`, or `int8` (a quarter of the
        /// index memory; search rescores candidates exactly from the stored
        /// float32 vectors).
        #[arg(long, default_value = "f32", value_name = "ENCODING")]
        vectors: VectorEncoding,
        /// Metadata fields (dotted paths to strings or lists of strings)
        /// that lexical search matches, comma-separated: `title,tags`.
        #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
        text_fields: Vec<String>,
    },
    /// Drop a collection and all its documents.
    Drop { name: String },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ReindexArgs {
    /// Only this collection (default: all).
    #[arg(long, short)]
    collection: Option<String>,
}

/// The identity a database records for the configured model: the repo id,
/// or the canonical path of a local directory.
fn model_identity(name: &str) -> String {
    std::fs::canonicalize(name)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| name.to_owned())
}

/// Opens the database for use with the engine's model.
pub(super) fn open_with_engine(loaded: &ConfigSources, engine: &Engine) -> anyhow::Result<Db> {
    let info = engine.info();
    let options = DbOptions::new(
        model_identity(&loaded.config.model.name),
        info.dim,
        info.dtype.clone(),
    );
    open(loaded, options)
}

fn open(loaded: &ConfigSources, options: DbOptions) -> anyhow::Result<Db> {
    let dir = &loaded.config.storage.data_dir;
    Db::open(dir, options).with_context(|| format!("cannot open the database in {}", dir.display()))
}

/// Opens an existing database without loading a model.
fn open_existing(loaded: &ConfigSources) -> anyhow::Result<Db> {
    let dir = &loaded.config.storage.data_dir;
    match Db::stored_options(dir)? {
        Some(options) => open(loaded, options),
        None => bail!(
            "no database in {} (insert something first, or pass --data-dir)",
            dir.display()
        ),
    }
}

fn parse_vector(json: &str) -> anyhow::Result<Vec<f32>> {
    serde_json::from_str(json).context("--vector must be a JSON array of numbers")
}

fn parse_json_object(json: &str, what: &str) -> anyhow::Result<Value> {
    let value: Value =
        serde_json::from_str(json).with_context(|| format!("{what} is not valid JSON"))?;
    if !value.is_object() {
        bail!("{what} must be a JSON object");
    }
    Ok(value)
}

fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn insert(args: InsertArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let metadata = match &args.metadata {
        Some(m) => parse_json_object(m, "--metadata")?,
        None => Value::Null,
    };
    let id = if let Some(path) = &args.file {
        let engine = super::start_engine(loaded)?;
        let db = open_with_engine(loaded, &engine)?;
        ensure_collection(&db, &args.collection)?;
        let options = crate::db::files::IngestOptions::from_config(&loaded.config);
        let bar = super::progress_bar(0, "embedding");
        let progress = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let input = crate::db::files::FileInput {
            path,
            id: args.id.clone(),
            metadata,
        };
        let id = db.insert_file(&engine, &args.collection, input, &options, &progress)?;
        bar.finish_and_clear();
        id
    } else if let Some(v) = &args.vector {
        let vector = parse_vector(v)?;
        let db = match Db::stored_options(&loaded.config.storage.data_dir)? {
            Some(options) => open(loaded, options)?,
            None => open(
                loaded,
                DbOptions::new(
                    model_identity(&loaded.config.model.name),
                    vector.len(),
                    "external",
                ),
            )?,
        };
        ensure_collection(&db, &args.collection)?;
        // A bare vector counts as text, like a text-only document.
        let modality =
            content_modality(args.text.is_some(), args.image.is_some()).unwrap_or(Modality::Text);
        let mut doc = NewDocument::new(modality, vector).with_metadata(metadata);
        doc.id = args.id.clone();
        doc.text = args.text.clone();
        if let Some(path) = &args.image {
            doc = doc.with_content(crate::db::image_content(read_file(path)?));
        }
        db.insert(&args.collection, doc)?
    } else {
        if args.text.is_none() && args.image.is_none() {
            bail!("nothing to insert: give --text, --image, --file or --vector");
        }
        let engine = super::start_engine(loaded)?;
        let db = open_with_engine(loaded, &engine)?;
        ensure_collection(&db, &args.collection)?;
        let image = args.image.as_ref().map(read_file).transpose()?;
        db.insert_content(
            &engine,
            &args.collection,
            ContentDocument {
                id: args.id.clone(),
                text: args.text.clone(),
                image,
                metadata,
            },
        )?
    };
    if args.json {
        println!("{}", json!({"id": id, "collection": args.collection}));
    } else {
        println!("{id}");
    }
    Ok(())
}

fn ensure_collection(db: &Db, name: &str) -> anyhow::Result<()> {
    if !db.list_collections()?.iter().any(|c| c.name == name) {
        db.create_collection(name)?;
    }
    Ok(())
}

pub fn get(args: DocArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let db = open_existing(loaded)?;
    let Some(doc) = db.get(&args.collection, &args.id)? else {
        bail!(
            "no document {:?} in collection {:?}",
            args.id,
            args.collection
        );
    };
    let v = crate::db::document_json(&doc);
    if args.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

pub fn delete(args: DocArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let db = open_existing(loaded)?;
    let deleted = db.delete(&args.collection, &args.id)?;
    if !deleted {
        bail!(
            "no document {:?} in collection {:?}",
            args.id,
            args.collection
        );
    }
    if args.json {
        println!("{}", json!({"deleted": args.id}));
    } else {
        println!("deleted {}", args.id);
    }
    Ok(())
}

pub fn search(args: SearchArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let filter = args
        .filter
        .as_deref()
        .map(|f| -> anyhow::Result<Filter> {
            let value: Value = serde_json::from_str(f).context("--filter is not valid JSON")?;
            Ok(Filter::from_json(&value)?)
        })
        .transpose()?;
    let started = std::time::Instant::now();
    let hybrid = HybridOptions {
        rrf_k: args.rrf_k,
        vector_weight: args.vector_weight,
        lexical_weight: args.lexical_weight,
    };
    let hits = match (args.mode, &args.text) {
        (SearchMode::Vector, _) => vector_search(&args, loaded, filter.as_ref())?,
        (SearchMode::Lexical, Some(text))
            if args.image.is_none() && args.document.is_none() && args.vector.is_none() =>
        {
            open_existing(loaded)?.search_lexical(
                &args.collection,
                text,
                args.k,
                filter.as_ref(),
                args.group_by,
            )?
        }
        (SearchMode::Lexical, _) => bail!("--mode lexical searches with --text only"),
        (SearchMode::Hybrid, Some(text)) if args.document.is_none() => {
            if let Some(v) = &args.vector {
                if args.image.is_some() {
                    bail!("--mode hybrid takes --text with --image or with --vector, not both");
                }
                let db = open_existing(loaded)?;
                let v = parse_vector(v)?;
                let (k, group) = (args.k, args.group_by);
                db.search_hybrid(
                    &args.collection,
                    &v,
                    text,
                    k,
                    filter.as_ref(),
                    &hybrid,
                    group,
                )?
            } else {
                let engine = super::start_engine(loaded)?;
                let db = open_with_engine(loaded, &engine)?;
                let query = engine.embed(content_request(&args)?)?;
                db.search_hybrid(
                    &args.collection,
                    &query,
                    text,
                    args.k,
                    filter.as_ref(),
                    &hybrid,
                    args.group_by,
                )?
            }
        }
        (SearchMode::Hybrid, _) => {
            bail!("--mode hybrid needs --text (with --image or --vector at most)")
        }
    };
    let took_ms = started.elapsed().as_secs_f64() * 1e3;
    if args.json {
        let hits: Vec<Value> = hits.iter().map(crate::db::hit_json).collect();
        println!("{}", json!({"hits": hits, "took_ms": took_ms}));
    } else {
        print_hits(&hits);
    }
    Ok(())
}

/// The embedding request of --text and/or --image.
fn content_request(args: &SearchArgs) -> anyhow::Result<EmbedRequest> {
    let mut request = EmbedRequest::text(args.text.clone().unwrap_or_default());
    if let Some(path) = &args.image {
        request
            .images
            .push(ImageData::Encoded(Arc::new(read_file(path)?)));
    }
    Ok(request)
}

fn vector_search(
    args: &SearchArgs,
    loaded: &ConfigSources,
    filter: Option<&Filter>,
) -> anyhow::Result<Vec<Hit>> {
    let given = [
        args.text.is_some() || args.image.is_some(),
        args.document.is_some(),
        args.vector.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() != 1 {
        bail!("give exactly one query: --text/--image, --document or --vector");
    }
    let hits = if let Some(id) = &args.document {
        open_existing(loaded)?.search_by_document(&args.collection, id, args.k, filter)?
    } else if let Some(v) = &args.vector {
        let v = parse_vector(v)?;
        open_existing(loaded)?.search_grouped(
            &args.collection,
            &v,
            args.k,
            filter,
            args.group_by,
        )?
    } else {
        let engine = super::start_engine(loaded)?;
        let db = open_with_engine(loaded, &engine)?;
        db.check_collection(&args.collection)?;
        let query = engine.embed(content_request(args)?)?;
        db.search_grouped(&args.collection, &query, args.k, filter, args.group_by)?
    };
    Ok(hits)
}

pub fn collections(cmd: Option<CollectionsCommand>, loaded: &ConfigSources) -> anyhow::Result<()> {
    match cmd.unwrap_or(CollectionsCommand::List { json: false }) {
        CollectionsCommand::List { json } => {
            let db = open_existing(loaded)?;
            let list = db.list_collections()?;
            if json {
                let v: Vec<Value> = list
                    .iter()
                    .map(|c| json!({"name": c.name, "documents": c.documents, "vectors": c.vectors.as_str()}))
                    .collect();
                println!("{}", Value::from(v));
            } else if list.is_empty() {
                println!("(no collections)");
            } else {
                for c in list {
                    println!(
                        "{:<30} {:>10} documents  {} vectors",
                        c.name, c.documents, c.vectors
                    );
                }
            }
        }
        CollectionsCommand::Create {
            name,
            vectors,
            text_fields,
        } => {
            let options = CollectionOptions {
                vectors,
                text_fields,
            };
            open_existing(loaded)?.create_collection_with(&name, options)?;
            println!("created {name} ({vectors} vectors)");
        }
        CollectionsCommand::Drop { name } => {
            if !open_existing(loaded)?.drop_collection(&name)? {
                bail!("unknown collection {name:?}");
            }
            println!("dropped {name}");
        }
    }
    Ok(())
}

pub fn stats(args: JsonFlag, loaded: &ConfigSources) -> anyhow::Result<()> {
    let db = open_existing(loaded)?;
    let s = db.stats()?;
    let collections: Vec<Value> = s
        .collections
        .iter()
        .map(|c| {
            json!({"name": c.name, "documents": c.documents,
                   "index": {"documents": c.index.documents, "points": c.index.points, "tombstones": c.index.tombstones,
                             "vectors": c.index.vectors.as_str(), "memory_bytes": c.index.memory_bytes}})
        })
        .collect();
    let v = json!({
        "data_dir": loaded.config.storage.data_dir,
        "model_id": s.model_id, "dim": s.dim, "dtype": s.dtype,
        "format_version": s.format_version, "documents": s.documents,
        "collections": collections, "blobs": s.blobs, "blob_bytes": s.blob_bytes,
        "last_seq": s.last_seq, "size_on_disk": s.size_on_disk,
    });
    if args.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

pub fn reindex(args: ReindexArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let db = open_existing(loaded)?;
    let started = std::time::Instant::now();
    db.reindex(args.collection.as_deref())?;
    db.checkpoint()?;
    println!(
        "reindexed {} in {:.2}s",
        args.collection.as_deref().unwrap_or("all collections"),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_hits(hits: &[Hit]) {
    if hits.is_empty() {
        println!("(no hits)");
        return;
    }
    println!(
        "{:>4}  {:>7}  {:<8}  {:<32}  metadata",
        "rank", "score", "modality", "id"
    );
    for (i, h) in hits.iter().enumerate() {
        let meta = Value::from(h.metadata.clone()).to_string();
        let meta: String = meta.chars().take(60).collect();
        println!(
            "{:>4}  {:>7.4}  {:<8}  {:<32}  {}",
            i + 1,
            h.score,
            h.modality.as_str(),
            h.id,
            meta
        );
    }
}
