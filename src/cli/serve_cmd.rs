//! `tkr-embed serve`: the HTTP API on the configured database and model.
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::config::{ConfigSources, Layer, Source};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (server.host).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (server.port); 0 picks a free port.
    #[arg(long)]
    port: Option<u16>,
}

impl ServeArgs {
    pub fn config_flags(&self, flags: &mut Layer) {
        if let Some(host) = &self.host {
            flags.set("server.host", host.clone(), Source::Flag("--host".into()));
        }
        if let Some(port) = self.port {
            flags.set("server.port", port, Source::Flag("--port".into()));
        }
    }
}

pub fn run(_args: ServeArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let config = loaded.config.clone();
    let engine = Arc::new(super::start_engine(loaded)?);
    let db = Arc::new(super::db_cmds::open_with_engine(loaded, &engine)?);
    let state = crate::api::AppState::new(
        Arc::clone(&db),
        Arc::clone(&engine),
        config.clone(),
        loaded.profile.clone(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tkr-http")
        .build()?;
    let served = runtime.block_on(async {
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr()?;
        // Scripts (and the tests) read this line to find the port.
        println!("listening on http://{local}");
        tracing::info!(
            "serving {} ({}, documents in {})",
            local,
            engine.info().model_id,
            config.storage.location()
        );
        crate::api::serve(listener, state, shutdown_signal()).await?;
        anyhow::Ok(())
    });
    // In-flight requests are done (or serving failed): either way, flush
    // and checkpoint before reporting.
    tracing::info!("shutting down: checkpointing the index");
    // Blocking work still running (a write stuck on a failed disk) must not
    // hold the process: give it a moment, then go on without it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    let closed = match Arc::try_unwrap(db) {
        Ok(db) => db.close().context("closing the database"),
        // Something still holds it (a detached blocking task): dropping our
        // reference lets the last holder's drop checkpoint.
        Err(_) => Err(anyhow::anyhow!("the database was still in use at shutdown")),
    };
    served?;
    closed?;
    eprintln!("stopped cleanly");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
