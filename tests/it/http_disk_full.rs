//! A full disk under the real `tkr-embed serve` (issue 16):
//! the data dir lives on a small tmpfs this test mounts (root only; where
//! mounting is not permitted the tests say so and return), writes past the
//! end get 507 while reads keep working, writes resume once there is room,
//! SIGTERM always stops the server, and after a restart every acknowledged
//! document is there.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::server_process::{log_tail, start_server_with, Server};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    parent: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a message) where this process may not mount.
    fn mount(megabytes: u64) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir, parent }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Keep 8 MiB free: small enough for a 48 MB disk to hold a useful database.
const RESERVE: &str = "8388608";

fn start(data: &Path, log: &Path, reserve: &str) -> Server {
    start_server_with(data, log, &[("TKR_STORAGE_MIN_FREE_BYTES", reserve)])
}

struct Api {
    client: reqwest::Client,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            url: server.url.clone(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn send(&self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        self.runtime.block_on(async {
            let r = rb.send().await.expect("the server answers (no hang)");
            let status = r.status();
            (status, r.json().await.unwrap_or(Value::Null))
        })
    }

    fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(format!("{}{path}", self.url)))
    }

    fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(format!("{}{path}", self.url)).json(&body))
    }

    fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.delete(format!("{}{path}", self.url)))
    }

    fn insert(&self, id: &str, pad: usize) -> (StatusCode, Value) {
        self.post(
            "/collections/c/documents",
            json!({"id": id, "vector": vector(id), "metadata": {"pad": "x".repeat(pad)}}),
        )
    }
}

fn vector(id: &str) -> Vec<f32> {
    let seed = id
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    (0..64)
        .map(|i: u32| {
            ((seed.wrapping_add(i.wrapping_mul(2_654_435_761)) >> 7) % 1000) as f32 / 1000.0 + 0.001
        })
        .collect()
}

/// Inserts 200 KB documents until one is refused; the acknowledged ids and
/// the refusal.
fn fill(api: &Api) -> (Vec<String>, StatusCode, Value) {
    let mut acked = Vec::new();
    for i in 0..1000 {
        let id = format!("d{i}");
        let (status, body) = api.insert(&id, 200_000);
        if status != StatusCode::CREATED {
            return (acked, status, body);
        }
        acked.push(id);
    }
    panic!("a 48 MB disk took 1000 documents of 200 KB");
}

/// Reads work: every acknowledged document (a sample), a search, health.
fn reads_work(api: &Api, acked: &[String]) {
    for id in acked.iter().step_by(7) {
        let (status, doc) = api.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(status, StatusCode::OK, "{id}: {doc}");
        assert_eq!(doc["id"], id.as_str());
    }
    let first = &acked[0];
    let (status, r) = api.post(
        "/collections/c/search",
        json!({"vector": vector(first), "k": 3}),
    );
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["hits"][0]["id"], first.as_str(), "{r}");
    assert_eq!(api.get("/health").0, StatusCode::OK);
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let data = disk.dir.join("db");
    let log = disk.parent.path().join("server.log");
    let mut server = start(&data, &log, RESERVE);
    let api = Api::new(&server);
    assert_eq!(
        api.post("/collections", json!({"name": "c"})).0,
        StatusCode::CREATED
    );

    // Full: a clear 507, before sled ever sees the disk run out.
    let (acked, status, body) = fill(&api);
    assert!(acked.len() > 20, "only {} documents fit", acked.len());
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(message(&body).contains("storage.min_free_bytes"), "{body}");

    // Reads go on; other writes get the same answer at once; embedding
    // (no storage) works.
    reads_work(&api, &acked);
    assert_eq!(
        api.insert("small", 200_000).0,
        StatusCode::INSUFFICIENT_STORAGE
    );
    // Small writes (a delete, a collection) still fit while the reserve holds.
    let (status, body) = api.delete(&format!("/collections/c/documents/{}", acked[1]));
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.post("/collections", json!({"name": "d"}));
    assert!(
        status == StatusCode::CREATED || status == StatusCode::INSUFFICIENT_STORAGE,
        "{status} {body}"
    );
    let (status, body) = api.post("/embed/text", json!({"texts": ["still embedding"]}));
    assert_eq!(status, StatusCode::OK, "{body}");

    // Room again: writes resume without a restart.
    disk.remount("size=96m");
    let (status, body) = api.insert("after-room", 200_000);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let stopped = server.terminate(Duration::from_secs(20));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "SIGTERM: {stopped:?}\n{}",
        log_tail(&log)
    );

    // The CLI on a full disk: one line, non-zero exit, nothing stored.
    let _ballast = fill_with_ballast(&disk.dir);
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--model")
        .arg(crate::model_parity::fixture_dir().join("model"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "insert",
            "-c",
            "c",
            "--id",
            "cli",
            "--text",
            "from the command line",
        ])
        .env("TKR_STORAGE_MIN_FREE_BYTES", RESERVE)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    // sled itself needs room to open: either our refusal or its ENOSPC.
    assert!(
        last.starts_with("error:") && (last.contains("is full") || last.contains("No space left")),
        "{stderr}"
    );
    drop(_ballast);

    // After a restart, with room: every acknowledged document is there.
    disk.remount("size=96m");
    let server = start(&data, &log, RESERVE);
    let api = Api::new(&server);
    for id in acked.iter().filter(|id| *id != &acked[1]) {
        let (status, doc) = api.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(status, StatusCode::OK, "{id} lost: {doc}");
    }
    for (id, want) in [
        (acked[1].as_str(), StatusCode::NOT_FOUND),
        ("after-room", StatusCode::OK),
        ("small", StatusCode::NOT_FOUND),
        ("cli", StatusCode::NOT_FOUND),
    ] {
        let (status, _) = api.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(status, want, "{id}");
    }
    let (_, c) = api.get("/collections/c");
    assert_eq!(c["documents"], acked.len(), "{c}");
}

/// Fills the file system with a file until less than the reserve is left.
fn fill_with_ballast(dir: &Path) -> BallastFile {
    let path = dir.join("ballast");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", path.display()))
        .output();
    BallastFile(path)
}

struct BallastFile(PathBuf);

impl Drop for BallastFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// With no reserve, sled itself runs out of space: the write that hits it
/// gets 507, later writes 503 `storage_failed` at once (sled cannot write
/// again until restarted) instead of hanging, reads go on, SIGTERM stops
/// the server, and a restart with room recovers every acknowledged write.
#[test]
fn a_disk_filled_under_sled_fails_writes_fast_and_a_restart_recovers() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let data = disk.dir.join("db");
    let log = disk.parent.path().join("server.log");
    let mut server = start(&data, &log, "0");
    let api = Api::new(&server);
    api.post("/collections", json!({"name": "c"}));
    let (acked, status, body) = fill(&api);
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    // Reads of pages sled still caches work; others may fail with 500 until
    // the restart (sled cannot page in after its log failed): not checked.
    assert_eq!(api.get("/health").0, StatusCode::OK);
    for _ in 0..3 {
        let (status, body) = api.insert("later", 10);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "storage_failed", "{body}");
        assert!(message(&body).contains("restart"), "{body}");
    }
    let stopped = server.terminate(Duration::from_secs(20));
    assert!(
        stopped.is_some(),
        "SIGTERM did not stop the server\n{}",
        log_tail(&log)
    );

    disk.remount("size=96m");
    let server = start(&data, &log, "0");
    let api = Api::new(&server);
    for id in &acked {
        let (status, doc) = api.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(status, StatusCode::OK, "{id} lost: {doc}");
    }
    assert_eq!(api.insert("after-restart", 10).0, StatusCode::CREATED);
}

/// A read-only bind mount of a directory over itself (what a container's
/// `:ro` volume is); unmounted when dropped. Files the server already has
/// open stay writable underneath, as they do in life, but every check of
/// the path sees a read-only file system.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn mount(dir: &Path) -> ReadOnlyBind {
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(dir)
            .arg(dir)
            .status()
            .unwrap();
        assert!(bind.success(), "mount --bind {}", dir.display());
        let bound = ReadOnlyBind(dir.to_path_buf());
        let ro = Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ro.success(), "remount,ro,bind {}", dir.display());
        bound
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A data directory that turns read-only under a running server: writes
/// get 507 `read_only_storage` naming it, reads go on, writes resume when
/// it is writable again. A server started on a read-only data directory
/// (sled writes to open a database, so it cannot serve even reads) stops
/// at once with one line naming the directory and what to do.
#[test]
fn a_read_only_data_dir_refuses_writes_keeps_reads_and_a_start_on_it_fails_clearly() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let data = disk.dir.join("db");
    let log = disk.parent.path().join("server.log");
    let mut server = start(&data, &log, RESERVE);
    let api = Api::new(&server);
    assert_eq!(
        api.post("/collections", json!({"name": "c"})).0,
        StatusCode::CREATED
    );
    let acked: Vec<String> = (0..5).map(|i| format!("d{i}")).collect();
    for id in &acked {
        assert_eq!(api.insert(id, 100).0, StatusCode::CREATED, "{id}");
    }

    let read_only = ReadOnlyBind::mount(&data);
    for (what, (status, body)) in [
        ("insert", api.insert("later", 100)),
        ("delete", api.delete("/collections/c/documents/d1")),
        ("create", api.post("/collections", json!({"name": "d"}))),
    ] {
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{what}: {body}");
        assert_eq!(body["error"]["code"], "read_only_storage", "{what}: {body}");
        assert!(message(&body).contains("read-only"), "{what}: {body}");
        assert!(
            message(&body).contains(&data.display().to_string()),
            "{what}: {body}"
        );
    }
    reads_work(&api, &acked);

    // Writable again: writes resume without a restart.
    drop(read_only);
    assert_eq!(api.insert("after", 100).0, StatusCode::CREATED);
    let stopped = server.terminate(Duration::from_secs(20));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "SIGTERM: {stopped:?}\n{}",
        log_tail(&log)
    );

    // Starting on it while read-only: a clear refusal, not a half-start.
    let read_only = ReadOnlyBind::mount(&data);
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--model")
        .arg(crate::model_parity::fixture_dir().join("model"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--log-level", "warn", "serve", "--port", "0"])
        .current_dir(disk.parent.path())
        .env("TKR_STORAGE_MIN_FREE_BYTES", RESERVE)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{stderr}"
    );
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:")
            && last.contains("read-only file system")
            && last.contains(&data.display().to_string())
            && last.contains("remount it read-write"),
        "{stderr}"
    );
    drop(read_only);

    // And nothing was lost.
    let server = start(&data, &log, RESERVE);
    let api = Api::new(&server);
    for id in acked.iter().chain([&"after".to_owned()]) {
        let (status, doc) = api.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(status, StatusCode::OK, "{id} lost: {doc}");
    }
    let (_, c) = api.get("/collections/c");
    assert_eq!(c["documents"], acked.len() + 1, "{c}");
}
