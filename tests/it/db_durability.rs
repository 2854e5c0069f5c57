//! Durability: group commit shares fsyncs; acknowledged writes survive
//! SIGKILL (the child writer is this test binary, re-executed).
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tkr_embed::db::{Content, ContentData, Db, DbError, NewDocument};
use tkr_embed::index::{GroupBy, IndexParams};
use tkr_embed::types::Modality;

use crate::db_common::{open, open_with, random_unit};

#[test]
fn concurrent_writers_share_flushes() {
    const WRITERS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), 16));
    db.create_collection("c").unwrap();
    let before = db.flush_count();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let threads: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let doc = NewDocument::new(Modality::Text, random_unit(16, i as u64))
                    .with_id(format!("w{i}"));
                db.insert("c", doc).unwrap();
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let flushes = db.flush_count() - before;
    eprintln!("{WRITERS} concurrent writers → {flushes} flushes");
    assert!(flushes >= 1);
    assert!(flushes <= (WRITERS / 4) as u64, "{flushes} flushes");
    assert_eq!(db.list_collections().unwrap()[0].documents, WRITERS as u64);
    for i in 0..WRITERS {
        let hits = db.search("c", &random_unit(16, i as u64), 1, None).unwrap();
        assert_eq!(hits[0].id, format!("w{i}"));
    }
}

// ---- kill test ----

const CHILD_DIR_ENV: &str = "TKR_KILL_CHILD_DIR";
const CHILD_CYCLE_ENV: &str = "TKR_KILL_CHILD_CYCLE";
const KDIM: usize = 32;
const CYCLES: u64 = 20;
const PREFIX: &str = "KILLTEST ";

fn kill_params() -> IndexParams {
    IndexParams {
        ef_search: 100,
        ..IndexParams::default()
    }
}

fn seed_of(id: &str, version: u64) -> u64 {
    // FNV-1a: a stable seed per (id, version).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(version.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn kill_vector(id: &str, version: u64) -> Vec<f32> {
    random_unit(KDIM, seed_of(id, version))
}

/// Every third document stores bytes; every fifth of those shares them.
fn kill_content(id: &str) -> Option<Vec<u8>> {
    let n = seed_of(id, 0);
    match n % 15 {
        0 => Some(b"shared bytes".to_vec()),
        x if x % 3 == 0 => Some(format!("content of {id}").into_bytes()),
        _ => None,
    }
}

fn kill_doc(id: &str, version: u64) -> NewDocument {
    let mut doc = NewDocument::new(Modality::Document, kill_vector(id, version))
        .with_id(id)
        .with_text(format!("{id} v{version}"))
        .with_metadata(json!({ "v": version }));
    if let Some(bytes) = kill_content(id) {
        doc = doc.with_content(Content::Bytes {
            data: bytes,
            content_type: "text/plain".into(),
        });
    }
    doc
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{PREFIX}{line}").unwrap();
    out.flush().unwrap();
}

/// The child: only does something when re-executed by the kill test.
#[test]
fn kill_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let cycle: u64 = std::env::var(CHILD_CYCLE_ENV).unwrap().parse().unwrap();
    let db = open_with(std::path::Path::new(&dir), KDIM, kill_params());
    match db.create_collection("k") {
        Ok(_) | Err(DbError::CollectionExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    say("READY");
    let mut rng = StdRng::seed_from_u64(1000 + cycle);
    // The parent kills us within a second; never outlive a parent that died.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut mine: Vec<(String, u64)> = Vec::new();
    let mut next = 0u64;
    let mut new_id = || {
        next += 1;
        format!("k{cycle}-{next}")
    };
    while Instant::now() < deadline {
        let roll = rng.random_range(0..100);
        if roll < 8 && !mine.is_empty() {
            let (id, _) = mine.swap_remove(rng.random_range(0..mine.len()));
            say(&format!("d {id}"));
            assert!(db.delete("k", &id).unwrap());
            say(&format!("D {id}"));
        } else if roll < 16 && !mine.is_empty() {
            let i = rng.random_range(0..mine.len());
            let (id, v) = (mine[i].0.clone(), mine[i].1 + 1);
            say(&format!("u {id} {v}"));
            db.insert("k", kill_doc(&id, v)).unwrap();
            mine[i].1 = v;
            say(&format!("U {id} {v}"));
        } else if roll < 24 {
            let ids: Vec<String> = (0..5).map(|_| new_id()).collect();
            db.insert_many("k", ids.iter().map(|id| kill_doc(id, 0)).collect())
                .unwrap();
            for id in ids {
                say(&format!("A {id}"));
                mine.push((id, 0));
            }
        } else if roll < 26 {
            db.checkpoint().unwrap();
        } else {
            let id = new_id();
            db.insert("k", kill_doc(&id, 0)).unwrap();
            say(&format!("A {id}"));
            mine.push((id, 0));
        }
    }
}

/// What the parent knows from the acknowledgements it read.
#[derive(Default)]
struct Acked {
    /// id → versions it may have (one, or two while a replace was cut off).
    live: HashMap<String, Vec<u64>>,
    deleted: HashSet<String>,
    /// Deletes that started but were not acknowledged: either state is fine.
    uncertain: HashSet<String>,
}

impl Acked {
    /// Reads one line of the child's output (the test harness may print
    /// its own text in front of ours on the same line).
    fn read(&mut self, line: &str) {
        let Some((_, rest)) = line.split_once(PREFIX) else {
            return;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        match parts.as_slice() {
            ["A", id] => {
                self.live.insert(id.to_string(), vec![0]);
            }
            ["d", id] => {
                self.uncertain.insert(id.to_string());
            }
            ["D", id] => {
                self.uncertain.remove(*id);
                self.live.remove(*id);
                self.deleted.insert(id.to_string());
            }
            ["u", id, v] => self.live.get_mut(*id).unwrap().push(v.parse().unwrap()),
            ["U", id, v] => {
                self.live.insert(id.to_string(), vec![v.parse().unwrap()]);
            }
            _ => {}
        }
    }

    fn verify(&self, db: &Db, cycle: u64) {
        for (id, versions) in &self.live {
            if self.uncertain.contains(id) {
                continue;
            }
            let doc = db
                .get("k", id)
                .unwrap()
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged {id} is missing"));
            let v = doc.metadata["v"].as_u64().unwrap();
            assert!(
                versions.contains(&v),
                "cycle {cycle}: {id} has version {v}, acked {versions:?}"
            );
            match (kill_content(id), db.get_content("k", id).unwrap()) {
                (None, None) => {}
                (Some(bytes), Some(ContentData::Bytes { data, .. })) => assert_eq!(bytes, data),
                (want, got) => panic!("cycle {cycle}: content of {id}: {want:?} vs {got:?}"),
            }
            let hits = db.search("k", &kill_vector(id, v), 1, None).unwrap();
            assert_eq!(
                hits[0].id, *id,
                "cycle {cycle}: {id} not found by its own vector"
            );
            // The lexical index (tantivy, caught up from the change log)
            // finds it by the id in its text, at its current version.
            let hits = db
                .search_lexical("k", id, 1, None, GroupBy::Document)
                .unwrap();
            assert_eq!(
                hits.first().map(|h| h.id.as_str()),
                Some(id.as_str()),
                "cycle {cycle}: {id} lexically"
            );
            let hits = db
                .search_lexical("k", &format!("{id} v{v}"), 1, None, GroupBy::Document)
                .unwrap();
            assert_eq!(hits[0].metadata["v"], v, "cycle {cycle}: {id}");
        }
        for id in &self.deleted {
            assert!(
                db.get("k", id).unwrap().is_none(),
                "cycle {cycle}: deleted {id} is back"
            );
            let hits = db
                .search_lexical("k", id, 5, None, GroupBy::Document)
                .unwrap();
            assert!(
                hits.iter().all(|h| h.id != *id),
                "cycle {cycle}: deleted {id} is back in the lexical index"
            );
        }
        let stats = db.stats().unwrap();
        let c = &stats.collections[0];
        assert_eq!(
            c.documents as usize, c.index.documents,
            "cycle {cycle}: {stats:?}"
        );
    }
}

/// Kills the child writer if the parent test panics before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(4242);
    let mut acked = Acked::default();
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let child = Command::new(&exe)
            .args([
                "--exact",
                "db_durability::kill_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_CYCLE_ENV, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("cycle {cycle}: child never got ready: {e}"));
            acked.read(&line);
            if line.ends_with(&format!("{PREFIX}READY")) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(10..200)));
        child.0.kill().unwrap(); // SIGKILL
        let status = child.0.wait().unwrap();
        assert!(
            !status.success(),
            "cycle {cycle}: child ended by itself: {status}"
        );
        reader.join().unwrap();
        for line in rx.try_iter() {
            acked.read(&line);
        }
        let db = open_with(dir.path(), KDIM, kill_params());
        acked.verify(&db, cycle);
    }
    eprintln!(
        "kill test: {CYCLES} cycles, {} live / {} deleted acknowledged documents, {:?}",
        acked.live.len(),
        acked.deleted.len(),
        started.elapsed()
    );
    assert!(
        acked.live.len() > CYCLES as usize,
        "too few writes to mean anything"
    );
}
