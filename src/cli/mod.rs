//! Command-line interface (clap derive). Doc comments are the help text.
mod backup_cmd;
mod config_cmd;
mod db_cmds;
mod embed_cmd;
mod import_cmd;
mod migrate_cmd;
mod serve_cmd;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigInputs, ConfigSources, Layer, LogLevel, Source};

#[derive(Debug, Parser)]
#[command(
    name = "tkr-embed",
    version,
    about = "Embedded multimodal vector database with a built-in Ops-MM-embedding-v1 embedder",
    long_about = None,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (YAML). Default: ./config.yaml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Memory profile: auto, m1_16gb, m1_32gb, m1_64gb, or a YAML file.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Database directory (the embedded store).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the database is: a directory, sled:DIR, or
    /// postgres://USER:PASSWORD@HOST:PORT/DB. Also TKR_STORE.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Model: a local directory or a Hugging Face repo id.
    #[arg(long, global = true, value_name = "DIR_OR_REPO")]
    pub model: Option<String>,
    /// Log level (error, warn, info, debug, trace). Also TKR_LOG.
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevelArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogLevelArg {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevelArg> for LogLevel {
    fn from(l: LogLevelArg) -> Self {
        match l {
            LogLevelArg::Error => LogLevel::Error,
            LogLevelArg::Warn => LogLevel::Warn,
            LogLevelArg::Info => LogLevel::Info,
            LogLevelArg::Debug => LogLevel::Debug,
            LogLevelArg::Trace => LogLevel::Trace,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Embed text and/or images with the model and print the vectors.
    Embed(embed_cmd::EmbedArgs),
    /// Insert a document (embedded by the model, or with a given vector).
    Insert(db_cmds::InsertArgs),
    /// Import every image, video, PDF and text file under a directory.
    Import(import_cmd::ImportArgs),
    /// Show a stored document.
    Get(db_cmds::DocArgs),
    /// Delete a document.
    Delete(db_cmds::DocArgs),
    /// Search a collection by text, image, text+image, a stored document or a vector.
    Search(db_cmds::SearchArgs),
    /// List, create or drop collections.
    Collections {
        #[command(subcommand)]
        command: Option<db_cmds::CollectionsCommand>,
    },
    /// Database statistics.
    Stats(db_cmds::JsonFlag),
    /// Rebuild the search index from the stored documents.
    Reindex(db_cmds::ReindexArgs),
    /// Write a consistent backup of the database into a new directory (of
    /// a data directory not in use, or through a running server's API).
    Backup(backup_cmd::BackupArgs),
    /// Restore a backup into a new, empty data directory (--data-dir).
    Restore(backup_cmd::RestoreArgs),
    /// Copy a database into another store (a directory or PostgreSQL),
    /// vectors and content as stored; run it again to finish a copy.
    Migrate(migrate_cmd::MigrateArgs),
    /// Serve the HTTP API (embeddings, collections, documents, search).
    Serve(serve_cmd::ServeArgs),
}

impl GlobalArgs {
    /// The configuration inputs these flags and the process environment give.
    pub fn config_inputs(&self) -> ConfigInputs {
        let mut flags = Layer::default();
        if let Some(dir) = &self.data_dir {
            flags.set(
                "storage.data_dir",
                dir.display().to_string(),
                Source::Flag("--data-dir".into()),
            );
        }
        if let Some(store) = &self.store {
            flags.set("storage.url", store.clone(), Source::Flag("--store".into()));
        }
        if let Some(model) = &self.model {
            flags.set("model.name", model.clone(), Source::Flag("--model".into()));
        }
        if let Some(level) = self.log_level {
            flags.set(
                "monitoring.log_level",
                LogLevel::from(level).as_str(),
                Source::Flag("--log-level".into()),
            );
        }
        ConfigInputs {
            config_file: self.config.clone(),
            profile: self.profile.clone(),
            env: std::env::vars().collect(),
            flags,
        }
    }
}

/// Runs a parsed command line.
/// A failed command; shown as one line with the whole cause chain
/// ("outer: inner").
#[derive(Debug)]
pub struct CliError(anyhow::Error);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for CliError {}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    run_command(cli).map_err(CliError)
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let mut inputs = cli.global.config_inputs();
    match &cli.command {
        Command::Embed(args) => args.config_flags(&mut inputs.flags),
        Command::Serve(args) => args.config_flags(&mut inputs.flags),
        _ => {}
    }
    let loaded = crate::config::load(&inputs)?;
    init_logging(loaded.config.monitoring.log_level);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Config(cmd) => config_cmd::run(cmd, &loaded),
        Command::Embed(args) => embed_cmd::run(args, &loaded),
        Command::Insert(args) => db_cmds::insert(args, &loaded),
        Command::Get(args) => db_cmds::get(args, &loaded),
        Command::Delete(args) => db_cmds::delete(args, &loaded),
        Command::Search(args) => db_cmds::search(args, &loaded),
        Command::Collections { command } => db_cmds::collections(command, &loaded),
        Command::Stats(args) => db_cmds::stats(args, &loaded),
        Command::Reindex(args) => db_cmds::reindex(args, &loaded),
        Command::Backup(args) => backup_cmd::backup(args, &loaded),
        Command::Restore(args) => backup_cmd::restore(args, &loaded),
        Command::Migrate(args) => migrate_cmd::run(args, &loaded),
        Command::Serve(args) => serve_cmd::run(args, &loaded),
        Command::Import(args) => import_cmd::run(args, &loaded),
    }
}

/// Resolves the configured model (local directory or hub download) and
/// starts the engine on it.
pub(crate) fn start_engine(loaded: &ConfigSources) -> anyhow::Result<crate::engine::Engine> {
    let config = &loaded.config;
    let dir =
        crate::model::hub::resolve_model(&config.model.name, config.model.cache_dir.as_deref())?;
    let engine_config = crate::engine::engine_config(config, dir, config.model.name.clone());
    Ok(crate::engine::Engine::start(engine_config)?)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} [{elapsed_precise}, {per_sec}, eta {eta}]",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_owned());
    if len < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn init_logging(level: LogLevel) {
    use std::io::IsTerminal as _;
    // Our crate at the chosen level, dependencies one notch quieter.
    let filter = format!("warn,tkr_embed={}", level.as_str());
    let ansi = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Whether log lines get ANSI colours: only on a terminal, and never while
/// `NO_COLOR` holds a non-empty value (<https://no-color.org>).
fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::log_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(true, Some(OsStr::new("false"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new(""))));
    }
}
