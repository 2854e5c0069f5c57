//! Commands on the embedded database (`--data-dir`): insert, get, delete,
//! search, collections, stats, reindex.
use std::{path::PathBuf, sync::Arc};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::{
    config::ConfigSources,
    db::{Db, DbOptions, HybridOptions, SearchMode},
    engine::Engine,
    index::GroupBy,
    service::{
        block_on,
        views::{HitView, SearchResults, SegmentView, StatsView},
        FileSource, ImageInput, Include, InsertContent, SearchQuery, SearchRequest, Service,
    },
    types::VectorEncoding,
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

fn open(loaded: &ConfigSources, mut options: DbOptions) -> anyhow::Result<Db> {
    let storage = &loaded.config.storage;
    let location = storage.location();
    options.min_free_bytes = storage.min_free_bytes;
    options.cache_bytes = storage.cache_bytes;
    Db::open_at(&location, options, storage.pool_size)
        .with_context(|| format!("cannot open the database in {location}"))
}

/// The options of the existing database, if there is one.
fn stored_options(loaded: &ConfigSources) -> anyhow::Result<Option<DbOptions>> {
    let location = loaded.config.storage.location();
    Db::stored_options_at(&location)
        .with_context(|| format!("cannot read the database in {location}"))
}

/// Opens an existing database without loading a model.
fn open_existing(loaded: &ConfigSources) -> anyhow::Result<Db> {
    match stored_options(loaded)? {
        Some(options) => open(loaded, options),
        None => bail!(
            "no database in {} (insert something first, or pass --data-dir or --store)",
            loaded.config.storage.location()
        ),
    }
}

/// The service on an existing database, without a model.
fn service(loaded: &ConfigSources) -> anyhow::Result<Service> {
    Ok(Service::new(
        Arc::new(open_existing(loaded)?),
        None,
        &loaded.config,
    )?)
}

/// The service with the configured model loaded.
fn service_with_model(loaded: &ConfigSources) -> anyhow::Result<Service> {
    let engine = super::start_engine(loaded)?;
    let db = open_with_engine(loaded, &engine)?;
    Ok(Service::new(
        Arc::new(db),
        Some(Arc::new(engine)),
        &loaded.config,
    )?)
}

/// Runs a service call on a runtime of its own.
fn run<T>(
    future: impl std::future::Future<Output = crate::service::Result<T>>,
) -> anyhow::Result<T> {
    Ok(block_on(future)??)
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
    let collection = args.collection.as_str();
    let inserted = if let Some(path) = &args.file {
        let service = service_with_model(loaded)?;
        run(service.ensure_collection(collection))?;
        let bar = super::progress_bar(0, "embedding");
        let progress = {
            let bar = bar.clone();
            Arc::new(move |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            })
        };
        let file = FileSource::Path(path.clone());
        let inserted =
            run(service.insert_file(collection, file, args.id.clone(), metadata, progress))?;
        bar.finish_and_clear();
        inserted
    } else {
        let vector = args.vector.as_deref().map(parse_vector).transpose()?;
        if args.text.is_none() && args.image.is_none() && vector.is_none() {
            bail!("nothing to insert: give --text, --image, --file or --vector");
        }
        let service = match &vector {
            // A stored vector needs no model; a new database takes its
            // dimension from it.
            Some(v) => {
                let db = match stored_options(loaded)? {
                    Some(options) => open(loaded, options)?,
                    None => open(
                        loaded,
                        DbOptions::new(
                            model_identity(&loaded.config.model.name),
                            v.len(),
                            "external",
                        ),
                    )?,
                };
                Service::new(Arc::new(db), None, &loaded.config)?
            }
            None => service_with_model(loaded)?,
        };
        run(service.ensure_collection(collection))?;
        let images = match &args.image {
            Some(path) => vec![ImageInput::Bytes(read_file(path)?)],
            None => Vec::new(),
        };
        let input = InsertContent {
            id: args.id.clone(),
            text: args.text.clone(),
            images,
            metadata,
            vector,
        };
        run(service.insert(collection, input))?
    };
    if args.json {
        println!("{}", json!({"id": inserted.id, "collection": collection}));
    } else {
        println!("{}", inserted.id);
    }
    Ok(())
}

pub fn get(args: DocArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let view = run(service(loaded)?.document(&args.collection, &args.id))?;
    if args.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&view)?);
    }
    Ok(())
}

pub fn delete(args: DocArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    run(service(loaded)?.delete(&args.collection, &args.id))?;
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
        .map(|f| serde_json::from_str::<Value>(f).context("--filter is not valid JSON"))
        .transpose()?;
    let query = SearchQuery {
        text: args.text.clone(),
        images: match &args.image {
            Some(path) => vec![ImageInput::Bytes(read_file(path)?)],
            None => Vec::new(),
        },
        instruction: None,
        document_id: args.document.clone(),
        vector: args.vector.as_deref().map(parse_vector).transpose()?,
        parts: None,
    };
    let mut request = SearchRequest::new(args.collection.clone(), query);
    request.k = args.k;
    request.filter = filter;
    request.mode = args.mode;
    request.group_by = args.group_by;
    request.hybrid = HybridOptions {
        rrf_k: args.rrf_k,
        vector_weight: args.vector_weight,
        lexical_weight: args.lexical_weight,
    };
    // Hybrid hits say where they ranked in each list.
    request.include = Include {
        scores: args.mode == SearchMode::Hybrid,
        ..Include::default()
    };
    let service = if request.needs_model() {
        service_with_model(loaded)?
    } else {
        service(loaded)?
    };
    let results = run(service.search(request))?;
    if args.json {
        println!("{}", serde_json::to_string(&results)?);
    } else {
        print_hits(&results);
    }
    Ok(())
}

pub fn collections(cmd: Option<CollectionsCommand>, loaded: &ConfigSources) -> anyhow::Result<()> {
    match cmd.unwrap_or(CollectionsCommand::List { json: false }) {
        CollectionsCommand::List { json } => {
            let list = run(service(loaded)?.list_collections())?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
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
            let service = service(loaded)?;
            run(service.create_collection(name.clone(), Some(vectors.as_str()), text_fields))?;
            println!("created {name} ({vectors} vectors)");
        }
        CollectionsCommand::Drop { name } => {
            run(service(loaded)?.drop_collection(&name))?;
            println!("dropped {name}");
        }
    }
    Ok(())
}

pub fn stats(args: JsonFlag, loaded: &ConfigSources) -> anyhow::Result<()> {
    let db = open_existing(loaded)?;
    let view = StatsView::new(&loaded.config.storage.location(), &db.stats()?);
    if args.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&view)?);
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

/// Where in its document a hit matched: a time range, a page, or a byte
/// range of the text (with its page, for a PDF); `-` for the whole document.
fn segment_cell(segment: Option<&SegmentView>) -> String {
    let Some(s) = segment else {
        return "-".to_owned();
    };
    match (s.start_s, s.end_s, s.start, s.end, s.page) {
        (Some(a), Some(b), _, _, _) => format!("{a:.1}–{b:.1} s"),
        (_, _, Some(a), Some(b), Some(p)) => format!("p. {p}, bytes {a}–{b}"),
        (_, _, Some(a), Some(b), None) => format!("bytes {a}–{b}"),
        (_, _, _, _, Some(p)) => format!("page {p}"),
        _ => "-".to_owned(),
    }
}

fn print_hits(results: &SearchResults) {
    let hits: &[HitView] = &results.hits;
    if hits.is_empty() {
        println!("(no hits)");
        return;
    }
    let segments: Vec<String> = hits
        .iter()
        .map(|h| segment_cell(h.segment.as_ref()))
        .collect();
    let width = segments
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    println!(
        "{:>4}  {:>7}  {:<8}  {:<32}  {:<width$}  metadata",
        "rank", "score", "modality", "id", "segment"
    );
    for (i, (h, segment)) in hits.iter().zip(&segments).enumerate() {
        let meta = h
            .metadata
            .as_ref()
            .map(|m| Value::from(m.clone()).to_string())
            .unwrap_or_default();
        let meta: String = meta.chars().take(60).collect();
        println!(
            "{:>4}  {:>7.4}  {:<8}  {:<32}  {:<width$}  {}",
            i + 1,
            h.score,
            h.modality,
            h.id,
            segment,
            meta
        );
    }
}
