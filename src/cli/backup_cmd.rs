//! `backup` (of a data directory not in use, or through a running
//! server's API) and `restore`.
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use crate::config::ConfigSources;
use crate::db::backup;
use crate::db::DbError;
use crate::service::views::{BackupView, RestoreView};
use crate::store::StoreError;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// New (or empty) directory to write the backup into. With --server, a
    /// directory on the server's machine under its `server.backup_root`
    /// (relative to it, or absolute).
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// Back up the database of the server running at this URL (e.g.
    /// http://127.0.0.1:8000) through its API, while it keeps serving.
    /// Without it, the data directory is opened here, which fails while a
    /// server has it open.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Bearer key for --server (default: the first of `server.api_keys`).
    #[arg(long, env = "TKR_API_KEY", value_name = "KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup directory (with its manifest.json).
    #[arg(value_name = "SRC")]
    src: PathBuf,
    /// Only check the backup (manifest and every file's checksum); write
    /// nothing.
    #[arg(long)]
    check: bool,
    #[arg(long)]
    json: bool,
}

pub fn backup(args: BackupArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let view = match &args.server {
        Some(url) => backup_through_server(url, &args, loaded)?,
        None => {
            let data_dir = &loaded.config.storage.data_dir;
            let report =
                backup::backup_data_dir(data_dir, &args.dest, &|_| {}).map_err(|e| match e {
                    DbError::Store(StoreError::Locked(dir)) => anyhow::anyhow!(
                        "the database in {} is in use by another process (a running server?); \
                         back it up through the server: tkr-embed backup --server URL DEST",
                        dir.display()
                    ),
                    other => anyhow::Error::new(other).context(format!(
                        "cannot back up {} into {}",
                        data_dir.display(),
                        args.dest.display()
                    )),
                })?;
            BackupView::from(&report)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        println!(
            "backed up {} documents in {} collections (sequence number {}) into {}: {} bytes in {:.2}s",
            view.documents,
            view.collections,
            view.seq,
            view.dest,
            view.bytes,
            view.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(())
}

/// `/admin/backup` needs an admin-scoped key: the first one the config lists.
fn admin_key_from_config(loaded: &ConfigSources) -> Option<String> {
    loaded
        .config
        .server
        .api_keys
        .iter()
        .find(|k| k.scope == crate::config::Scope::Admin)
        .map(|k| k.key.expose().to_owned())
}

fn backup_through_server(
    url: &str,
    args: &BackupArgs,
    loaded: &ConfigSources,
) -> anyhow::Result<BackupView> {
    let endpoint = format!("{}/admin/backup", url.trim_end_matches('/'));
    let key = args
        .api_key
        .clone()
        .or_else(|| admin_key_from_config(loaded));
    let dest = args.dest.display().to_string();
    let (status, body) = crate::service::block_on(async {
        let mut request = reqwest::Client::new()
            .post(&endpoint)
            .json(&serde_json::json!({ "dest": dest }));
        if let Some(key) = &key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.bytes().await?))
    })?
    .with_context(|| format!("cannot reach {endpoint}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the server refused the backup ({status}): {message}");
    }
    serde_json::from_slice(&body).context("the server's answer is not a backup report")
}

pub fn restore(args: RestoreArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    if args.check {
        let manifest = backup::verify(&args.src)?;
        if args.json {
            println!("{}", serde_json::to_string(&manifest)?);
        } else {
            println!(
                "{} is intact: {} documents in {} collections at sequence number {}, model {} (dimension {})",
                args.src.display(),
                manifest.documents,
                manifest.collections.len(),
                manifest.seq,
                manifest.model_id,
                manifest.dim
            );
        }
        return Ok(());
    }
    let data_dir = &loaded.config.storage.data_dir;
    let report = backup::restore(&args.src, data_dir)?;
    let view = RestoreView::from(&report);
    if args.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        println!(
            "restored {} documents in {} collections (sequence number {}) into {} in {:.2}s",
            view.documents,
            view.collections,
            view.seq,
            view.data_dir,
            view.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(())
}
