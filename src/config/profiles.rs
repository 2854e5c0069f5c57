//! Memory profiles: partial configurations for a machine size. They are
//! compiled into the binary (so they work from any directory); a path to a
//! YAML file works too. `auto` picks one by the machine's total memory.
use std::path::Path;

use serde_json::Value;

use super::{layers, ConfigError};

pub const PROFILE_NAMES: &[&str] = &["m1_16gb", "m1_32gb", "m1_64gb"];

const BUILT_IN: &[(&str, &str)] = &[
    ("m1_16gb", include_str!("../../profiles/m1_16gb.yaml")),
    ("m1_32gb", include_str!("../../profiles/m1_32gb.yaml")),
    ("m1_64gb", include_str!("../../profiles/m1_64gb.yaml")),
];

#[derive(Debug, Clone)]
pub struct Profile {
    /// Built-in name, `auto → name`, or the file path.
    pub name: String,
    yaml: String,
}

impl Profile {
    pub fn tree(&self) -> Result<Value, ConfigError> {
        layers::parse_yaml(&self.yaml, &format!("profile {}", self.name))
    }
}

/// `auto`, a built-in name, or a path to a YAML file.
pub fn resolve(choice: &str) -> Result<Profile, ConfigError> {
    if choice == "auto" {
        let total = total_memory_bytes().unwrap_or(0);
        let name = detect_profile(total);
        let mut profile = built_in(name).expect("detect_profile returns a built-in name");
        profile.name = format!("auto → {name} ({:.0} GiB detected)", total as f64 / GIB);
        return Ok(profile);
    }
    if let Some(profile) = built_in(choice) {
        return Ok(profile);
    }
    let path = Path::new(choice);
    if path.extension().is_some_and(|e| e == "yaml" || e == "yml") && path.is_file() {
        let yaml = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        return Ok(Profile {
            name: choice.to_owned(),
            yaml,
        });
    }
    Err(ConfigError::UnknownProfile(choice.to_owned()))
}

fn built_in(name: &str) -> Option<Profile> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, y)| Profile {
            name: (*n).to_owned(),
            yaml: (*y).to_owned(),
        })
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The profile for a machine with `total_bytes` of memory. Thresholds sit
/// between the nominal sizes because the OS reports a bit less than nominal.
pub fn detect_profile(total_bytes: u64) -> &'static str {
    let gib = total_bytes as f64 / GIB;
    if gib < 24.0 {
        "m1_16gb"
    } else if gib < 48.0 {
        "m1_32gb"
    } else {
        "m1_64gb"
    }
}

/// Physical memory of this machine, if it can be read.
pub fn total_memory_bytes() -> Option<u64> {
    if cfg!(target_os = "macos") {
        let out = std::process::Command::new("sysctl")
            .args(["-n", "hw.memsize"])
            .output()
            .ok()?;
        return String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    }
    meminfo_bytes("MemTotal:")
}

/// Memory the OS can give us now (Linux `MemAvailable`); `None` elsewhere.
pub fn available_memory_bytes() -> Option<u64> {
    meminfo_bytes("MemAvailable:")
}

/// A `/proc/meminfo` field (given in KiB there), in bytes.
fn meminfo_bytes(field: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
