//! API keys (`server.api_keys`): a bearer secret each, with a scope and an
//! optional rate limit. A plain string is a key with every right and no
//! limit, so configurations written before scopes existed mean what they
//! meant then.
//!
//! The secret never leaves this type by accident: [`Secret`] prints and
//! serializes as a placeholder (`config show`, `Debug` of the config, logs),
//! and no error message about a key repeats its text.
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;

/// What a key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Search, read documents and collections, embed.
    Read,
    /// Read, and insert and delete documents.
    Write,
    /// Write, and create and drop collections, and `/admin/…`.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shown wherever a key would be.
pub const REDACTED: &str = "<redacted>";

/// A key's text. `Debug` and `Serialize` show [`REDACTED`]; only
/// [`Secret::expose`] gives the text, for the comparison with a request's key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// serde's own type errors quote the value they got; for a key that would be
/// the secret (an unquoted number in YAML), so ours do not.
const NOT_A_STRING: &str = "a key must be a string (quote it in YAML)";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        struct SecretVisitor;
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// One entry of `server.api_keys`: either a plain string (scope `admin`, no
/// limit) or a mapping
///
/// ```yaml
/// - key: "…"
///   scope: read          # read | write | admin
///   rate_per_sec: 20     # optional: requests per second, refilled continuously
///   burst: 40            # optional: requests at once (default: the rate, rounded up)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub key: Secret,
    pub scope: Scope,
    /// Requests per second this key may make on average; `None`: no limit.
    pub rate_per_sec: Option<f64>,
    /// Most requests this key may make at once (its bucket's size).
    pub burst: Option<u32>,
}

/// The mapping form, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFields {
    key: Secret,
    scope: Scope,
    #[serde(default)]
    rate_per_sec: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ApiKey, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = ApiKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key string, or a mapping with key, scope, rate_per_sec, burst")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ApiKey, E> {
                Ok(ApiKey::from(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ApiKey, A::Error> {
                // Through the map itself, so a bad field's path is reported
                // (`server.api_keys[1].scope`).
                let fields = KeyFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ApiKey {
                    key: fields.key,
                    scope: fields.scope,
                    rate_per_sec: fields.rate_per_sec,
                    burst: fields.burst,
                })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ApiKey, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ApiKey, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ApiKey, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ApiKey, E> {
                Err(E::custom(NOT_A_STRING))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// A plain key: every right, no limit (what a string entry means).
impl From<&str> for ApiKey {
    fn from(key: &str) -> ApiKey {
        ApiKey {
            key: Secret(key.to_owned()),
            scope: Scope::Admin,
            rate_per_sec: None,
            burst: None,
        }
    }
}

/// A key's rate limit in effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: u32,
}

impl ApiKey {
    /// The limit, with `burst` defaulting to the rate rounded up (at least 1).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        let per_sec = self.rate_per_sec?;
        let burst = self.burst.unwrap_or_else(|| (per_sec.ceil() as u32).max(1));
        Some(RateLimit { per_sec, burst })
    }
}

/// The rules types cannot express. Messages name the entry by position,
/// never by its text.
pub(super) fn validate(keys: &[ApiKey]) -> Result<(), ConfigError> {
    let field = |i: usize, name: &str| {
        if name.is_empty() {
            format!("server.api_keys[{i}]")
        } else {
            format!("server.api_keys[{i}].{name}")
        }
    };
    for (i, k) in keys.iter().enumerate() {
        let text = k.key.expose();
        if text.trim().is_empty() {
            return Err(ConfigError::invalid(
                &field(i, "key"),
                "is empty (an empty key would let anyone in)",
            ));
        }
        // Sent in a header and trimmed there: anything else could never match.
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                &field(i, "key"),
                "must be printable ASCII without spaces (it is sent in an HTTP header)",
            ));
        }
        if let Some(first) = keys[..i].iter().position(|other| other.key == k.key) {
            return Err(ConfigError::invalid(
                &field(i, "key"),
                format!("is the same key as server.api_keys[{first}] (each key needs one scope)"),
            ));
        }
        match (k.rate_per_sec, k.burst) {
            (Some(rate), _) if !(rate.is_finite() && rate > 0.0) => {
                return Err(ConfigError::invalid(
                    &field(i, "rate_per_sec"),
                    format!("must be above 0 (got {rate}); leave it out for no limit"),
                ));
            }
            (_, Some(0)) => {
                return Err(ConfigError::invalid(
                    &field(i, "burst"),
                    "must be at least 1 (a burst of 0 would refuse every request)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    &field(i, "burst"),
                    "needs rate_per_sec (the rate that refills it)",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<ApiKey>, String> {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let keys: Vec<ApiKey> =
            serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e))?;
        validate(&keys).map_err(|e| e.to_string())?;
        Ok(keys)
    }

    #[test]
    fn plain_strings_are_admin_keys_without_limit() {
        let keys = parse("[plain-one]").unwrap();
        assert_eq!(keys, vec![ApiKey::from("plain-one")]);
        assert_eq!(keys[0].scope, Scope::Admin);
        assert_eq!(keys[0].rate_limit(), None);
    }

    #[test]
    fn mappings_carry_scope_and_limit() {
        let keys = parse(
            "- {key: r-key, scope: read, rate_per_sec: 2.5}\n- {key: w-key, scope: write, rate_per_sec: 20, burst: 40}\n",
        )
        .unwrap();
        assert_eq!(keys[0].scope, Scope::Read);
        assert_eq!(
            keys[0].rate_limit(),
            Some(RateLimit {
                per_sec: 2.5,
                burst: 3
            })
        );
        assert_eq!(
            keys[1].rate_limit(),
            Some(RateLimit {
                per_sec: 20.0,
                burst: 40
            })
        );
    }

    #[test]
    fn bad_entries_are_refused_without_showing_the_key() {
        for (yaml, expect) in [
            ("['']", "server.api_keys[0].key: is empty"),
            ("['  ']", "is empty"),
            ("['has space']", "printable ASCII"),
            (
                "[same-key, other, same-key]",
                "server.api_keys[2].key: is the same key as server.api_keys[0]",
            ),
            ("[{key: k1, scope: root}]", "unknown variant `root`"),
            ("[{key: k1}]", "missing field `scope`"),
            ("[{key: k1, scope: read, rate: 3}]", "unknown field `rate`"),
            (
                "[{key: k1, scope: read, rate_per_sec: 0}]",
                "server.api_keys[0].rate_per_sec: must be above 0",
            ),
            (
                "[{key: k1, scope: read, rate_per_sec: -1}]",
                "must be above 0",
            ),
            (
                "[{key: k1, scope: read, rate_per_sec: 1, burst: 0}]",
                "server.api_keys[0].burst: must be at least 1",
            ),
            (
                "[{key: k1, scope: read, rate_per_sec: 1, burst: -3}]",
                "burst",
            ),
            ("[{key: k1, scope: read, burst: 5}]", "needs rate_per_sec"),
            ("[123456789]", "must be a string"),
            ("[{key: 987654321, scope: read}]", "must be a string"),
        ] {
            let message = parse(yaml).expect_err(yaml);
            assert!(message.contains(expect), "{yaml}: {message}");
            for secret in ["same-key", "k1", "123456789", "987654321", "has space"] {
                assert!(!message.contains(secret), "{yaml}: {message}");
            }
        }
    }

    #[test]
    fn the_key_is_never_printed() {
        let key = ApiKey {
            rate_per_sec: Some(1.0),
            ..ApiKey::from("very-secret")
        };
        let json = serde_json::to_string(&key).unwrap();
        assert!(
            !json.contains("very-secret") && json.contains(REDACTED),
            "{json}"
        );
        let debug = format!("{key:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert_eq!(key.key.expose(), "very-secret");
    }
}
