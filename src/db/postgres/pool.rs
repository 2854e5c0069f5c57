//! A small blocking connection pool: up to `size` connections, opened on
//! demand, handed out one per caller and put back when the guard drops
//! (unless the connection broke). Callers wait up to `wait` for a free one.
//!
//! Each connection keeps the statements it prepared (searches then take
//! one round trip, not three) and its session settings for searches:
//! iterative HNSW scans on, `hnsw.ef_search` changed only when a search
//! needs another value.
//!
//! Connections use TLS as the URL's `sslmode` says: `disable`, `prefer`
//! (the default: TLS when the server offers it) or `require`; the server's
//! certificate is checked against the Mozilla root certificates.
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::{Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;

pub struct Pool {
    config: Config,
    tls: MakeRustlsConnect,
    size: usize,
    wait: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// Prepared statements one connection keeps at most (then it starts over).
const MAX_STATEMENTS: usize = 256;

/// A connection with what it remembers between loans.
pub struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// The session's `hnsw.ef_search`.
    ef_search: usize,
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or handed out.
    open: usize,
}

impl Pool {
    pub fn new(config: Config, size: usize, wait: Duration) -> Pool {
        Pool {
            config,
            tls: tls_connector(),
            size: size.max(1),
            wait,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A connection: an idle one, a new one while fewer than `size` are
    /// open, or the next one given back within `wait`.
    pub fn get(&self) -> Result<Pooled<'_>, PgError> {
        let deadline = Instant::now() + self.wait;
        let mut st = self.state.lock();
        loop {
            while let Some(conn) = st.idle.pop() {
                if conn.client.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.state.lock().open -= 1;
                        self.freed.notify_one();
                        Err(PgError::Connect(e.to_string()))
                    }
                };
            }
            if self.freed.wait_until(&mut st, deadline).timed_out() {
                return Err(PgError::Connect(format!(
                    "all {} connections of the pool stayed busy for {} s",
                    self.size,
                    self.wait.as_secs()
                )));
            }
        }
    }

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(self.tls.clone())?;
        // Filtered searches keep scanning the index until they have
        // enough rows (pgvector's iterative scans); pgvector's default
        // ef_search is 40.
        client.batch_execute("SET hnsw.iterative_scan = relaxed_order")?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            ef_search: 40,
        })
    }

    fn give_back(&self, conn: Conn) {
        let mut st = self.state.lock();
        if conn.client.is_closed() {
            st.open -= 1;
        } else {
            st.idle.push(conn);
        }
        self.freed.notify_one();
    }
}

/// TLS with the Mozilla root certificates and the ring crypto provider.
pub fn tls_connector() -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// A connection on loan from the pool.
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Pooled<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }

    /// `sql` prepared on this connection (once).
    pub fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        let conn = self.conn();
        if let Some(statement) = conn.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = conn.client.prepare(sql)?;
        if conn.statements.len() >= MAX_STATEMENTS {
            conn.statements.clear();
        }
        conn.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Sets the session's `hnsw.ef_search` (when it is not already `ef`).
    pub fn set_ef_search(&mut self, ef: usize) -> Result<(), postgres::Error> {
        let conn = self.conn();
        if conn.ef_search != ef {
            conn.client
                .batch_execute(&format!("SET hnsw.ef_search = {ef}"))?;
            conn.ef_search = ef;
        }
        Ok(())
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.conn.as_ref().expect("present until drop").client
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.conn().client
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}
