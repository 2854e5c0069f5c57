//! Several servers on one PostgreSQL database: the real `tkr-embed serve`
//! binary twice (each with its own engine), `TKR_STORE` pointing both at a
//! fresh database of the test server (see `pg.rs`).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::pg::PgDatabase;
use crate::server_process::{start_server_with, Server};

/// The tiny fixture model's embedding dimension.
const DIM: usize = 64;

struct Cluster {
    _dir: tempfile::TempDir,
    db: PgDatabase,
    servers: Vec<Server>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn start(tag: &str, servers: usize) -> Cluster {
        let db = PgDatabase::new(tag);
        let dir = tempfile::tempdir().unwrap();
        let servers = (0..servers)
            .map(|i| {
                let data = dir.path().join(format!("unused-data-{i}"));
                let log = dir.path().join(format!("server-{i}.log"));
                start_server_with(&data, &log, &[("TKR_STORE", db.url.as_str())])
            })
            .collect();
        Cluster {
            _dir: dir,
            db,
            servers,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn url(&self, server: usize, path: &str) -> String {
        format!("{}{path}", self.servers[server].url)
    }

    fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.runtime.block_on(async {
            let mut request = self.http.request(method, &url);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let status = response.status();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    fn post(&self, server: usize, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, self.url(server, path), Some(body))
    }

    fn get(&self, server: usize, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, self.url(server, path), None)
    }
}

/// A vector in [-0.5, 0.5)^DIM, a pure function of `seed` (splitmix64).
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..DIM)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

#[test]
fn what_one_server_writes_the_other_reads_at_once() {
    let c = Cluster::start("read_your_writes", 2);
    let (status, body) = c.post(0, "/collections", json!({"name": "shared"}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = c.get(1, "/collections");
    assert_eq!(status, StatusCode::OK);
    assert!(body.to_string().contains("\"shared\""), "{body}");
    let (status, _) = c.post(1, "/collections", json!({"name": "shared"}));
    assert_eq!(status, StatusCode::CONFLICT);

    for i in 0..20u64 {
        let writer = (i % 2) as usize;
        let reader = 1 - writer;
        let id = format!("doc{i}");
        let (status, body) = c.post(
            writer,
            "/collections/shared/documents",
            json!({"id": id, "vector": vector(i), "metadata": {"i": i}}),
        );
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // At once, through the other server: the document and a search.
        let (status, body) = c.get(reader, &format!("/collections/shared/documents/{id}"));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["metadata"]["i"], i);
        let (status, body) = c.post(
            reader,
            "/collections/shared/search",
            json!({"vector": vector(i), "k": 1}),
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["hits"][0]["id"], id, "{body}");
    }
    // A delete through one is seen by the other.
    let (status, _) = c.call(
        reqwest::Method::DELETE,
        c.url(1, "/collections/shared/documents/doc4"),
        None,
    );
    assert!(status.is_success());
    assert_eq!(
        c.get(0, "/collections/shared/documents/doc4").0,
        StatusCode::NOT_FOUND
    );
    // Text goes through either server's engine; both find it by text.
    let (status, body) = c.post(
        0,
        "/collections/shared/documents",
        json!({"id": "words", "text": "a lighthouse on a rocky coast"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = c.post(
        1,
        "/collections/shared/search",
        json!({"text": "lighthouse", "mode": "lexical", "k": 3}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hits"][0]["id"], "words", "{body}");
}

#[test]
fn killing_one_server_during_concurrent_inserts_loses_no_acknowledged_document() {
    let mut c = Cluster::start("kill_during_inserts", 2);
    assert_eq!(
        c.post(0, "/collections", json!({"name": "k"})).0,
        StatusCode::CREATED
    );
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let base = c.servers[0].url.clone();
    let tasks: Vec<_> = (0..64u64)
        .map(|client| {
            let (http, base, acked, stop) =
                (c.http.clone(), base.clone(), acked.clone(), stop.clone());
            c.runtime.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seed = client * 1_000_000 + n;
                    let id = format!("c{client}-{n}");
                    n += 1;
                    let body =
                        json!({"id": id, "vector": vector(seed), "metadata": {"seed": seed}});
                    let sent = http
                        .post(format!("{base}/collections/k/documents"))
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push((id, seed)),
                        // Refused or cut off by the kill: not acknowledged.
                        _ => {}
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    c.servers[0].child.kill().unwrap(); // SIGKILL
    stop.store(true, Ordering::Relaxed);
    c.servers[0].child.wait().unwrap();
    c.runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 64,
        "only {} inserts acknowledged",
        acked.len()
    );
    // Every acknowledged document, through the surviving server.
    let mut missing = Vec::new();
    for (id, seed) in &acked {
        let (status, body) = c.get(1, &format!("/collections/k/documents/{id}"));
        if status != StatusCode::OK || body["metadata"]["seed"] != *seed {
            missing.push(format!("{id}: {status} {body}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // The index has them too: a sample found by their own vector.
    for (id, seed) in acked.iter().step_by((acked.len() / 20).max(1)) {
        let (_, body) = c.post(
            1,
            "/collections/k/search",
            json!({"vector": vector(*seed), "k": 1}),
        );
        assert_eq!(body["hits"][0]["id"], *id, "{body}");
    }
    eprintln!("kill during inserts: {} acknowledged, 0 lost", acked.len());
}

#[test]
fn a_same_id_upsert_storm_leaves_exactly_one_version() {
    let c = Cluster::start("upsert_storm", 2);
    assert_eq!(
        c.post(0, "/collections", json!({"name": "hot"})).0,
        StatusCode::CREATED
    );
    let written: Arc<Mutex<BTreeMap<u64, Vec<f32>>>> = Arc::default();
    let tasks: Vec<_> = (0..32u64)
        .map(|client| {
            let base = c.servers[(client % 2) as usize].url.clone();
            let (http, written) = (c.http.clone(), written.clone());
            c.runtime.spawn(async move {
                for round in 0..10u64 {
                    let version = client * 100 + round;
                    let body = json!({
                        "id": "the-one",
                        "vector": vector(version),
                        "text": format!("version {version}"),
                        "metadata": {"version": version},
                    });
                    let r = http
                        .post(format!("{base}/collections/hot/documents"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    written.lock().unwrap().insert(version, vector(version));
                }
            })
        })
        .collect();
    c.runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    // One document, one version, whole: its vector and text are those of
    // the version its metadata names.
    for server in 0..2 {
        let (_, body) = c.get(server, "/collections/hot/documents?limit=100");
        let docs = body["documents"].as_array().unwrap();
        assert_eq!(docs.len(), 1, "{body}");
        let (_, doc) = c.get(server, "/collections/hot/documents/the-one");
        let version = doc["metadata"]["version"].as_u64().unwrap();
        assert_eq!(doc["text"], format!("version {version}"), "{doc}");
        let (_, body) = c.post(
            server,
            "/collections/hot/search",
            json!({"vector": vector(version), "k": 10}),
        );
        let hits = body["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "found once: {body}");
        assert!(
            (hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
            "{body}"
        );
    }
    let mut client = c.db.client();
    for (table, column) in [
        ("tkr_documents", "id"),
        ("tkr_vectors", "doc_id"),
        ("tkr_text_units", "doc_id"),
    ] {
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} = 'the-one'"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{table}");
    }
    assert_eq!(written.lock().unwrap().len(), 320);
}
