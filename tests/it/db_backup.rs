//! Backups taken while writers run (inserts, upserts, deletes, blob
//! garbage collection, collections created and dropped), restored into a
//! new directory and compared with the database at the backup's sequence
//! number, reconstructed from the writes the test saw acknowledged and the
//! change log (which gives each write its sequence number). Also: damaged
//! backups are refused, destinations and targets must be empty.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tkr_embed::db::backup::{self, BackupError, Manifest};
use tkr_embed::db::{
    Change, CollectionOptions, Content, ContentData, Db, DbError, DbOptions, NewDocument,
};
use tkr_embed::index::GroupBy;
use tkr_embed::types::{l2_normalize, Modality, Seq, Span, VectorEncoding};

use crate::db_common::MODEL;

pub const DIM: usize = 16;

/// A write the test saw acknowledged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Put(u32),
    Delete,
}

/// Acknowledged writes in acknowledgement order: (collection, id, op).
/// Every document is written by one thread only, so the order of its own
/// writes here is their commit order.
#[derive(Default)]
pub struct WriteLog(Mutex<Vec<(String, String, Op)>>);

impl WriteLog {
    pub fn push(&self, collection: &str, id: &str, op: Op) {
        self.0
            .lock()
            .unwrap()
            .push((collection.to_owned(), id.to_owned(), op));
    }

    pub fn entries(&self) -> Vec<(String, String, Op)> {
        self.0.lock().unwrap().clone()
    }
}

/// A collection a thread created, wrote one document into and dropped,
/// between two marker documents.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub name: String,
    pub before: String,
    pub doc: String,
    pub after: String,
}

/// Documents whose id starts with `r-` carry content bytes (shared between
/// documents: blob reference counts) and, at odd versions, segments.
pub fn is_rich(id: &str) -> bool {
    id.starts_with("r-")
}

fn seed_of(id: &str, version: u32) -> u64 {
    let hash = blake3::hash(format!("{id}\0{version}").as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap())
}

fn raw_vector(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The vectors the database stores for a raw one (it normalises).
fn stored(mut v: Vec<f32>) -> Vec<f32> {
    l2_normalize(&mut v).unwrap();
    v
}

/// A word only this document's text has (the id's bytes in hex: the
/// lexical index's tokenizer keeps letters and digits together).
pub fn token(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("tok{hex}")
}

pub fn text_of(id: &str, version: u32) -> String {
    format!("{} version {version} of a document", token(id))
}

pub fn metadata_of(id: &str, version: u32) -> serde_json::Value {
    json!({"id": id, "version": version, "title": format!("title {version}"), "tags": ["x", version % 3]})
}

/// Content bytes: few distinct ones, so documents share blobs.
pub fn blob_of(id: &str, version: u32, size: usize) -> Vec<u8> {
    let group = (seed_of(id, 0) % 3) as u8;
    let variant = (version % 2) as u8;
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ group.wrapping_mul(7) ^ variant)
        .collect()
}

pub fn raw_vectors(id: &str, version: u32, dim: usize) -> Vec<Vec<f32>> {
    let seed = seed_of(id, version);
    let segments = if is_rich(id) && version % 2 == 1 {
        2
    } else {
        0
    };
    (0..=segments as u64)
        .map(|i| raw_vector(dim, seed.wrapping_add(i)))
        .collect()
}

/// The document `id` at `version`: everything in it derives from the pair.
pub fn versioned(id: &str, version: u32, dim: usize, blob_size: usize) -> NewDocument {
    let vectors = raw_vectors(id, version, dim);
    let modality = if is_rich(id) {
        Modality::Image
    } else {
        Modality::Text
    };
    let mut doc = NewDocument::new(modality, vectors[0].clone())
        .with_id(id)
        .with_text(text_of(id, version))
        .with_metadata(metadata_of(id, version));
    if is_rich(id) {
        doc = doc.with_content(Content::Bytes {
            data: blob_of(id, version, blob_size),
            content_type: "image/png".into(),
        });
        for (i, v) in vectors[1..].iter().enumerate() {
            let start_s = i as f64 * 2.5;
            doc = doc.with_segment(
                Span::Time {
                    start_s,
                    end_s: start_s + 2.5,
                },
                v.clone(),
            );
        }
    }
    doc
}

/// What the restored database must hold.
#[derive(Debug, Default)]
pub struct Expectation {
    /// Collections that must exist: id → (version, seq) of each document.
    pub present: BTreeMap<String, BTreeMap<String, (u32, Seq)>>,
    /// Collections that must not exist.
    pub absent: BTreeSet<String>,
    /// Either absent, or present with exactly these documents (a collection
    /// created or dropped while the backup started: creates and drops have
    /// no sequence number of their own).
    pub either: BTreeMap<String, BTreeMap<String, (u32, Seq)>>,
    /// Collections the caller checks itself.
    pub unchecked: BTreeSet<String>,
}

/// Gives every logged write its sequence number: the k-th write of a
/// document is the k-th change log entry of that id (ids are unique across
/// collections in these tests). Checks the two agree.
pub fn sequence_writes(
    log: &[(String, String, Op)],
    changes: &[Change],
) -> HashMap<String, (String, Vec<(Op, Seq)>)> {
    let mut by_id: HashMap<String, Vec<&Change>> = HashMap::new();
    for c in changes {
        by_id.entry(c.id.clone()).or_default().push(c);
    }
    let mut out: HashMap<String, (String, Vec<(Op, Seq)>)> = HashMap::new();
    for (collection, id, op) in log {
        let entry = out
            .entry(id.clone())
            .or_insert_with(|| (collection.clone(), Vec::new()));
        assert_eq!(&entry.0, collection, "{id} written into two collections");
        let k = entry.1.len();
        let change = by_id
            .get(id)
            .and_then(|c| c.get(k))
            .unwrap_or_else(|| panic!("write {k} of {id} ({op:?}) is not in the change log"));
        assert_eq!(
            change.deleted,
            *op == Op::Delete,
            "write {k} of {id}: the change log says deleted={}",
            change.deleted
        );
        entry.1.push((*op, change.seq));
    }
    for (id, c) in &by_id {
        let logged = out.get(id).map_or(0, |e| e.1.len());
        assert_eq!(
            logged,
            c.len(),
            "{id}: change log entries the test did not log"
        );
    }
    out
}

/// The document's state at `s`: its last write at or before `s`.
pub fn state_at(writes: &[(Op, Seq)], s: Seq) -> Option<(u32, Seq)> {
    match writes.iter().rev().find(|(_, seq)| *seq <= s) {
        Some((Op::Put(v), seq)) => Some((*v, *seq)),
        _ => None,
    }
}

/// The expectation at `s` for the collections in `present` (must exist),
/// `absent`, and the lifecycles (decided by the sequence numbers of their
/// markers and document where the order is known, `either` where not).
pub fn expect_at(
    log: &[(String, String, Op)],
    changes: &[Change],
    s: Seq,
    present: &[&str],
    absent: &[&str],
    lifecycles: &[Lifecycle],
) -> Expectation {
    let writes = sequence_writes(log, changes);
    let docs_of = |collection: &str| -> BTreeMap<String, (u32, Seq)> {
        writes
            .iter()
            .filter(|(_, (c, _))| c == collection)
            .filter_map(|(id, (_, w))| state_at(w, s).map(|st| (id.clone(), st)))
            .collect()
    };
    let mut exp = Expectation::default();
    for c in present {
        exp.present.insert(c.to_string(), docs_of(c));
    }
    exp.absent = absent.iter().map(|c| c.to_string()).collect();
    let first_seq = |id: &str| writes[id].1[0].1;
    for l in lifecycles {
        // Created after `before` was acknowledged, dropped before `after`
        // was written; in between, its document's own seq says whether it
        // is in the snapshot (`docs_of`), but not whether the collection is.
        let (before, after) = (first_seq(&l.before), first_seq(&l.after));
        if after <= s || s < before {
            exp.absent.insert(l.name.clone());
        } else {
            exp.either.insert(l.name.clone(), docs_of(&l.name));
        }
    }
    exp
}

/// Every document of a collection, by id.
fn all_documents(db: &Db, collection: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = db
            .list_documents(collection, after.as_deref(), 500)
            .unwrap();
        ids.extend(page.into_iter().map(|d| d.id));
        match next {
            Some(n) => after = Some(n),
            None => return ids,
        }
    }
}

/// The restored database holds exactly the expectation, and its indexes
/// agree with its store.
pub fn assert_matches(db: &Db, exp: &Expectation, blob_size: usize) {
    let names: BTreeSet<String> = db
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    for name in &names {
        assert!(
            exp.present.contains_key(name)
                || exp.either.contains_key(name)
                || exp.unchecked.contains(name),
            "restored collection {name:?} should not exist"
        );
    }
    for name in &exp.absent {
        assert!(
            !names.contains(name),
            "collection {name:?} should be absent"
        );
    }
    let mut checked = 0;
    for (name, docs) in exp.present.iter().chain(&exp.either) {
        if !names.contains(name) {
            assert!(
                !exp.present.contains_key(name),
                "collection {name:?} missing"
            );
            continue;
        }
        assert_collection(db, name, docs, blob_size);
        checked += docs.len();
    }
    assert!(checked > 0);
}

fn assert_collection(db: &Db, name: &str, docs: &BTreeMap<String, (u32, Seq)>, blob_size: usize) {
    let ids = all_documents(db, name);
    let expected_ids: Vec<String> = docs.keys().cloned().collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, expected_ids, "documents of {name:?}");
    let info = db
        .list_collections()
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap();
    assert_eq!(info.documents as usize, docs.len(), "count of {name:?}");
    for (id, &(version, seq)) in docs {
        let doc = db.get(name, id).unwrap().unwrap();
        assert_eq!(doc.seq, seq, "{name}/{id}: sequence number");
        assert_eq!(
            serde_json::Value::Object(doc.metadata.clone()),
            metadata_of(id, version),
            "{name}/{id}"
        );
        assert_eq!(doc.text.as_deref(), Some(text_of(id, version).as_str()));
        let expected_vectors: Vec<Vec<f32>> = raw_vectors(id, version, db.dim())
            .into_iter()
            .map(stored)
            .collect();
        let vectors = db.get_vectors(name, id).unwrap().unwrap();
        let bits = |vs: &[Vec<f32>]| -> Vec<Vec<u32>> {
            vs.iter()
                .map(|v| v.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        assert_eq!(
            bits(&vectors),
            bits(&expected_vectors),
            "{name}/{id}: vectors"
        );
        assert_eq!(doc.segments.len(), expected_vectors.len() - 1);
        let content = db.get_content(name, id).unwrap();
        if is_rich(id) {
            assert_eq!(doc.modality, Modality::Image);
            match content {
                Some(ContentData::Bytes { data, content_type }) => {
                    assert_eq!(content_type, "image/png");
                    assert!(
                        data == blob_of(id, version, blob_size),
                        "{name}/{id}: content"
                    );
                }
                other => panic!("{name}/{id}: content {other:?}"),
            }
        } else {
            assert_eq!(doc.modality, Modality::Text);
            assert!(content.is_none());
        }
        // The index holds it: its own vector finds it, and so does its word.
        let hits = db.search(name, &expected_vectors[0], 1, None).unwrap();
        assert_eq!(hits[0].id, *id, "{name}/{id}: not found by its vector");
        assert!(hits[0].score > 0.999);
        let hits = db
            .search_lexical(name, &token(id), 5, None, GroupBy::Document)
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            [id.as_str()],
            "{name}/{id}: lexical"
        );
    }
    // Nothing else is in the index: a search for everything returns exactly
    // the stored documents.
    if !docs.is_empty() {
        let hits = db
            .search(name, &vec![1.0; db.dim()], docs.len() + 10, None)
            .unwrap();
        let mut found: Vec<String> = hits.into_iter().map(|h| h.id).collect();
        found.sort();
        assert_eq!(
            found, expected_ids,
            "{name}: the index disagrees with the store"
        );
    }
    let stats = db.stats().unwrap();
    let c = stats.collections.iter().find(|c| c.name == name).unwrap();
    assert_eq!(c.index.documents, docs.len());
}

fn options() -> DbOptions {
    let mut options = DbOptions::new(MODEL, DIM, "f32");
    // The change log must reach back to the first write (it gives the
    // test every write's sequence number): no automatic checkpoints.
    options.checkpoint_every_changes = None;
    options
}

const BLOB: usize = 3000;

fn put(db: &Db, log: &WriteLog, collection: &str, id: &str, version: u32) {
    db.insert(collection, versioned(id, version, DIM, BLOB))
        .unwrap();
    log.push(collection, id, Op::Put(version));
}

fn delete(db: &Db, log: &WriteLog, collection: &str, id: &str) {
    assert!(db.delete(collection, id).unwrap(), "{id}");
    log.push(collection, id, Op::Delete);
}

/// One writer: its own documents in one collection, random inserts
/// (single and batched), upserts and deletes.
fn writer(db: &Db, log: &WriteLog, t: usize, collection: &str, ops: usize, done: &AtomicUsize) {
    let mut rng = StdRng::seed_from_u64(t as u64);
    let mut live: Vec<(String, u32)> = Vec::new();
    let mut next = 0;
    let mut new_id = |rng: &mut StdRng| {
        next += 1;
        if rng.random_range(0..3) == 0 {
            format!("r-w{t}-{next}")
        } else {
            format!("w{t}-{next}")
        }
    };
    for _ in 0..ops {
        match rng.random_range(0..10) {
            0..=3 => {
                let id = new_id(&mut rng);
                put(db, log, collection, &id, 0);
                live.push((id, 0));
            }
            4 => {
                let ids: Vec<String> = (0..3).map(|_| new_id(&mut rng)).collect();
                let docs = ids.iter().map(|id| versioned(id, 0, DIM, BLOB)).collect();
                db.insert_many(collection, docs).unwrap();
                for id in ids {
                    log.push(collection, &id, Op::Put(0));
                    live.push((id, 0));
                }
            }
            5..=7 if !live.is_empty() => {
                let i = rng.random_range(0..live.len());
                live[i].1 += 1;
                let (id, v) = live[i].clone();
                put(db, log, collection, &id, v);
            }
            _ if !live.is_empty() => {
                let i = rng.random_range(0..live.len());
                let (id, _) = live.swap_remove(i);
                delete(db, log, collection, &id);
            }
            _ => {}
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Creates, fills and drops collections between marker documents.
fn lifecycles(db: &Db, log: &WriteLog, stop: &AtomicBool) -> Vec<Lifecycle> {
    let mut out = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let l = Lifecycle {
            name: format!("tmp{i}"),
            before: format!("lc{i}-a"),
            doc: format!("r-lc{i}"),
            after: format!("lc{i}-b"),
        };
        put(db, log, "main", &l.before, 0);
        db.create_collection(&l.name).unwrap();
        put(db, log, &l.name, &l.doc, 0);
        assert!(db.drop_collection(&l.name).unwrap());
        put(db, log, "main", &l.after, 0);
        out.push(l);
    }
    out
}

#[test]
fn backup_during_writes_restores_the_database_at_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let db = Db::open(&src, options()).unwrap();
    let log = WriteLog::default();
    db.create_collection_with(
        "main",
        CollectionOptions {
            text_fields: vec!["title".into()],
            ..Default::default()
        },
    )
    .unwrap();
    db.create_collection_with(
        "q8",
        CollectionOptions {
            vectors: VectorEncoding::Int8,
            ..Default::default()
        },
    )
    .unwrap();
    db.create_collection("doomed").unwrap();
    for i in 0..120 {
        put(&db, &log, "main", &format!("m-p{i}"), 0);
    }
    for i in 0..40 {
        put(&db, &log, "main", &format!("r-m{i}"), 0);
    }
    for i in 0..60 {
        put(&db, &log, "q8", &format!("q-{i}"), 0);
    }
    for i in 0..30 {
        put(&db, &log, "doomed", &format!("r-d{i}"), 0);
    }

    // Deterministic writes from inside the backup, at chosen points of its
    // reading: to records already read and not yet read, blob garbage
    // collection, a collection dropped and one created.
    let hook_log = WriteLog::default();
    let events = Mutex::new(BTreeSet::new());
    let busy_dest = dir.path().join("busy");
    let hook = |p: &backup::BackupProgress| {
        let mut seen = events.lock().unwrap();
        let log = &hook_log;
        match (p.file, p.records) {
            ("docs.rec", 20) if seen.insert("docs") => {
                put(&db, log, "main", "m-p0", 1);
                put(&db, log, "main", "m-p99", 1);
                delete(&db, log, "main", "m-p1");
                delete(&db, log, "main", "m-p98");
                for i in 0..6 {
                    delete(&db, log, "main", &format!("r-m{i}"));
                }
                assert!(db.drop_collection("doomed").unwrap());
                db.create_collection("fresh").unwrap();
                put(&db, log, "fresh", "fresh-1", 0);
                put(&db, log, "main", "h-new", 0);
            }
            ("blobs.rec", 2) if seen.insert("blobs") => {
                for i in 10..20 {
                    delete(&db, log, "main", &format!("r-m{i}"));
                }
                put(&db, log, "main", "r-m30", 1);
            }
            ("pre_images.rec", 1) if seen.insert("pre") => {
                put(&db, log, "main", "m-p5", 1);
                match db.backup(&busy_dest) {
                    Err(DbError::Backup(BackupError::Busy)) => {}
                    other => panic!("a second backup: {other:?}"),
                }
                assert!(!busy_dest.exists());
            }
            _ => {}
        }
    };

    let dest = dir.path().join("backup");
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let (report, lifecycles) = std::thread::scope(|scope| {
        let writers: Vec<_> = [(0, "main"), (1, "q8"), (2, "main")]
            .into_iter()
            .map(|(t, c)| {
                let (db, log, done) = (&db, &log, &done);
                scope.spawn(move || writer(db, log, t, c, 120, done))
            })
            .collect();
        let cycles = {
            let (db, log, stop) = (&db, &log, &stop);
            scope.spawn(move || lifecycles(db, log, stop))
        };
        while done.load(Ordering::Relaxed) < 60 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let report = db.backup_with_progress(&dest, &hook).unwrap();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        (report, cycles.join().unwrap())
    });
    assert_eq!(events.lock().unwrap().len(), 3, "every hook ran");
    let s = report.manifest.seq;
    let last = db.stats().unwrap().last_seq;
    assert!(s > 0 && s < last, "S = {s}, last = {last}");
    assert!(report.pre_images >= 20, "pre-images: {}", report.pre_images);

    let mut all = log.entries();
    all.extend(hook_log.entries());
    let changes = db.changes_after(0, usize::MAX).unwrap();
    // Every hook write came after S.
    let hook_seqs = sequence_writes(&all, &changes);
    for (_, id, _) in hook_log.entries() {
        assert!(hook_seqs[&id].1.iter().any(|(_, seq)| *seq > s), "{id}");
    }
    let exp = expect_at(
        &all,
        &changes,
        s,
        &["main", "q8", "doomed"],
        &["fresh"],
        &lifecycles,
    );
    // The source now differs from the expectation (the check can fail).
    assert!(db.get("main", "m-p1").unwrap().is_none());
    assert!(exp.present["main"].contains_key("m-p1"));
    assert_eq!(exp.present["doomed"].len(), 30);

    let restored_dir = dir.path().join("restored");
    let restored = backup::restore(&dest, &restored_dir).unwrap();
    assert_eq!(restored.manifest, report.manifest);
    assert_eq!(restored.documents, report.manifest.documents);
    let rdb = Db::open(&restored_dir, options()).unwrap();
    assert_eq!(rdb.stats().unwrap().last_seq, s);
    assert_matches(&rdb, &exp, BLOB);
    // Its indexes were rebuilt and checkpointed by the restore.
    for c in rdb.stats().unwrap().collections {
        assert!(c.index.loaded_from_checkpoint, "{}", c.name);
    }
    // The restored database takes writes, numbered after S.
    rdb.insert("main", versioned("after", 0, DIM, BLOB))
        .unwrap();
    assert_eq!(rdb.get("main", "after").unwrap().unwrap().seq, s + 1);
    drop(rdb);
    // The same model check as any open.
    match Db::open(&restored_dir, DbOptions::new("other-model", DIM, "f32")) {
        Err(DbError::Store(e)) => assert!(e.to_string().contains("other-model"), "{e}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

fn small_backup(dir: &Path) -> (std::path::PathBuf, Manifest) {
    let db = Db::open(dir.join("src"), options()).unwrap();
    db.create_collection("c").unwrap();
    for i in 0..20 {
        db.insert("c", versioned(&format!("r-{i}"), 0, DIM, BLOB))
            .unwrap();
    }
    let dest = dir.join("backup");
    let report = db.backup(&dest).unwrap();
    (dest, report.manifest)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Restores `backup` into a fresh target and returns the error's message;
/// the target must not exist afterwards.
fn refused(backup: &Path, work: &Path) -> String {
    let target = work.join("target");
    let e = backup::restore(backup, &target).unwrap_err();
    assert!(!target.exists(), "the target was left behind: {e}");
    let message = e.to_string();
    assert!(!message.contains('\n'), "{message}");
    message
}

fn rewrite_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn damaged_backups_and_used_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, manifest) = small_backup(dir.path());
    assert_eq!(manifest.documents, 20);
    assert_eq!(backup::verify(&good).unwrap(), manifest);
    let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "meta.rec",
            "collections.rec",
            "docs.rec",
            "vectors.rec",
            "blobs.rec",
            "blob_refs.rec",
            "pre_images.rec"
        ]
    );
    let case = |name: &str, damage: &dyn Fn(&Path)| -> String {
        let copy = dir.path().join(name);
        copy_dir(&good, &copy);
        damage(&copy);
        refused(&copy, &dir.path().join(format!("{name}-work")))
    };

    // One flipped byte in the middle of a file.
    let m = case("flipped", &|d| {
        let path = d.join("docs.rec");
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(m.contains("docs.rec") && m.contains("checksum"), "{m}");
    // A cut file.
    let m = case("truncated", &|d| {
        let path = d.join("blobs.rec");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 100)
            .unwrap();
    });
    assert!(m.contains("blobs.rec") && m.contains("bytes"), "{m}");
    // A missing file.
    let m = case("missing", &|d| {
        std::fs::remove_file(d.join("vectors.rec")).unwrap()
    });
    assert!(m.contains("vectors.rec") && m.contains("missing"), "{m}");
    // The manifest altered (a record count), cut, or gone.
    let m = case("altered", &|d| {
        rewrite_manifest(d, |v| v["files"][2]["records"] = json!(19))
    });
    assert!(m.contains("manifest.json"), "{m}");
    let m = case("cut-manifest", &|d| {
        let path = d.join("manifest.json");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(m.contains("manifest.json"), "{m}");
    let m = case("no-manifest", &|d| {
        std::fs::remove_file(d.join("manifest.json")).unwrap()
    });
    assert!(m.contains("not a backup"), "{m}");
    // Another store format, with a correct checksum: refused by version.
    let m = case("format", &|d| {
        let path = d.join("manifest.json");
        let mut other: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        other.store_format = 99;
        other.checksum.clear();
        let bytes = serde_json::to_vec(&other).unwrap();
        other.checksum = blake3::hash(&bytes).to_hex().to_string();
        std::fs::write(&path, serde_json::to_vec_pretty(&other).unwrap()).unwrap();
    });
    assert!(m.contains("format 99"), "{m}");

    // A target that is not empty is refused and left alone; an empty one
    // is used and kept when the restore fails.
    let busy = dir.path().join("busy-target");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "x").unwrap();
    let e = backup::restore(&good, &busy).unwrap_err();
    assert!(
        matches!(e, DbError::Backup(BackupError::NotEmpty(_))),
        "{e}"
    );
    assert_eq!(std::fs::read(busy.join("keep.txt")).unwrap(), b"x");
    let empty = dir.path().join("empty-target");
    std::fs::create_dir(&empty).unwrap();
    let flipped = dir.path().join("flipped");
    assert!(backup::restore(&flipped, &empty).is_err());
    assert!(empty.is_dir() && std::fs::read_dir(&empty).unwrap().next().is_none());
    backup::restore(&good, &empty).unwrap();
    let db = Db::open(&empty, options()).unwrap();
    assert_eq!(db.list_collections().unwrap()[0].documents, 20);
    drop(db);

    // Backup destinations: not empty, or a file, are refused untouched.
    let db = Db::open(dir.path().join("src"), options()).unwrap();
    let e = db.backup(&good).unwrap_err();
    assert!(
        matches!(e, DbError::Backup(BackupError::NotEmpty(_))),
        "{e}"
    );
    assert_eq!(backup::verify(&good).unwrap(), manifest);
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert!(db.backup(&file).is_err());
    assert!(db.backup(&dir.path().join("no/such/parent")).is_err());
    // The database is not left in backup mode by a failed start.
    db.backup(&dir.path().join("again")).unwrap();
}

#[test]
fn an_offline_data_dir_is_backed_up_and_an_open_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let db = Db::open(&src, options()).unwrap();
    db.create_collection("c").unwrap();
    for i in 0..10 {
        db.insert("c", versioned(&format!("d{i}"), 0, DIM, BLOB))
            .unwrap();
    }
    db.delete("c", "d3").unwrap();
    // In use: the store's lock is held.
    let e = backup::backup_data_dir(&src, &dir.path().join("b0"), &|_| {}).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    assert!(!dir.path().join("b0").exists());
    db.close().unwrap();
    let report = backup::backup_data_dir(&src, &dir.path().join("b1"), &|_| {}).unwrap();
    assert_eq!(report.manifest.documents, 9);
    assert_eq!(report.pre_images, 0);
    backup::restore(&dir.path().join("b1"), &dir.path().join("r")).unwrap();
    let db = Db::open(dir.path().join("r"), options()).unwrap();
    assert_eq!(all_documents(&db, "c").len(), 9);
    assert!(db.get("c", "d3").unwrap().is_none());
    let e = backup::backup_data_dir(&dir.path().join("none"), &dir.path().join("b2"), &|_| {})
        .unwrap_err();
    assert!(e.to_string().contains("no database"), "{e}");
}
