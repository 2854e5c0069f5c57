//! Merging configuration layers while remembering who set each value.
use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{profiles, Config, ConfigError};

/// Where one effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Source {
    Default,
    File(PathBuf),
    Profile(String),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Profile(n) => write!(f, "profile {n}"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(fl) => write!(f, "flag {fl}"),
        }
    }
}

/// Settings of one precedence level: dotted path (`server.port`) → value.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    entries: Vec<(String, Value, Source)>,
}

impl Layer {
    pub fn set(&mut self, path: &str, value: impl Into<Value>, source: Source) {
        self.entries.push((path.to_owned(), value.into(), source));
    }

    /// Every leaf of a YAML/JSON tree becomes one entry with the same source.
    fn from_tree(tree: &Value, source: &Source) -> Layer {
        let mut layer = Layer::default();
        let mut leaves = Vec::new();
        flatten("", tree, &mut leaves);
        for (path, value) in leaves {
            layer.set(&path, value, source.clone());
        }
        layer
    }
}

/// What the command line and the process environment contribute.
#[derive(Debug, Default, Clone)]
pub struct ConfigInputs {
    /// `--config`: must exist when given. Without it `./config.yaml` is read if present.
    pub config_file: Option<PathBuf>,
    /// `--profile`: a profile name, `auto`, or a YAML file.
    pub profile: Option<String>,
    /// `TKR_*` variables (usually `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Values of command-line flags.
    pub flags: Layer,
}

/// The effective configuration and the provenance of each value.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSources {
    pub config: Config,
    /// Dotted path → where its value came from.
    pub sources: BTreeMap<String, Source>,
    pub config_file: Option<PathBuf>,
    pub profile: Option<String>,
    /// Non-fatal findings (e.g. unknown `TKR_*` variables), to log once logging is up.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Environment variables with their own short names.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("TKR_LOG", "monitoring.log_level"),
    ("TKR_MODEL", "model.name"),
    ("TKR_DATA_DIR", "storage.data_dir"),
    ("TKR_STORE", "storage.url"),
    ("TKR_API_KEYS", "server.api_keys"),
];
/// Read by the loader itself rather than mapped onto a field.
/// `TKR_OPENBLAS_CORETYPE_CHOSEN` is set by mlx-sys's BLAS kernel choice
/// when it re-executes the program; it is ours, not a setting.
const ENV_CONTROL: &[&str] = &["TKR_CONFIG", "TKR_PROFILE", "TKR_OPENBLAS_CORETYPE_CHOSEN"];

pub fn load(inputs: &ConfigInputs) -> Result<ConfigSources, ConfigError> {
    let defaults = serde_json::to_value(Config::default()).expect("Config serializes");
    let mut known = Vec::new();
    flatten("", &defaults, &mut known);
    let known: BTreeMap<String, Value> = known.into_iter().collect();

    let mut merged = defaults.clone();
    let mut sources: BTreeMap<String, Source> =
        known.keys().map(|k| (k.clone(), Source::Default)).collect();
    let mut warnings = Vec::new();

    // 1. config file
    let env_get = |name: &str| {
        inputs
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let explicit_file = inputs
        .config_file
        .clone()
        .or_else(|| env_get("TKR_CONFIG").map(PathBuf::from));
    let config_file = match explicit_file {
        Some(path) => Some(path),
        None => Some(PathBuf::from("config.yaml")).filter(|p| p.is_file()),
    };
    let mut file_profile = None;
    if let Some(path) = &config_file {
        let mut tree = read_yaml_file(path)?;
        if let Some(obj) = tree.as_object_mut() {
            file_profile = obj
                .remove("profile")
                .and_then(|v| v.as_str().map(str::to_owned));
        }
        apply(
            &mut merged,
            &mut sources,
            &known,
            &Layer::from_tree(&tree, &Source::File(path.clone())),
        )?;
    }

    // 2. memory profile: flag > env > config file
    let profile_choice = inputs
        .profile
        .clone()
        .or_else(|| env_get("TKR_PROFILE"))
        .or(file_profile);
    let mut profile_name = None;
    if let Some(choice) = profile_choice {
        let profile = profiles::resolve(&choice)?;
        let tree = profile.tree()?;
        apply(
            &mut merged,
            &mut sources,
            &known,
            &Layer::from_tree(&tree, &Source::Profile(profile.name.clone())),
        )?;
        profile_name = Some(profile.name);
    }

    // 3. environment
    let mut env_layer = Layer::default();
    for (var, raw) in &inputs.env {
        if !var.starts_with("TKR_") || ENV_CONTROL.contains(&var.as_str()) {
            continue;
        }
        let path = ENV_ALIASES
            .iter()
            .find(|(alias, _)| alias == var)
            .map(|(_, p)| (*p).to_owned())
            .or_else(|| env_var_path(var, &known));
        let Some(path) = path else {
            warnings.push(format!("ignoring unknown environment variable {var}"));
            continue;
        };
        let value = parse_env_value(raw, &known[&path]).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        env_layer.set(&path, value, Source::Env(var.clone()));
    }
    apply(&mut merged, &mut sources, &known, &env_layer)?;

    // 4. flags
    apply(&mut merged, &mut sources, &known, &inputs.flags)?;

    let config: Config =
        serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::Invalid {
            field: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
    config.validate()?;
    Ok(ConfigSources {
        config,
        sources,
        config_file,
        profile: profile_name,
        warnings,
    })
}

pub(super) fn read_yaml_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(&text, &path.display().to_string())
}

pub(super) fn parse_yaml(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let tree: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    match tree {
        Value::Null => Ok(Value::Object(Map::new())), // an empty file
        Value::Object(_) => Ok(tree),
        _ => Err(ConfigError::Yaml {
            path: origin.to_owned(),
            message: "the top level must be a mapping of sections".to_owned(),
        }),
    }
}

fn apply(
    merged: &mut Value,
    sources: &mut BTreeMap<String, Source>,
    known: &BTreeMap<String, Value>,
    layer: &Layer,
) -> Result<(), ConfigError> {
    for (path, value, source) in &layer.entries {
        if !known.contains_key(path) {
            return Err(ConfigError::Invalid {
                field: path.clone(),
                message: format!("unknown setting (from {source})"),
            });
        }
        let mut node = &mut *merged;
        for key in path.split('.') {
            node = node
                .as_object_mut()
                .expect("known paths run through objects")
                .entry(key)
                .or_insert(Value::Null);
        }
        *node = value.clone();
        sources.insert(path.clone(), source.clone());
    }
    Ok(())
}

/// Leaves of a tree with their dotted paths; objects are descended into.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        _ => out.push((prefix.to_owned(), value.clone())),
    }
}

/// `TKR_SERVER_MAX_BATCH_SIZE` → `server.max_batch_size`.
fn env_var_path(var: &str, known: &BTreeMap<String, Value>) -> Option<String> {
    let rest = var.strip_prefix("TKR_")?.to_ascii_lowercase();
    known
        .keys()
        .find(|path| path.replace('.', "_") == rest)
        .cloned()
}

/// Environment values are strings; give them the type of the default.
fn parse_env_value(raw: &str, default: &Value) -> Result<Value, String> {
    match default {
        Value::Bool(_) => match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Bool(true)),
            "0" | "false" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("`{raw}` is not a boolean (true/false)")),
        },
        Value::Number(_) => raw
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| raw.trim().parse::<i64>().map(Value::from))
            .map_err(|_| format!("`{raw}` is not a whole number")),
        // Lists (api_keys) are comma-separated, or JSON when they need
        // more than strings (scoped keys). The JSON error names a position,
        // never the text, which may hold a key.
        Value::Array(_) if raw.trim_start().starts_with('[') => {
            match serde_json::from_str::<Value>(raw) {
                Ok(list @ Value::Array(_)) => Ok(list),
                Ok(_) => Err("a value starting with `[` must be a JSON list".to_owned()),
                Err(e) => Err(format!("not a valid JSON list ({e})")),
            }
        }
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        _ => Ok(Value::String(raw.to_owned())),
    }
}
