//! A small blocking connection pool: up to `size` connections, opened on
//! demand, handed out one per caller and put back when the guard drops
//! (unless the connection broke). Callers wait up to `wait` for a free one.
//!
//! Connections use TLS as the URL's `sslmode` says: `disable`, `prefer`
//! (the default: TLS when the server offers it) or `require`; the server's
//! certificate is checked against the Mozilla root certificates.
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::{Client, Config};
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

struct PoolState {
    idle: Vec<Client>,
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
            while let Some(client) = st.idle.pop() {
                if client.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    client: Some(client),
                });
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match self.config.connect(self.tls.clone()) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        client: Some(client),
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

    fn give_back(&self, client: Client) {
        let mut st = self.state.lock();
        if client.is_closed() {
            st.open -= 1;
        } else {
            st.idle.push(client);
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
    client: Option<Client>,
}

impl Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.give_back(client);
        }
    }
}
