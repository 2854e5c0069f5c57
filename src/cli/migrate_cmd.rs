//! `migrate`: copy a database into another store (embedded ⇄ PostgreSQL),
//! without embedding anything again; see [`crate::db::migrate`].
use anyhow::{bail, Context};
use clap::Args;

use crate::config::ConfigSources;
use crate::db::migrate::{copy, CollectionCopy};
use crate::db::{Db, StoreLocation};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The database to copy: a directory, sled:DIR, or postgres://… URL.
    #[arg(long, value_name = "STORE")]
    from: String,
    /// Where to copy it (created when new; a partial earlier copy is
    /// finished): a directory, sled:DIR, or postgres://… URL.
    #[arg(long, value_name = "STORE")]
    to: String,
    /// Print the per-collection report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: MigrateArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let from = StoreLocation::parse(&args.from);
    let to = StoreLocation::parse(&args.to);
    if from == to {
        bail!("--from and --to are the same store ({from})");
    }
    let storage = &loaded.config.storage;
    let Some(options) =
        Db::stored_options_at(&from).with_context(|| format!("cannot read {from}"))?
    else {
        bail!("no database in {from}");
    };
    let mut options_to = options.clone();
    options_to.min_free_bytes = storage.min_free_bytes;
    options_to.cache_bytes = storage.cache_bytes;
    let source = Db::open_at(&from, options, storage.pool_size)
        .with_context(|| format!("cannot open {from}"))?;
    let target = Db::open_at(&to, options_to, storage.pool_size)
        .with_context(|| format!("cannot open {to}"))?;
    let bar = super::progress_bar(0, "copying");
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report =
        copy(&source, &target, &progress).with_context(|| format!("copying {from} into {to}"))?;
    bar.finish_and_clear();
    target.close().with_context(|| format!("closing {to}"))?;
    source.close().with_context(|| format!("closing {from}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &from, &to);
    }
    Ok(())
}

fn print_report(report: &[CollectionCopy], from: &StoreLocation, to: &StoreLocation) {
    for c in report {
        println!(
            "{}: {} documents ({} copied, {} already there)",
            c.name, c.documents, c.copied, c.skipped
        );
    }
    let total: u64 = report.iter().map(|c| c.documents).sum();
    println!(
        "copied {} collections, {total} documents from {from} to {to}; counts match",
        report.len()
    );
}
