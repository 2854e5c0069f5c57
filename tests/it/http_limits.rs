//! What a request over a limit gets ("Hardened server"): a 503 `timeout`
//! means the request changed nothing, a write that reached the database
//! before the deadline is answered with its real outcome, and each class of
//! route has its own cap on requests in flight, so one kind of client
//! cannot starve the others (nor `/health`).
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tkr_embed::db::NewDocument;
use tkr_embed::types::Modality;

use crate::db_common::random_unit;
use crate::http_common::{test_config, Response, TestServer};

const DIM: usize = 64;

/// A collection big enough that rebuilding its index takes seconds: the
/// rebuild holds the database's write lock, as a checkpoint of a large
/// database does, so writes wait for it inside the database.
fn fill_big_collection(s: &TestServer, documents: usize) {
    s.create_collection("big");
    for start in (0..documents).step_by(2000) {
        let docs = (start..(start + 2000).min(documents))
            .map(|i| {
                NewDocument::new(Modality::Text, random_unit(DIM, i as u64))
                    .with_id(format!("b{i}"))
            })
            .collect();
        s.db.insert_many("big", docs).unwrap();
    }
}

/// A request's answer and how long it took.
fn timed(send: &dyn Fn() -> Response) -> (Response, Duration) {
    let started = Instant::now();
    let r = send();
    (r, started.elapsed())
}

#[test]
fn a_write_that_reached_the_database_before_the_timeout_gets_its_real_outcome() {
    let mut config = test_config();
    config.server.timeout_secs = 1;
    let s = TestServer::with_config(config);
    s.create_collection("c");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "gone", "vector": random_unit(DIM, 1)}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    fill_big_collection(&s, 40_000);

    let (rebuild, answers) = std::thread::scope(|scope| {
        let rebuild = scope.spawn(|| {
            let started = Instant::now();
            s.db.reindex(Some("big")).unwrap();
            started.elapsed()
        });
        // The rebuild takes the lock at once; then three writes arrive.
        std::thread::sleep(Duration::from_millis(300));
        let insert = scope.spawn(|| {
            timed(&|| {
                s.post_json(
                    "/collections/c/documents",
                    &json!({"id": "x", "vector": random_unit(DIM, 2)}),
                )
            })
        });
        let delete = scope.spawn(|| timed(&|| s.delete("/collections/c/documents/gone")));
        let create =
            scope.spawn(|| timed(&|| s.post_json("/collections", &json!({"name": "new"}))));
        let answers = [insert, delete, create].map(|h| h.join().unwrap());
        (rebuild.join().unwrap(), answers)
    });
    assert!(
        rebuild > Duration::from_secs(2),
        "the rebuild took only {rebuild:?}: too fast to hold writes past the 1 s timeout \
         (make the collection larger)"
    );
    let [(insert, insert_took), (delete, delete_took), (create, create_took)] = answers;
    // Before the fix each was answered 503 `timeout` after 1 s, and then
    // landed anyway when the rebuild let go of the lock.
    assert_eq!(insert.status, StatusCode::CREATED, "{}", insert.json);
    assert_eq!(delete.status, StatusCode::OK, "{}", delete.json);
    assert_eq!(create.status, StatusCode::CREATED, "{}", create.json);
    for took in [insert_took, delete_took, create_took] {
        assert!(
            took > Duration::from_secs(1),
            "not held past the timeout: {took:?}"
        );
    }

    // Retrying each is harmless: the same document replaced, the delete
    // and the create told that they already happened.
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "x", "vector": random_unit(DIM, 3)}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = s.delete("/collections/c/documents/gone");
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    assert_eq!(r.code(), "document_not_found");
    let r = s.post_json("/collections", &json!({"name": "new"}));
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(r.code(), "collection_exists");
    assert_eq!(s.documents("c"), 1);
    let page = s.get("/collections/c/documents");
    assert_eq!(page.json["documents"][0]["id"], "x", "{}", page.json);
}

#[test]
fn a_timed_out_write_changes_nothing_and_a_retry_stores_it_once() {
    let mut config = test_config();
    config.server.timeout_secs = 1;
    config.server.retry_after_secs = 4;
    config.server.allow_private_urls = true;
    let s = TestServer::with_config(config);
    // An image host that is slow the first time only.
    let slow = Arc::new(AtomicBool::new(true));
    let first = Arc::clone(&slow);
    let app = axum::Router::new().route(
        "/img.png",
        axum::routing::get(move || {
            let slow = first.swap(false, Ordering::SeqCst);
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                crate::http_common::image_bytes("img_tiny_20x30")
            }
        }),
    );
    let host = s.serve_other(app);
    s.create_collection("c");
    let body = json!({"id": "pic", "image": format!("http://{host}/img.png")});

    let r = s.post_json("/collections/c/documents", &body);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert_eq!(r.code(), "timeout");
    assert_eq!(r.headers["retry-after"], "4");
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("changed nothing"), "{message}");
    // Long after the image would have arrived: still nothing stored.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.documents("c"), 0);
    assert_eq!(
        s.get("/collections/c/documents/pic").status,
        StatusCode::NOT_FOUND
    );

    for _ in 0..2 {
        let r = s.post_json("/collections/c/documents", &body);
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    assert_eq!(s.documents("c"), 1);
}

/// A connection that sent an insert's headers and part of its body, and
/// then stalls (a slow upload).
fn stalled_insert(s: &TestServer) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(
        b"POST /collections/c/documents HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\": ",
    )
    .unwrap();
    c
}

#[test]
fn a_full_class_is_refused_at_once_and_the_others_still_answer() {
    let mut config = test_config();
    config.server.max_ingest_requests = 2;
    config.server.retry_after_secs = 5;
    let s = TestServer::with_config(config);
    s.create_collection("c");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "a", "vector": random_unit(DIM, 1)}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // Two slow uploads take the two insert slots.
    let held = [stalled_insert(&s), stalled_insert(&s)];
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    // A third insert, and a delete (same class): refused at once.
    for r in [
        s.post_json(
            "/collections/c/documents",
            &json!({"id": "b", "vector": random_unit(DIM, 2)}),
        ),
        s.delete("/collections/c/documents/a"),
    ] {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
        assert_eq!(r.code(), "overloaded");
        assert_eq!(r.headers["retry-after"], "5");
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains("server.max_ingest_requests"), "{message}");
    }
    // Everyone else is served: health, a search, a read, an embedding.
    assert_eq!(s.get("/health").status, StatusCode::OK);
    let r = s.post_json(
        "/collections/c/search",
        &json!({"vector": random_unit(DIM, 1), "k": 1}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["hits"][0]["id"], "a");
    assert_eq!(s.get("/collections/c/documents/a").status, StatusCode::OK);
    let r = s.post_json("/embed/text", &json!({"texts": ["still embedding"]}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(started.elapsed() < Duration::from_secs(5));

    // The slow clients go away: their slots are free again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.post_json(
            "/collections/c/documents",
            &json!({"id": "b", "vector": random_unit(DIM, 2)}),
        );
        if r.status == StatusCode::CREATED {
            break;
        }
        assert_eq!(r.code(), "overloaded", "{}", r.json);
        assert!(Instant::now() < deadline, "the slots were not freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.documents("c"), 2);
}
