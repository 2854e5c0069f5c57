//! API keys over a real socket: scopes (read < write < admin, a plain
//! string is admin), per-key rate limits (429 with `Retry-After`), `/metrics`
//! and `/info` behind a key unless configured public, and key texts that
//! never show up in answers, `config show` or the server's log.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tkr_embed::config::{ApiKey, Scope};

use crate::http_common::{test_config, Response, TestServer};
use crate::http_schema::Schemas;
use crate::model_parity::fixture_dir;

const READ: &str = "read-key-7f3a";
const WRITE: &str = "write-key-91c2";
const ADMIN: &str = "admin-key-0d5e";
const PLAIN: &str = "plain-key-44b8";
const LIMITED: &str = "limited-key-c6e1";
const OTHER_LIMITED: &str = "other-limited-key-2a9f";
const ALL: [&str; 6] = [READ, WRITE, ADMIN, PLAIN, LIMITED, OTHER_LIMITED];

fn key(text: &str, scope: Scope) -> ApiKey {
    ApiKey {
        scope,
        ..ApiKey::from(text)
    }
}

fn limited(text: &str) -> ApiKey {
    ApiKey {
        rate_per_sec: Some(1.0),
        burst: Some(2),
        ..key(text, Scope::Read)
    }
}

fn keyed_server() -> TestServer {
    let mut config = test_config();
    config.server.api_keys = vec![
        key(READ, Scope::Read),
        key(WRITE, Scope::Write),
        key(ADMIN, Scope::Admin),
        ApiKey::from(PLAIN),
        limited(LIMITED),
        limited(OTHER_LIMITED),
    ];
    TestServer::with_config(config)
}

/// Asserts a refusal: status, code, and no key text anywhere in it.
fn refused(r: &Response, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.code(), code, "{}", r.json);
    let text = format!("{:?} {}", r.headers, r.json);
    for secret in ALL {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

fn forbidden(r: &Response, needed: &str) {
    refused(r, StatusCode::FORBIDDEN, "forbidden");
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("`{needed}`")), "{message}");
}

#[test]
fn scopes_decide_what_each_key_may_do() {
    let mut s = keyed_server();
    let schemas = Schemas::new({
        s.key = Some(READ.into());
        s.get("/openapi.json").json
    });

    // No key, or a wrong one: only the public routes answer.
    s.key = None;
    assert_eq!(s.get("/health").status, StatusCode::OK);
    assert_eq!(s.get("/").status, StatusCode::OK);
    for path in ["/collections", "/metrics", "/info", "/openapi.json"] {
        let r = s.get(path);
        refused(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    schemas.check(
        "get",
        "/info",
        StatusCode::UNAUTHORIZED,
        &s.get("/info").json,
    );
    s.key = Some(format!("{READ}x"));
    refused(
        &s.get("/collections"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // The admin key sets up; a plain string key is an admin key too.
    s.key = Some(ADMIN.into());
    s.create_collection("c");
    s.key = Some(PLAIN.into());
    s.create_collection("plain");
    let r = s.delete("/collections/plain");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "a", "text": "a red fox"}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // Read: search, documents, content, embeddings, system routes.
    s.key = Some(READ.into());
    for path in [
        "/collections",
        "/collections/c",
        "/collections/c/documents",
        "/collections/c/documents/a",
        "/openapi.json",
        "/metrics",
        "/info",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
    }
    // A text document has no stored content or picture: past the key
    // check, the route itself answers.
    for path in [
        "/collections/c/documents/a/content",
        "/collections/c/documents/a/thumbnail",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.json);
    }
    let r = s.post_json("/collections/c/search", &json!({"text": "fox", "k": 1}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["hits"][0]["id"], "a");
    let r = s.post_json("/v1/embeddings", &json!({"input": "x"}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = s.post_json("/embed/text", &json!({"texts": ["x"]}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // …but nothing that changes anything.
    let r = s.post_json("/collections/c/documents", &json!({"id": "b", "text": "x"}));
    forbidden(&r, "write");
    schemas.check(
        "post",
        "/collections/{collection}/documents",
        r.status,
        &r.json,
    );
    forbidden(&s.delete("/collections/c/documents/a"), "write");
    let r = s.post_json("/collections", &json!({"name": "d"}));
    forbidden(&r, "admin");
    schemas.check("post", "/collections", r.status, &r.json);
    forbidden(&s.delete("/collections/c"), "admin");
    forbidden(&s.post_json("/admin/backup", &json!({})), "admin");
    forbidden(&s.get("/admin/anything"), "admin");
    // Unknown routes need admin too (no route can default to less).
    forbidden(&s.get("/no/such/route"), "admin");
    assert_eq!(s.documents("c"), 1);

    // Write: documents in and out, but not collections.
    s.key = Some(WRITE.into());
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "b", "text": "a brown dog"}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = s.delete("/collections/c/documents/b");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(s.get("/collections/c/documents/a").status, StatusCode::OK);
    forbidden(&s.post_json("/collections", &json!({"name": "d"})), "admin");
    forbidden(&s.delete("/collections/c"), "admin");
    forbidden(&s.post_json("/admin/backup", &json!({})), "admin");

    // Admin: everything; `/admin/…` passes the key check (then 404 here).
    s.key = Some(ADMIN.into());
    let r = s.post_json("/admin/no-such-job", &json!({}));
    refused(&r, StatusCode::NOT_FOUND, "not_found");
    let r = s.delete("/collections/c");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[test]
fn each_key_has_its_own_rate_limit() {
    let mut s = keyed_server();
    let schemas = Schemas::new({
        s.key = Some(ADMIN.into());
        s.get("/openapi.json").json
    });
    // Unlimited keys are not limited.
    for _ in 0..5 {
        assert_eq!(s.get("/collections").status, StatusCode::OK);
    }
    // A burst of 2 at 1/s: the third request at once is refused.
    s.key = Some(LIMITED.into());
    assert_eq!(s.get("/collections").status, StatusCode::OK);
    assert_eq!(s.get("/collections").status, StatusCode::OK);
    let r = s.get("/collections");
    refused(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    schemas.check("get", "/collections", r.status, &r.json);
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1);
    // Refused requests of other kinds count as well, and are still 429.
    let r = s.post_json("/collections", &json!({"name": "x"}));
    refused(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another key is not held back by this one's use.
    s.key = Some(OTHER_LIMITED.into());
    assert_eq!(s.get("/collections").status, StatusCode::OK);
    // After the wait the key is let through again.
    std::thread::sleep(Duration::from_secs(retry_after));
    s.key = Some(LIMITED.into());
    let r = s.get("/collections");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Public routes cost nothing.
    for _ in 0..5 {
        assert_eq!(s.get("/health").status, StatusCode::OK);
    }
}

#[test]
fn metrics_and_info_can_be_made_public() {
    let mut config = test_config();
    config.server.api_keys = vec![key(READ, Scope::Read)];
    config.server.public_metrics = true;
    config.server.public_info = true;
    let mut s = TestServer::with_config(config);
    let r = s.get("/metrics");
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/info");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["auth"], true);
    refused(
        &s.get("/collections"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    refused(
        &s.get("/openapi.json"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    s.key = Some(READ.into());
    assert_eq!(s.get("/collections").status, StatusCode::OK);
}

const KEYS_YAML: &str = "server:
  api_keys:
    - read-key-7f3a
    - key: write-key-91c2
      scope: write
      rate_per_sec: 1
      burst: 1
";

fn write_config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("keys.yaml");
    std::fs::write(&path, KEYS_YAML).unwrap();
    path
}

fn assert_no_keys(what: &str, text: &str) {
    for secret in ALL {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

#[test]
fn config_show_masks_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir);
    let env_keys = json!([{"key": ADMIN, "scope": "admin"}, PLAIN, {"key": LIMITED,
        "scope": "read", "rate_per_sec": 0.5}])
    .to_string();
    for (env, expected_keys) in [(None, 2), (Some(env_keys.as_str()), 3)] {
        for json_flag in [false, true] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tkr-embed"));
            cmd.arg("--config")
                .arg(&config)
                .args(["config", "show"])
                .current_dir(dir.path())
                .env("TKR_LOG", "trace")
                .env_remove("TKR_API_KEYS");
            if json_flag {
                cmd.arg("--json");
            }
            if let Some(env) = env {
                cmd.env("TKR_SERVER_API_KEYS", env);
            }
            let out = cmd.output().unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert!(out.status.success(), "{stderr}");
            assert_no_keys("config show", &stdout);
            assert_no_keys("config show's log", &stderr);
            assert_eq!(
                stdout.matches("<redacted>").count(),
                expected_keys,
                "{stdout}"
            );
            if json_flag {
                let shown: Value = serde_json::from_str(&stdout).unwrap();
                let keys = &shown["config"]["server"]["api_keys"];
                if env.is_none() {
                    assert_eq!(keys[0]["scope"], "admin");
                    assert_eq!(keys[1]["scope"], "write");
                    assert_eq!(keys[1]["rate_per_sec"], 1.0);
                } else {
                    assert_eq!(keys[2]["rate_per_sec"], 0.5);
                    assert_eq!(
                        shown["sources"]["server.api_keys"],
                        "env TKR_SERVER_API_KEYS"
                    );
                }
            }
        }
    }
    // A refused configuration names the entry, not the key.
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--config")
        .arg(&config)
        .args(["config", "show"])
        .current_dir(dir.path())
        .env("TKR_API_KEYS", format!("{READ},{READ}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(stderr.contains("server.api_keys[1].key"), "{stderr}");
    assert_no_keys("a config error", &stderr);
}

/// The binary at trace level, asked with good, wrong, too weak and
/// over-limit keys: its log says which configured key was refused, by
/// position, and holds no key's text.
#[test]
fn the_server_log_never_shows_a_key() {
    let _mlx = crate::mlx_lock();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(fixture_dir().join("model"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--port", "0"])
        .current_dir(dir.path())
        .env("TKR_LOG", "trace")
        .env_remove("TKR_API_KEYS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        let send = |key: Option<&str>, method: reqwest::Method, path: &str| {
            let rb = client.request(method, format!("{base}{path}"));
            let rb = match key {
                Some(k) => rb.bearer_auth(k),
                None => rb,
            };
            async move {
                let r = rb.json(&json!({"name": "c"})).send().await.unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                assert_no_keys("an answer", &body);
                status
            }
        };
        use reqwest::Method;
        assert_eq!(
            send(Some(READ), Method::POST, "/collections").await,
            StatusCode::CREATED
        );
        assert_eq!(
            send(None, Method::GET, "/collections").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(Some(LIMITED), Method::GET, "/collections").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(Some(WRITE), Method::DELETE, "/collections/c").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send(Some(WRITE), Method::GET, "/collections").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        let metrics = client
            .get(format!("{base}/metrics"))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("tkr_http_requests_total"), "{metrics}");
        assert_no_keys("/metrics", &metrics);
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("server.api_keys[1] (write) may not DELETE /collections/c"),
        "{stderr}"
    );
    assert!(
        stderr.contains("server.api_keys[1] is over its rate limit"),
        "{stderr}"
    );
    assert_no_keys("the server's log", &stderr);
}
