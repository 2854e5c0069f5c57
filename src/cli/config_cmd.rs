//! `tkr-embed config show`: the effective configuration and where each value came from.
use clap::Subcommand;
use serde_json::{json, Value};

use crate::config::ConfigSources;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and the source of every value.
    Show {
        /// Machine-readable JSON output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ConfigCommand, loaded: &ConfigSources) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Show { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&show_json(loaded))?);
            } else {
                print!("{}", show_text(loaded));
            }
        }
    }
    Ok(())
}

fn show_json(loaded: &ConfigSources) -> Value {
    let sources: serde_json::Map<String, Value> = loaded
        .sources
        .iter()
        .map(|(k, s)| (k.clone(), Value::String(s.to_string())))
        .collect();
    // API keys serialize as `<redacted>` (config::Secret): never printed.
    let config = serde_json::to_value(&loaded.config).expect("Config serializes");
    json!({
        "config": config,
        "sources": sources,
        "config_file": loaded.config_file,
        "profile": loaded.profile,
        "runtime": {
            "device": crate::model::runtime::default_device(),
            "blas": crate::model::runtime::blas_report(),
        },
    })
}

fn show_text(loaded: &ConfigSources) -> String {
    let tree = serde_json::to_value(&loaded.config).expect("Config serializes");
    let mut out = String::new();
    let file = loaded
        .config_file
        .as_ref()
        .map_or("none".to_owned(), |p| p.display().to_string());
    out.push_str(&format!("# config file: {file}\n"));
    out.push_str(&format!(
        "# profile:     {}\n",
        loaded.profile.as_deref().unwrap_or("none")
    ));
    out.push_str(&format!(
        "# mlx:         {}\n# blas:        {}\n",
        crate::model::runtime::default_device(),
        crate::model::runtime::blas_summary()
    ));
    if let Some(warning) = crate::model::runtime::blas_warning() {
        out.push_str(&format!("# WARNING:     {warning}\n"));
    }
    let width = loaded.sources.keys().map(String::len).max().unwrap_or(0);
    for (path, source) in &loaded.sources {
        let value = path
            .split('.')
            .fold(&tree, |node, key| &node[key])
            .to_string();
        out.push_str(&format!("{path:<width$} = {value:<40} ({source})\n"));
    }
    out
}
