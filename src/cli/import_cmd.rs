//! `tkr-embed import DIR`: every supported file under DIR becomes a document
//! (images, videos, PDFs, text/Markdown/HTML), several files in flight at
//! once so decoding runs in parallel and the engine batches their inputs.
//!
//! Resumable: a file's id is its path relative to DIR, and a file whose
//! stored copy has the same blake3 hash is skipped; each file is one atomic
//! insert, so an interrupted import continues where it stopped.
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::config::ConfigSources;
use crate::db::files::{file_kind, FileInput, IngestOptions};
use crate::db::Db;
use crate::engine::Engine;
use crate::media::MediaKind;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory to import (searched recursively; hidden entries skipped).
    dir: PathBuf,
    /// Collection (created when missing).
    #[arg(long, short, default_value = "default")]
    collection: String,
    /// Files processed at once (default: CPU cores, at most 4).
    #[arg(long)]
    jobs: Option<usize>,
    /// Files larger than this many MiB are referenced by path instead of
    /// copied into the database.
    #[arg(long, default_value_t = 64)]
    copy_limit_mib: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// What happened to one file.
enum Outcome {
    Imported(MediaKind),
    Unchanged,
    Failed(String),
}

struct Summary {
    imported: Vec<(String, MediaKind)>,
    unchanged: usize,
    unsupported: Vec<String>,
    failed: Vec<(String, String)>,
}

pub fn run(args: ImportArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let started = Instant::now();
    if !args.dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    let (files, unsupported) = discover(&args.dir)?;
    let engine = super::start_engine(loaded)?;
    let db = super::db_cmds::open_with_engine(loaded, &engine)?;
    if !db
        .list_collections()?
        .iter()
        .any(|c| c.name == args.collection)
    {
        db.create_collection(&args.collection)?;
    }
    let mut options = IngestOptions::from_config(&loaded.config);
    options.reference_above_bytes = Some(args.copy_limit_mib * 1024 * 1024);

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .max(1);
    let bars = MultiProgress::new();
    let total = bars.add(super::progress_bar(files.len() as u64, "files"));
    let queue = Mutex::new(files.iter());
    let outcomes = Mutex::new(Vec::with_capacity(files.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(files.len().max(1)) {
            let line = bars.add(file_bar());
            let (queue, outcomes, total) = (&queue, &outcomes, &total);
            let (db, engine, options, dir, collection) =
                (&db, &engine, &options, &args.dir, &args.collection);
            scope.spawn(move || loop {
                let Some(&(ref path, kind)) = queue.lock().unwrap().next() else {
                    line.finish_and_clear();
                    break;
                };
                let id = relative_id(dir, path);
                line.set_message(id.clone());
                line.set_position(0);
                line.set_length(0);
                let outcome = import_one(db, engine, collection, (path, kind), &id, options, &line);
                if let Outcome::Failed(reason) = &outcome {
                    total.suspend(|| eprintln!("failed: {id}: {reason}"));
                }
                outcomes.lock().unwrap().push((id, outcome));
                total.inc(1);
            });
        }
    });
    total.finish_and_clear();

    let mut summary = Summary {
        imported: Vec::new(),
        unchanged: 0,
        unsupported: unsupported
            .iter()
            .map(|p| relative_id(&args.dir, p))
            .collect(),
        failed: Vec::new(),
    };
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Imported(kind) => summary.imported.push((id, kind)),
            Outcome::Unchanged => summary.unchanged += 1,
            Outcome::Failed(reason) => summary.failed.push((id, reason)),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    print_summary(&summary, &args, seconds);
    db.close()?;
    if !summary.failed.is_empty() {
        bail!(
            "{} of {} files failed (listed above); run the import again after fixing them",
            summary.failed.len(),
            files.len()
        );
    }
    Ok(())
}

fn file_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  {msg:40!} {bar:20} {pos}/{len}").expect("valid template"),
    );
    bar
}

/// A supported file and what it is.
type Found = (PathBuf, MediaKind);

/// Supported files under `dir` (sorted) with their kind, and the
/// unsupported ones.
fn discover(dir: &Path) -> anyhow::Result<(Vec<Found>, Vec<PathBuf>)> {
    let mut all = Vec::new();
    walk(dir, &mut all)?;
    all.sort();
    let mut supported = Vec::new();
    let mut unsupported = Vec::new();
    for path in all {
        match file_kind(&path) {
            Ok(Some(kind)) => supported.push((path, kind)),
            _ => unsupported.push(path),
        }
    }
    Ok((supported, unsupported))
}

/// Regular files, recursively; hidden entries and symlinks are skipped (no
/// loops, nothing from outside the tree).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            // Symlinks are skipped too: they may point outside the tree.
            out.push(path);
        }
    }
    Ok(())
}

/// The document id of a file: its path under the import root, with `/`.
fn relative_id(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn import_one(
    db: &Db,
    engine: &Engine,
    collection: &str,
    (path, kind): (&Path, MediaKind),
    id: &str,
    options: &IngestOptions,
    line: &ProgressBar,
) -> Outcome {
    let hash = match hash_file(path) {
        Ok(h) => h,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match db.get(collection, id) {
        Ok(Some(doc)) if doc.metadata.get("blake3") == Some(&Value::String(hash.clone())) => {
            return Outcome::Unchanged
        }
        Ok(_) => {}
        Err(e) => return Outcome::Failed(e.to_string()),
    }
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = json!({"path": id, "filename": name, "bytes": bytes, "blake3": hash});
    let progress = |done: u64, total: u64| {
        line.set_length(total);
        line.set_position(done);
    };
    let input = FileInput {
        path,
        id: Some(id.to_owned()),
        metadata,
    };
    match db.insert_file(engine, collection, input, options, &progress) {
        Ok(_) => Outcome::Imported(kind),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Video => "video",
        MediaKind::Pdf => "pdf",
        MediaKind::Text => "text",
        MediaKind::Markdown => "markdown",
        MediaKind::Html => "html",
    }
}

fn print_summary(s: &Summary, args: &ImportArgs, seconds: f64) {
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for (_, kind) in &s.imported {
        *by_kind.entry(kind_name(*kind)).or_default() += 1;
    }
    if args.json {
        let failed: Vec<Value> = s
            .failed
            .iter()
            .map(|(path, error)| json!({"path": path, "error": error}))
            .collect();
        println!(
            "{}",
            json!({
                "collection": args.collection,
                "imported": s.imported.len(),
                "by_kind": by_kind,
                "unchanged": s.unchanged,
                "unsupported": s.unsupported,
                "failed": failed,
                "seconds": seconds,
            })
        );
        return;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "imported {} file(s) into {:?} in {:.1} s{}",
        s.imported.len(),
        args.collection,
        seconds,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    );
    if s.unchanged > 0 {
        println!("skipped {} already stored and unchanged", s.unchanged);
    }
    if !s.unsupported.is_empty() {
        println!(
            "ignored {} unsupported file(s): {}",
            s.unsupported.len(),
            s.unsupported.join(", ")
        );
    }
    for (path, error) in &s.failed {
        println!("FAILED {path}: {error}");
    }
}
