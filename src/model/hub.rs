//! Where a model comes from: a local directory, or a Hugging Face repo id
//! downloaded (with progress bars, resumable) into the standard HF cache.
use std::path::{Path, PathBuf};

use hf_hub::{api::sync::ApiBuilder, Cache, Repo};

use super::ModelError;

/// Files every model needs besides its weights.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// A local directory as is; otherwise a hub repo id (`owner/name`) resolved
/// to its snapshot directory in the HF cache (downloading what is missing
/// unless `HF_HUB_OFFLINE=1`).
pub fn resolve_model(name: &str, cache_dir: Option<&Path>) -> Result<PathBuf, ModelError> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_owned());
    }
    if !looks_like_repo_id(name) {
        return Err(ModelError::Download(format!(
            "model directory {name} does not exist (give a local directory with config.json, \
             tokenizer.json and safetensors, or a Hugging Face repo id like owner/name)"
        )));
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    if offline {
        return from_cache(name, cache_dir).ok_or_else(|| {
            ModelError::Download(format!(
                "{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; \
                 download it elsewhere and pass its directory with --model DIR"
            ))
        });
    }
    download(name, cache_dir).map_err(|e| {
        ModelError::Download(format!(
            "cannot download {name}: {e}. Without network access, pass a local model \
             directory with --model DIR (or set HF_HUB_OFFLINE=1 to use the cache only)"
        ))
    })
}

fn looks_like_repo_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn cache(cache_dir: Option<&Path>) -> Cache {
    match cache_dir {
        Some(dir) => Cache::new(dir.to_owned()),
        None => Cache::from_env(),
    }
}

/// The snapshot directory if every needed file is already cached.
fn from_cache(name: &str, cache_dir: Option<&Path>) -> Option<PathBuf> {
    let repo = cache(cache_dir).repo(Repo::model(name.to_owned()));
    let config = repo.get("config.json")?;
    for f in REQUIRED {
        repo.get(f)?;
    }
    for f in weight_file_names(&|f| repo.get(f))? {
        repo.get(&f)?;
    }
    config.parent().map(Path::to_owned)
}

fn download(name: &str, cache_dir: Option<&Path>) -> Result<PathBuf, String> {
    let mut builder = ApiBuilder::from_env().with_progress(true);
    if let Some(dir) = cache_dir {
        builder = builder.with_cache_dir(dir.to_owned());
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    let repo = api.model(name.to_owned());
    let mut config = None;
    for f in REQUIRED {
        let p = repo.get(f).map_err(|e| format!("{f}: {e}"))?;
        config.get_or_insert(p);
    }
    let weights =
        weight_file_names(&|f| repo.get(f).ok()).ok_or("no safetensors weights in the repo")?;
    for f in weights {
        repo.get(&f).map_err(|e| format!("{f}: {e}"))?;
    }
    let config = config.expect("REQUIRED is not empty");
    Ok(config.parent().map(Path::to_owned).unwrap_or_default())
}

/// The weight files named by the shard index, or the single file.
fn weight_file_names(get: &dyn Fn(&str) -> Option<PathBuf>) -> Option<Vec<String>> {
    if let Some(index) = get(INDEX) {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(index).ok()?).ok()?;
        let mut files: Vec<String> = json["weight_map"]
            .as_object()?
            .values()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        return Some(files);
    }
    get(SINGLE).map(|_| vec![SINGLE.to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_from_paths() {
        assert!(looks_like_repo_id("OpenSearch-AI/Ops-MM-embedding-v1-7B"));
        assert!(!looks_like_repo_id("./models/x"));
        assert!(!looks_like_repo_id("/abs/path"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("plainname"));
    }

    #[test]
    fn offline_without_cache_says_how_to_pass_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let err = resolve_model("nobody/nothing", Some(dir.path())).unwrap_err();
        std::env::remove_var("HF_HUB_OFFLINE");
        let msg = err.to_string();
        assert!(msg.contains("--model DIR"), "{msg}");
    }

    #[test]
    fn a_cached_snapshot_is_found_offline() {
        // Lay out the HF cache structure by hand: models--o--n/{refs/main, snapshots/<rev>/..}.
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--o--n");
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snap.join(f), "{}").unwrap();
        }
        assert_eq!(from_cache("o/n", Some(dir.path())), Some(snap));
    }
}
