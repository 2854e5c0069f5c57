//! Configuration: precedence of layers, provenance, validation messages.
use std::path::PathBuf;

use tkr_embed::config::{detect_profile, load, ConfigInputs, Layer, Quantization, Source};

fn write_yaml(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let loaded = load(&ConfigInputs::default()).unwrap();
    assert_eq!(loaded.config, tkr_embed::config::Config::default());
    assert_eq!(loaded.config.model.quantization, Quantization::Auto);
    assert_eq!(loaded.config.processing.image_min_pixels, 200_704);
    assert_eq!(loaded.config.processing.image_max_pixels, 1_003_520);
    assert!(loaded.sources.values().all(|s| *s == Source::Default));
    assert!(loaded.sources.contains_key("server.port"));
}

#[test]
fn each_layer_overrides_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_yaml(
        &dir,
        "config.yaml",
        "model:\n  quantization: q8\n  group_size: 32\nserver:\n  port: 1000\n  host: 0.0.0.0\noptimization:\n  cache_size: 7\nmonitoring:\n  log_level: debug\n",
    );
    let mut flags = Layer::default();
    flags.set(
        "monitoring.log_level",
        "trace",
        Source::Flag("--log-level".into()),
    );
    let inputs = ConfigInputs {
        config_file: Some(file.clone()),
        profile: Some("m1_16gb".into()),
        env: env(&[
            ("TKR_SERVER_PORT", "2000"),
            ("TKR_LOG", "warn"),
            ("HOME", "/x"),
        ]),
        flags,
    };
    let loaded = load(&inputs).unwrap();
    let c = &loaded.config;
    // file only
    assert_eq!(c.server.host, "0.0.0.0");
    assert_eq!(loaded.sources["server.host"], Source::File(file.clone()));
    // profile beats file
    assert_eq!(c.model.quantization, Quantization::Q4);
    assert_eq!(c.model.group_size, 64);
    assert_eq!(c.optimization.cache_size, 5000);
    assert_eq!(
        loaded.sources["model.quantization"],
        Source::Profile("m1_16gb".into())
    );
    // env beats file
    assert_eq!(c.server.port, 2000);
    assert_eq!(
        loaded.sources["server.port"],
        Source::Env("TKR_SERVER_PORT".into())
    );
    // flag beats env beats file
    assert_eq!(c.monitoring.log_level.as_str(), "trace");
    assert_eq!(
        loaded.sources["monitoring.log_level"],
        Source::Flag("--log-level".into())
    );
    // untouched
    assert_eq!(
        loaded.sources["processing.max_video_frames"],
        Source::Default
    );
    assert_eq!(loaded.profile.as_deref(), Some("m1_16gb"));
}

#[test]
fn config_file_can_name_a_profile_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_yaml(&dir, "c.yaml", "profile: m1_64gb\n");
    let mut inputs = ConfigInputs {
        config_file: Some(file),
        ..Default::default()
    };
    assert_eq!(
        load(&inputs).unwrap().config.model.quantization,
        Quantization::None
    );
    inputs.profile = Some("m1_32gb".into());
    assert_eq!(
        load(&inputs).unwrap().config.model.quantization,
        Quantization::Q8
    );
}

#[test]
fn profile_can_be_a_yaml_file() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_yaml(&dir, "mine.yaml", "server:\n  max_batch_size: 3\n");
    let loaded = load(&ConfigInputs {
        profile: Some(profile.display().to_string()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(loaded.config.server.max_batch_size, 3);
}

#[test]
fn auto_profile_picks_by_memory() {
    const GIB: u64 = 1 << 30;
    assert_eq!(detect_profile(16 * GIB), "m1_16gb");
    assert_eq!(detect_profile(8 * GIB), "m1_16gb");
    assert_eq!(detect_profile(32 * GIB), "m1_32gb");
    assert_eq!(detect_profile(64 * GIB), "m1_64gb");
    assert_eq!(detect_profile(192 * GIB), "m1_64gb");
    let loaded = load(&ConfigInputs {
        profile: Some("auto".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(loaded.profile.unwrap().starts_with("auto → m1_"));
}

fn load_err(inputs: ConfigInputs) -> String {
    load(&inputs).unwrap_err().to_string()
}

#[test]
fn bad_enum_value_names_field_and_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_yaml(&dir, "c.yaml", "model:\n  quantization: q5\n");
    let msg = load_err(ConfigInputs {
        config_file: Some(file),
        ..Default::default()
    });
    assert!(msg.contains("model.quantization"), "{msg}");
    for allowed in ["auto", "q4", "q8", "none"] {
        assert!(msg.contains(allowed), "{msg}");
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let msg = load_err(ConfigInputs {
        env: env(&[("TKR_SERVER_PORT", "eighty")]),
        ..Default::default()
    });
    assert!(
        msg.contains("TKR_SERVER_PORT") && msg.contains("eighty"),
        "{msg}"
    );
    let msg = load_err(ConfigInputs {
        env: env(&[("TKR_PROCESSING_VIDEO_POOLING", "median")]),
        ..Default::default()
    });
    assert!(
        msg.contains("processing.video_pooling") && msg.contains("mean"),
        "{msg}"
    );
}

#[test]
fn unknown_settings_and_profiles_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_yaml(&dir, "c.yaml", "server:\n  prot: 80\n");
    let msg = load_err(ConfigInputs {
        config_file: Some(file),
        ..Default::default()
    });
    assert!(
        msg.contains("server.prot") && msg.contains("unknown setting"),
        "{msg}"
    );
    let msg = load_err(ConfigInputs {
        profile: Some("m2_8gb".into()),
        ..Default::default()
    });
    assert!(msg.contains("m2_8gb") && msg.contains("m1_16gb"), "{msg}");
}

#[test]
fn cross_field_rules_are_checked() {
    let msg = load_err(ConfigInputs {
        env: env(&[("TKR_PROCESSING_IMAGE_MIN_PIXELS", "2000000")]),
        ..Default::default()
    });
    assert!(msg.contains("processing.image_min_pixels"), "{msg}");
    let msg = load_err(ConfigInputs {
        env: env(&[("TKR_MODEL_GROUP_SIZE", "48")]),
        ..Default::default()
    });
    assert!(
        msg.contains("model.group_size") && msg.contains("128"),
        "{msg}"
    );
    let msg = load_err(ConfigInputs {
        env: env(&[("TKR_SERVER_MAX_BATCH_SIZE", "0")]),
        ..Default::default()
    });
    assert!(msg.contains("server.max_batch_size"), "{msg}");
}

#[test]
fn missing_explicit_config_file_is_an_error() {
    let msg = load_err(ConfigInputs {
        config_file: Some("/nonexistent/tkr.yaml".into()),
        ..Default::default()
    });
    assert!(msg.contains("/nonexistent/tkr.yaml"), "{msg}");
}

#[test]
fn invalid_yaml_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_yaml(&dir, "c.yaml", "model: [unclosed\n");
    let msg = load_err(ConfigInputs {
        config_file: Some(file.clone()),
        ..Default::default()
    });
    assert!(msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn example_config_file_equals_the_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let loaded = load(&ConfigInputs {
        config_file: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(loaded.config, tkr_embed::config::Config::default());
}

#[test]
fn internal_variables_are_not_reported_as_unknown_settings() {
    // Set by the BLAS kernel choice when the program re-executes itself.
    let loaded = load(&ConfigInputs {
        env: vec![
            ("TKR_OPENBLAS_CORETYPE_CHOSEN".into(), "1".into()),
            ("TKR_SERVER_MAX_K".into(), "50".into()),
            ("TKR_NO_SUCH_SETTING".into(), "1".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(loaded.config.server.max_k, 50);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("TKR_NO_SUCH_SETTING"));
}

#[test]
fn scoped_keys_from_the_environment_are_a_json_list() {
    use tkr_embed::config::Scope;
    let loaded = load(&ConfigInputs {
        env: env(&[(
            "TKR_API_KEYS",
            r#"[{"key": "env-key-1", "scope": "write", "rate_per_sec": 3}, "env-key-2"]"#,
        )]),
        ..Default::default()
    })
    .unwrap();
    let keys = &loaded.config.server.api_keys;
    assert_eq!(keys[0].scope, Scope::Write);
    assert_eq!(keys[0].rate_limit().unwrap().burst, 3);
    assert_eq!(keys[1].scope, Scope::Admin);
    assert_eq!(keys[1].key.expose(), "env-key-2");
    // Broken JSON: the message names the variable, not the text.
    let msg = load_err(ConfigInputs {
        env: env(&[("TKR_API_KEYS", r#"[{"key": "env-secret", "scope": "read""#)]),
        ..Default::default()
    });
    assert!(
        msg.contains("TKR_API_KEYS") && msg.contains("JSON"),
        "{msg}"
    );
    assert!(!msg.contains("env-secret"), "{msg}");
}

#[test]
fn the_store_comes_from_tkr_store_and_prints_without_its_password() {
    use tkr_embed::db::StoreLocation;
    let loaded = load(&ConfigInputs::default()).unwrap();
    assert_eq!(
        loaded.config.storage.location(),
        StoreLocation::Embedded(PathBuf::from("./tkr-data"))
    );
    let url = "postgres://tkr:hunter2@db.internal:5432/media";
    let loaded = load(&ConfigInputs {
        env: env(&[("TKR_STORE", url)]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        loaded.config.storage.location(),
        StoreLocation::Postgres(url.to_owned())
    );
    let shown = serde_json::to_value(&loaded.config).unwrap();
    assert_eq!(
        shown["storage"]["url"],
        "postgres://tkr:***@db.internal:5432/media"
    );
    assert!(!shown.to_string().contains("hunter2"));
    let loaded = load(&ConfigInputs {
        env: env(&[("TKR_STORE", "sled:/srv/tkr")]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        loaded.config.storage.location(),
        StoreLocation::Embedded(PathBuf::from("/srv/tkr"))
    );
}
