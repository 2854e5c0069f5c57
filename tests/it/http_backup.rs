//! `POST /admin/backup` on a real server while clients keep writing over
//! HTTP (inserts, upserts, deletes, collections created and dropped); the
//! backup restored equals the database at its sequence number. Also the
//! CLI's `backup --server`, and the destination rules.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tkr_embed::db::backup;
use tkr_embed::db::{ContentData, Db};

use crate::db_backup::{
    assert_matches, expect_at, metadata_of, raw_vectors, text_of, versioned, Lifecycle, Op,
    WriteLog,
};
use crate::http_common::{data_url, image_bytes, test_config, TestServer};

const BLOB: usize = 64 * 1024;

/// A plain document at `version` as a JSON body (its own vector, no model).
fn body(id: &str, version: u32, dim: usize) -> Value {
    json!({
        "id": id,
        "text": text_of(id, version),
        "metadata": metadata_of(id, version),
        "vector": raw_vectors(id, version, dim)[0],
    })
}

async fn ok(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// One client: puts and deletes over HTTP on the documents it owns (its
/// share of the preloaded ones, and new ones), until `stop`.
async fn writer(
    client: reqwest::Client,
    base: String,
    t: usize,
    mut live: Vec<(String, u32)>,
    dim: usize,
    log: Arc<WriteLog>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(100 + t as u64);
    let mut next = 0;
    let docs = format!("{base}/collections/main/documents");
    while !stop.load(Ordering::Relaxed) {
        match rng.random_range(0..10) {
            0..=3 => {
                next += 1;
                let id = format!("w{t}-{next}");
                ok(client.post(&docs).json(&body(&id, 0, dim))).await;
                log.push("main", &id, Op::Put(0));
                live.push((id, 0));
            }
            4..=6 if !live.is_empty() => {
                let i = rng.random_range(0..live.len());
                let (id, v) = &mut live[i];
                if crate::db_backup::is_rich(id) {
                    continue; // content is only written through the Db
                }
                *v += 1;
                ok(client.post(&docs).json(&body(id, *v, dim))).await;
                log.push("main", id, Op::Put(*v));
            }
            _ if !live.is_empty() => {
                let (id, _) = live.swap_remove(rng.random_range(0..live.len()));
                ok(client.delete(format!("{docs}/{id}"))).await;
                log.push("main", &id, Op::Delete);
            }
            _ => {}
        }
    }
}

/// Creates, fills and drops collections between marker documents.
async fn lifecycles(
    client: reqwest::Client,
    base: String,
    dim: usize,
    log: Arc<WriteLog>,
    stop: Arc<AtomicBool>,
) -> Vec<Lifecycle> {
    let mut out = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let l = Lifecycle {
            name: format!("tmp{i}"),
            before: format!("lc{i}-a"),
            doc: format!("lc{i}-doc"),
            after: format!("lc{i}-b"),
        };
        let main = format!("{base}/collections/main/documents");
        ok(client.post(&main).json(&body(&l.before, 0, dim))).await;
        log.push("main", &l.before, Op::Put(0));
        ok(client
            .post(format!("{base}/collections"))
            .json(&json!({"name": l.name, "vectors": "int8"})))
        .await;
        ok(client
            .post(format!("{base}/collections/{}/documents", l.name))
            .json(&body(&l.doc, 0, dim)))
        .await;
        log.push(&l.name, &l.doc, Op::Put(0));
        ok(client.delete(format!("{base}/collections/{}", l.name))).await;
        ok(client.post(&main).json(&body(&l.after, 0, dim))).await;
        log.push("main", &l.after, Op::Put(0));
        out.push(l);
        i += 1;
    }
    out
}

#[test]
fn backup_through_the_api_while_clients_write() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.server.backup_root = Some(root.path().to_owned());
    let s = TestServer::with_config(config);
    let dim = s.db.dim();
    let log = Arc::new(WriteLog::default());

    // An image document through the model, in a collection nobody writes.
    s.create_collection("pics");
    let png = image_bytes("img_medium_333x250");
    let r = s.post_json(
        "/collections/pics/documents",
        &json!({"id": "img", "image": data_url(&png), "metadata": {"k": "v"}}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    log.push("pics", "img", Op::Put(0));
    // Preloaded straight into the database (faster than HTTP): plain
    // documents, and documents with content bytes (shared blobs).
    s.create_collection("main");
    let mut owned: Vec<Vec<(String, u32)>> = vec![Vec::new(); 3];
    for chunk in 0..20 {
        let ids: Vec<String> = (0..100)
            .map(|i| match i % 10 {
                0 => format!("r-p{chunk}-{i}"),
                _ => format!("p{chunk}-{i}"),
            })
            .collect();
        let docs = ids.iter().map(|id| versioned(id, 0, dim, BLOB)).collect();
        s.db.insert_many("main", docs).unwrap();
        for (i, id) in ids.into_iter().enumerate() {
            log.push("main", &id, Op::Put(0));
            owned[i % 3].push((id, 0));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let base = format!("http://{}", s.addr);
    let writers: Vec<_> = owned
        .into_iter()
        .enumerate()
        .map(|(t, live)| {
            s.runtime.spawn(writer(
                s.client.clone(),
                base.clone(),
                t,
                live,
                dim,
                Arc::clone(&log),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let cycles = s.runtime.spawn(lifecycles(
        s.client.clone(),
        base.clone(),
        dim,
        Arc::clone(&log),
        Arc::clone(&stop),
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Retried (rarely needed) until writes landed during a backup.
    let mut taken = None;
    for attempt in 0..5 {
        let dest = format!("b{attempt}");
        let r = s.post_json("/admin/backup", &json!({ "dest": dest }));
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        eprintln!("backup {attempt}: {}", r.json);
        if r.json["pre_images"].as_u64().unwrap() > 0 {
            taken = Some(r.json);
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        s.runtime.block_on(w).unwrap();
    }
    let lifecycles = s.runtime.block_on(cycles).unwrap();
    let report = taken.expect("no backup overlapped a write in 5 attempts");
    let seq = report["seq"].as_u64().unwrap();
    let dest = root
        .path()
        .canonicalize()
        .unwrap()
        .join(report["dest"].as_str().unwrap());
    assert_eq!(dest.display().to_string(), report["dest"].as_str().unwrap());

    let changes = s.db.changes_after(0, usize::MAX).unwrap();
    assert!(changes.last().unwrap().seq > seq);
    let present = ["main"];
    let mut exp = expect_at(&log.entries(), &changes, seq, &present, &[], &lifecycles);
    exp.unchecked.insert("pics".into());
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("db");
    backup::restore(&dest, &target).unwrap();
    let options = Db::stored_options(&target).unwrap().unwrap();
    assert_eq!(options.model_id, "qwen2vl-tiny");
    let rdb = Db::open(&target, options).unwrap();
    assert_eq!(rdb.stats().unwrap().last_seq, seq);
    assert_matches(&rdb, &exp, BLOB);
    // The image document, unchanged by anyone: equal to the source's.
    let content = rdb.get_content("pics", "img").unwrap();
    assert_eq!(
        content,
        Some(ContentData::Bytes {
            data: png,
            content_type: "image/png".into()
        })
    );
    let vector = rdb.get_vector("pics", "img").unwrap().unwrap();
    assert_eq!(vector, s.db.get_vector("pics", "img").unwrap().unwrap());
    assert_eq!(rdb.search("pics", &vector, 1, None).unwrap()[0].id, "img");
    drop(rdb);

    // Destinations: used, escaping, outside the root.
    let r = s.post_json("/admin/backup", &json!({"dest": "b0"}));
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "backup_dest_not_empty");
    let r = s.post_json("/admin/backup", &json!({"dest": "../escape"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let outside = restored.path().join("x").display().to_string();
    let r = s.post_json("/admin/backup", &json!({ "dest": outside }));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "outside_backup_root");
    assert!(!restored.path().join("x").exists());
    let r = s.post_json("/admin/backup", &json!({"dest": "no/such/parent"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = s.post_json("/admin/backup", &json!({"destination": "b9"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // The CLI backs a running server up through its API.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .args(["backup", "--server", &base, "from-cli", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["seq"].as_u64(), Some(s.db.stats().unwrap().last_seq));
    let manifest = backup::verify(&root.path().join("from-cli")).unwrap();
    assert_eq!(manifest.seq, v["seq"].as_u64().unwrap());
    assert_eq!(manifest.collections.len(), 2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .args(["backup", "--server", &base, "from-cli"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("not empty"),
        "{stderr}"
    );
}

#[test]
fn backups_through_the_api_are_off_without_a_backup_root() {
    let s = TestServer::start();
    let r = s.post_json("/admin/backup", &json!({"dest": "/tmp/anywhere"}));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "backup_disabled");
}
