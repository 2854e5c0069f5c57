//! Metadata filters for search.
//!
//! # JSON form
//!
//! A filter is one JSON object of one of these shapes:
//!
//! | shape | matches when |
//! |---|---|
//! | `{"field": "lang", "eq": "en"}` | the metadata field equals the value |
//! | `{"field": "tag", "in": ["a", "b"]}` | the field equals one of the values |
//! | `{"field": "year", "gte": 2020, "lt": 2024}` | the field is a number within all the given bounds (`gt`, `gte`, `lt`, `lte`, any combination) |
//! | `{"and": [F, ...]}` | every sub-filter matches (an empty list matches everything) |
//! | `{"or": [F, ...]}` | at least one sub-filter matches (an empty list matches nothing) |
//! | `{"not": F}` | the sub-filter does not match |
//! | `{"modality": "image"}` or `{"modality": ["image", "video"]}` | the document's modality is one of those |
//! | `{"collection": "photos"}` or `{"collection": ["a", "b"]}` | the searched collection is one of those |
//!
//! Example:
//! `{"and":[{"field":"lang","eq":"en"},{"field":"year","gte":2020},{"not":{"field":"tag","in":["a","b"]}},{"modality":"image"}]}`
//!
//! Semantics:
//! - `field` names a key of the metadata object; a dotted name (`"camera.make"`)
//!   reaches into nested objects when no top-level key has the dotted name.
//! - Numbers compare by value (`1` equals `1.0`); other values by JSON equality.
//! - When the field holds an array, `eq`, `in` and ranges match if any element does
//!   (so `{"field":"tags","eq":"cat"}` finds `{"tags":["cat","dog"]}`).
//! - A missing field matches no `eq`/`in`/range condition (and so matches `not` of one).
//! - Ranges only match numbers.
//!
//! Anything else (unknown keys, two kinds of condition on one field, bad
//! values, nesting deeper than [`MAX_DEPTH`]) is a [`FilterError`] naming what
//! is wrong.
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::types::Modality;

/// Deepest accepted nesting of `and` / `or` / `not`.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Error, PartialEq)]
#[error("bad filter at {path}: {message}")]
pub struct FilterError {
    /// Where in the filter (JSON-pointer-like, `$` is the root).
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A parsed filter. Build it from JSON ([`Filter::from_json`], `str::parse`,
/// or serde) or directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Field { field: String, cond: Condition },
    Modality(Vec<Modality>),
    Collection(Vec<String>),
}

/// A condition on one metadata field.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    In(Vec<Value>),
    Range {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
}

/// What a filter is evaluated against.
pub struct FilterTarget<'a> {
    pub collection: &'a str,
    pub modality: Modality,
    pub metadata: &'a Map<String, Value>,
}

impl Filter {
    /// Parses the JSON form described in the module docs.
    pub fn from_json(value: &Value) -> Result<Filter, FilterError> {
        parse(value, "$", 0)
    }

    /// Convenience: `{"field": field, "eq": value}`.
    pub fn eq(field: &str, value: impl Into<Value>) -> Filter {
        Filter::Field {
            field: field.to_owned(),
            cond: Condition::Eq(value.into()),
        }
    }

    pub fn matches(&self, target: &FilterTarget<'_>) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(target)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(target)),
            Filter::Not(f) => !f.matches(target),
            Filter::Modality(ms) => ms.contains(&target.modality),
            Filter::Collection(cs) => cs.iter().any(|c| c == target.collection),
            Filter::Field { field, cond } => match lookup(target.metadata, field) {
                None => false,
                Some(Value::Array(items)) => items.iter().any(|v| cond.matches(v)),
                Some(v) => cond.matches(v),
            },
        }
    }

    pub fn to_json(&self) -> Value {
        Value::from(self.clone())
    }
}

impl Condition {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Condition::Eq(expected) => json_eq(expected, value),
            Condition::In(options) => options.iter().any(|o| json_eq(o, value)),
            Condition::Range { gt, gte, lt, lte } => {
                let Some(x) = value.as_f64() else {
                    return false;
                };
                gt.is_none_or(|b| x > b)
                    && gte.is_none_or(|b| x >= b)
                    && lt.is_none_or(|b| x < b)
                    && lte.is_none_or(|b| x <= b)
            }
        }
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// The value a filter's `field` names (see the module docs).
pub(crate) fn lookup<'a>(metadata: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    if let Some(v) = metadata.get(field) {
        return Some(v);
    }
    if !field.contains('.') {
        return None;
    }
    let mut parts = field.split('.');
    let mut current = metadata.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn parse(value: &Value, path: &str, depth: usize) -> Result<Filter, FilterError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let Value::Object(obj) = value else {
        return Err(err(
            path,
            format!("expected a JSON object, got {}", kind(value)),
        ));
    };
    let has = |k: &str| obj.contains_key(k);
    let only = |allowed: &[&str]| -> Result<(), FilterError> {
        match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(extra) => Err(err(
                path,
                format!(
                    "unexpected key {extra:?} (allowed here: {})",
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    };
    if has("and") || has("or") {
        let op = if has("and") { "and" } else { "or" };
        only(&[op])?;
        let Value::Array(items) = &obj[op] else {
            return Err(err(path, format!("{op:?} takes an array of filters")));
        };
        let subs = items
            .iter()
            .enumerate()
            .map(|(i, v)| parse(v, &format!("{path}.{op}[{i}]"), depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if op == "and" {
            Filter::And(subs)
        } else {
            Filter::Or(subs)
        });
    }
    if has("not") {
        only(&["not"])?;
        let sub = parse(&obj["not"], &format!("{path}.not"), depth + 1)?;
        return Ok(Filter::Not(Box::new(sub)));
    }
    if has("modality") {
        only(&["modality"])?;
        let names = strings(&obj["modality"], &format!("{path}.modality"))?;
        let modalities = names
            .iter()
            .map(|n| {
                n.parse::<Modality>()
                    .map_err(|e| err(&format!("{path}.modality"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Filter::Modality(modalities));
    }
    if has("collection") {
        only(&["collection"])?;
        let names = strings(&obj["collection"], &format!("{path}.collection"))?;
        return Ok(Filter::Collection(names));
    }
    if has("field") {
        only(&["field", "eq", "in", "gt", "gte", "lt", "lte"])?;
        let Value::String(field) = &obj["field"] else {
            return Err(err(path, "\"field\" must be a string"));
        };
        if field.is_empty() {
            return Err(err(path, "\"field\" is empty"));
        }
        let range_keys = ["gt", "gte", "lt", "lte"];
        let kinds = usize::from(has("eq"))
            + usize::from(has("in"))
            + usize::from(range_keys.iter().any(|k| has(k)));
        if kinds != 1 {
            return Err(err(
                path,
                format!(
                    "field {field:?} needs exactly one condition: \"eq\", \"in\", or range bounds (gt/gte/lt/lte)"
                ),
            ));
        }
        let cond = if let Some(v) = obj.get("eq") {
            if v.is_object() {
                return Err(err(path, "\"eq\" cannot compare with an object"));
            }
            Condition::Eq(v.clone())
        } else if let Some(v) = obj.get("in") {
            let Value::Array(items) = v else {
                return Err(err(path, "\"in\" takes an array of values"));
            };
            Condition::In(items.clone())
        } else {
            let bound = |k: &str| -> Result<Option<f64>, FilterError> {
                match obj.get(k) {
                    None => Ok(None),
                    Some(v) => v
                        .as_f64()
                        .map(Some)
                        .ok_or_else(|| err(path, format!("{k:?} takes a number, got {}", kind(v)))),
                }
            };
            Condition::Range {
                gt: bound("gt")?,
                gte: bound("gte")?,
                lt: bound("lt")?,
                lte: bound("lte")?,
            }
        };
        return Ok(Filter::Field {
            field: field.clone(),
            cond,
        });
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    Err(err(
        path,
        format!(
            "expected one of \"and\", \"or\", \"not\", \"field\", \"modality\", \"collection\"; got keys {keys:?}"
        ),
    ))
}

fn strings(value: &Value, path: &str) -> Result<Vec<String>, FilterError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(err(path, format!("expected a string, got {}", kind(other)))),
            })
            .collect(),
        other => Err(err(
            path,
            format!(
                "expected a string or an array of strings, got {}",
                kind(other)
            ),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl TryFrom<Value> for Filter {
    type Error = FilterError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Filter::from_json(&value)
    }
}

impl From<Filter> for Value {
    fn from(filter: Filter) -> Value {
        use serde_json::json;
        let names = |v: Vec<String>| -> Value {
            if v.len() == 1 {
                Value::String(v.into_iter().next().unwrap_or_default())
            } else {
                Value::from(v)
            }
        };
        match filter {
            Filter::And(fs) => {
                json!({ "and": fs.into_iter().map(Value::from).collect::<Vec<_>>() })
            }
            Filter::Or(fs) => json!({ "or": fs.into_iter().map(Value::from).collect::<Vec<_>>() }),
            Filter::Not(f) => json!({ "not": Value::from(*f) }),
            Filter::Modality(ms) => json!({
                "modality": names(ms.iter().map(|m| m.as_str().to_owned()).collect())
            }),
            Filter::Collection(cs) => json!({ "collection": names(cs) }),
            Filter::Field { field, cond } => {
                let mut obj = Map::new();
                obj.insert("field".into(), Value::String(field));
                match cond {
                    Condition::Eq(v) => {
                        obj.insert("eq".into(), v);
                    }
                    Condition::In(vs) => {
                        obj.insert("in".into(), Value::Array(vs));
                    }
                    Condition::Range { gt, gte, lt, lte } => {
                        for (k, b) in [("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)] {
                            if let Some(b) = b {
                                obj.insert(k.into(), json!(b));
                            }
                        }
                    }
                }
                Value::Object(obj)
            }
        }
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| err("$", format!("not valid JSON: {e}")))?;
        Filter::from_json(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(meta: &Value, modality: Modality) -> (Map<String, Value>, Modality) {
        (meta.as_object().unwrap().clone(), modality)
    }

    fn check(filter: &str, meta: Value, modality: Modality) -> bool {
        let f: Filter = filter.parse().unwrap();
        let (m, modality) = target(&meta, modality);
        f.matches(&FilterTarget {
            collection: "c",
            modality,
            metadata: &m,
        })
    }

    #[test]
    fn example_from_docs() {
        let f = r#"{"and":[{"field":"lang","eq":"en"},{"field":"year","gte":2020},{"not":{"field":"tag","in":["a","b"]}},{"modality":"image"}]}"#;
        assert!(check(
            f,
            json!({"lang":"en","year":2021,"tag":"c"}),
            Modality::Image
        ));
        assert!(!check(
            f,
            json!({"lang":"en","year":2021,"tag":"a"}),
            Modality::Image
        ));
        assert!(!check(f, json!({"lang":"en","year":2019}), Modality::Image));
        assert!(!check(f, json!({"lang":"en","year":2021}), Modality::Text));
        assert!(check(
            f,
            json!({"lang":"en","year":2020.0}),
            Modality::Image
        ));
    }

    #[test]
    fn semantics() {
        assert!(check(
            r#"{"field":"n","eq":1}"#,
            json!({"n":1.0}),
            Modality::Text
        ));
        assert!(check(
            r#"{"field":"tags","eq":"cat"}"#,
            json!({"tags":["dog","cat"]}),
            Modality::Text
        ));
        assert!(check(
            r#"{"field":"a.b","lt":3}"#,
            json!({"a":{"b":2}}),
            Modality::Text
        ));
        assert!(!check(
            r#"{"field":"missing","eq":1}"#,
            json!({}),
            Modality::Text
        ));
        assert!(check(
            r#"{"not":{"field":"missing","eq":1}}"#,
            json!({}),
            Modality::Text
        ));
        assert!(!check(
            r#"{"field":"s","gt":1}"#,
            json!({"s":"5"}),
            Modality::Text
        ));
        assert!(check(
            r#"{"or":[{"modality":["video","image"]},{"collection":"c"}]}"#,
            json!({}),
            Modality::Text
        ));
        assert!(!check(r#"{"or":[]}"#, json!({}), Modality::Text));
        assert!(check(r#"{"and":[]}"#, json!({}), Modality::Text));
    }

    #[test]
    fn bad_filters_are_explained() {
        let bad = [
            (r#"[1]"#, "expected a JSON object"),
            (r#"{"field":"x"}"#, "exactly one condition"),
            (r#"{"field":"x","eq":1,"in":[1]}"#, "exactly one condition"),
            (r#"{"field":"x","gte":"a"}"#, "takes a number"),
            (
                r#"{"field":"x","eq":1,"bogus":2}"#,
                "unexpected key \"bogus\"",
            ),
            (r#"{"and":{"field":"x","eq":1}}"#, "takes an array"),
            (r#"{"modality":"sound"}"#, "unknown modality"),
            (r#"{"and":[{"fild":"x"}]}"#, "$.and[0]"),
            (r#"{"field":"x","in":3}"#, "takes an array"),
            (r#"not json"#, "not valid JSON"),
        ];
        for (text, needle) in bad {
            let e = text.parse::<Filter>().unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn json_roundtrip() {
        let text = r#"{"and":[{"field":"lang","eq":"en"},{"field":"year","gte":2020.0,"lt":2030.0},{"not":{"field":"tag","in":["a","b"]}},{"modality":"image"},{"collection":["x","y"]}]}"#;
        let f: Filter = text.parse().unwrap();
        let back: Filter = serde_json::from_value(f.to_json()).unwrap();
        assert_eq!(f, back);
        let via_serde: Filter = serde_json::from_str(text).unwrap();
        assert_eq!(f, via_serde);
    }
}
