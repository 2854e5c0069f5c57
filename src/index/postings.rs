//! Inverted index from metadata values (and modalities) to documents, so a
//! filter's matching set is found without evaluating it on every document.
//!
//! Documents are known here by a `u32` key (the index uses a document's
//! first label). Every value a [`Filter`] could match is posted: for each
//! field path the filter's own lookup resolves (top-level keys and dotted
//! paths into nested objects), the scalar value there, or each scalar
//! element of an array there. Numbers are kept in order per field, so
//! ranges are walks over a B-tree.
//!
//! [`Postings::matching`] returns the exact set of documents a filter
//! matches, or `None` when postings cannot answer it exactly (`eq`/`in`
//! with integers from ±2^53 on, whose equality is not float equality, or a
//! value that is not a scalar); the caller then evaluates the filter on
//! every document as before.
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::filter::{lookup, Condition, Filter};
use crate::types::Modality;

/// A number as a B-tree key: ordered by value, `-0.0` stored as `0.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Number(f64);

impl Eq for Number {}
impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Number {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Number {
    fn new(x: f64) -> Number {
        Number(if x == 0.0 { 0.0 } else { x })
    }
}

/// A non-numeric scalar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scalar {
    Null,
    Bool(bool),
    Str(Box<str>),
}

#[derive(Debug, Default)]
struct FieldPostings {
    scalars: HashMap<Scalar, RoaringBitmap>,
    numbers: BTreeMap<Number, RoaringBitmap>,
}

/// From this magnitude on, integers compare unequal that are equal as
/// floats (the postings' number key): such `eq` values are not answered.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

fn exact_integer(n: &serde_json::Number) -> bool {
    !(n.as_i64().is_some_and(|i| (i as f64).abs() >= EXACT_INT)
        || n.as_u64().is_some_and(|u| u as f64 >= EXACT_INT))
}

/// The postings of one collection.
#[derive(Debug, Default)]
pub struct Postings {
    fields: HashMap<Box<str>, FieldPostings>,
    modalities: HashMap<Modality, RoaringBitmap>,
    all: RoaringBitmap,
}

impl Postings {
    pub fn len(&self) -> u64 {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn insert(&mut self, key: u32, modality: Modality, metadata: &Map<String, Value>) {
        self.all.insert(key);
        self.modalities.entry(modality).or_default().insert(key);
        for_each_posted(metadata, |path, value| {
            let field = match self.fields.get_mut(path) {
                Some(f) => f,
                None => self.fields.entry(path.into()).or_default(),
            };
            let bits = match value {
                Value::Number(n) => match n.as_f64() {
                    Some(x) => field.numbers.entry(Number::new(x)).or_default(),
                    None => return,
                },
                other => match scalar(other) {
                    Some(s) => field.scalars.entry(s).or_default(),
                    None => return,
                },
            };
            bits.insert(key);
        });
    }

    /// Undoes [`Postings::insert`] (same arguments).
    pub fn remove(&mut self, key: u32, modality: Modality, metadata: &Map<String, Value>) {
        self.all.remove(key);
        if let Some(bits) = self.modalities.get_mut(&modality) {
            bits.remove(key);
        }
        for_each_posted(metadata, |path, value| {
            let Some(field) = self.fields.get_mut(path) else {
                return;
            };
            match value {
                Value::Number(n) => {
                    if let Some(x) = n.as_f64() {
                        let k = Number::new(x);
                        if let Some(bits) = field.numbers.get_mut(&k) {
                            bits.remove(key);
                            if bits.is_empty() {
                                field.numbers.remove(&k);
                            }
                        }
                    }
                }
                other => {
                    if let Some(s) = scalar(other) {
                        if let Some(bits) = field.scalars.get_mut(&s) {
                            bits.remove(key);
                            if bits.is_empty() {
                                field.scalars.remove(&s);
                            }
                        }
                    }
                }
            }
            if field.scalars.is_empty() && field.numbers.is_empty() {
                self.fields.remove(path);
            }
        });
    }

    /// The documents `filter` matches in collection `collection`, or `None`
    /// when postings cannot answer it exactly (see the module docs).
    pub fn matching(&self, filter: &Filter, collection: &str) -> Option<RoaringBitmap> {
        Some(match filter {
            Filter::And(parts) => {
                let mut acc: Option<RoaringBitmap> = None;
                for part in parts {
                    let bits = self.matching(part, collection)?;
                    acc = Some(match acc {
                        None => bits,
                        Some(a) => a & bits,
                    });
                    if acc.as_ref().is_some_and(RoaringBitmap::is_empty) {
                        break;
                    }
                }
                acc.unwrap_or_else(|| self.all.clone())
            }
            Filter::Or(parts) => {
                let mut acc = RoaringBitmap::new();
                for part in parts {
                    acc |= self.matching(part, collection)?;
                }
                acc
            }
            Filter::Not(inner) => &self.all - self.matching(inner, collection)?,
            Filter::Modality(ms) => ms
                .iter()
                .filter_map(|m| self.modalities.get(m))
                .fold(RoaringBitmap::new(), |acc, b| acc | b),
            Filter::Collection(cs) => match cs.iter().any(|c| c == collection) {
                true => self.all.clone(),
                false => RoaringBitmap::new(),
            },
            Filter::Field { field, cond } => {
                let Some(postings) = self.fields.get(field.as_str()) else {
                    // No document has a value there: nothing matches (a
                    // condition on a value postings cannot hold still needs
                    // the scan).
                    return answerable(cond).then(RoaringBitmap::new);
                };
                match cond {
                    Condition::Eq(v) => postings.equal(v)?,
                    Condition::In(vs) => {
                        let mut acc = RoaringBitmap::new();
                        for v in vs {
                            acc |= postings.equal(v)?;
                        }
                        acc
                    }
                    Condition::Range { gt, gte, lt, lte } => {
                        postings.range(lower(*gt, *gte), upper(*lt, *lte))
                    }
                }
            }
        })
    }
}

impl FieldPostings {
    fn equal(&self, value: &Value) -> Option<RoaringBitmap> {
        let found = match value {
            Value::Number(n) => {
                if !exact_integer(n) {
                    return None;
                }
                self.numbers.get(&Number::new(n.as_f64()?))
            }
            other => self.scalars.get(&scalar(other)?),
        };
        Some(found.cloned().unwrap_or_default())
    }

    fn range(&self, low: Bound<Number>, high: Bound<Number>) -> RoaringBitmap {
        // An empty interval (B-tree ranges panic on some of those).
        let both_included = matches!((low, high), (Bound::Included(_), Bound::Included(_)));
        let empty = match (low, high) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a > b || (a == b && !both_included)
            }
            _ => false,
        };
        if empty {
            return RoaringBitmap::new();
        }
        self.numbers
            .range((low, high))
            .fold(RoaringBitmap::new(), |acc, (_, b)| acc | b)
    }
}

/// Whether postings answer `cond` exactly (its values are scalars).
fn answerable(cond: &Condition) -> bool {
    let ok = |v: &Value| match v {
        Value::Number(n) => exact_integer(n),
        other => scalar(other).is_some(),
    };
    match cond {
        Condition::Eq(v) => ok(v),
        Condition::In(vs) => vs.iter().all(ok),
        Condition::Range { .. } => true,
    }
}

/// The tighter of `gt` / `gte` as a lower bound.
fn lower(gt: Option<f64>, gte: Option<f64>) -> Bound<Number> {
    match (gt, gte) {
        (Some(a), Some(b)) if a >= b => Bound::Excluded(Number::new(a)),
        (_, Some(b)) => Bound::Included(Number::new(b)),
        (Some(a), None) => Bound::Excluded(Number::new(a)),
        (None, None) => Bound::Unbounded,
    }
}

/// The tighter of `lt` / `lte` as an upper bound.
fn upper(lt: Option<f64>, lte: Option<f64>) -> Bound<Number> {
    match (lt, lte) {
        (Some(a), Some(b)) if a <= b => Bound::Excluded(Number::new(a)),
        (_, Some(b)) => Bound::Included(Number::new(b)),
        (Some(a), None) => Bound::Excluded(Number::new(a)),
        (None, None) => Bound::Unbounded,
    }
}

fn scalar(value: &Value) -> Option<Scalar> {
    match value {
        Value::Null => Some(Scalar::Null),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::String(s) => Some(Scalar::Str(s.as_str().into())),
        _ => None,
    }
}

/// Calls `f(path, value)` for every (field path, scalar) a filter condition
/// could match in `metadata`: each path is resolved with the filter's own
/// lookup, so precedence between a top-level `"a.b"` key and nested
/// `a → b` is the same; arrays contribute their scalar elements.
fn for_each_posted(metadata: &Map<String, Value>, mut f: impl FnMut(&str, &Value)) {
    let mut paths: Vec<String> = Vec::new();
    collect_paths(metadata, "", &mut paths);
    paths.sort_unstable();
    paths.dedup();
    for path in &paths {
        match lookup(metadata, path) {
            Some(Value::Array(items)) => {
                for item in items {
                    if !matches!(item, Value::Array(_) | Value::Object(_)) {
                        f(path, item);
                    }
                }
            }
            Some(Value::Object(_)) | None => {}
            Some(value) => f(path, value),
        }
    }
}

fn collect_paths(object: &Map<String, Value>, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in object {
        let path = format!("{prefix}{key}");
        if let Value::Object(inner) = value {
            collect_paths(inner, &format!("{path}."), out);
        }
        out.push(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::filter::FilterTarget;
    use serde_json::json;

    fn docs() -> Vec<(Modality, Map<String, Value>)> {
        let raw = [
            json!({"lang": "en", "year": 2021, "tags": ["cat", "dog"], "camera": {"make": "Nikon"}}),
            json!({"lang": "de", "year": 2019.5, "tags": "cat", "a.b": 1, "a": {"b": 2}}),
            json!({"lang": "en", "year": -0.0, "ok": true, "none": null}),
            json!({"year": 9007199254740993u64, "nested": {"deep": {"x": [1, [2], {"y": 3}]}}}),
            json!({"lang": ["en", "fr"], "year": "2021", "rating": 4.5}),
            json!({}),
        ];
        raw.iter()
            .enumerate()
            .map(|(i, v)| {
                let m = if i % 2 == 0 {
                    Modality::Image
                } else {
                    Modality::Text
                };
                (m, v.as_object().unwrap().clone())
            })
            .collect()
    }

    /// Postings agree with evaluating the filter on every document, for
    /// every shape, and after removals.
    #[test]
    fn matching_equals_the_filter_on_every_document() {
        let filters = [
            json!({"field": "lang", "eq": "en"}),
            json!({"field": "lang", "in": ["de", "fr"]}),
            json!({"field": "year", "gte": 2000}),
            json!({"field": "year", "gt": 2019.5, "lte": 2021}),
            json!({"field": "year", "gte": 2022, "lt": 2000}),
            json!({"field": "year", "eq": 0}),
            json!({"field": "year", "eq": 2021.0}),
            json!({"field": "tags", "eq": "cat"}),
            json!({"field": "camera.make", "eq": "Nikon"}),
            json!({"field": "a.b", "eq": 1}),
            json!({"field": "a.b", "eq": 2}),
            json!({"field": "nested.deep.x", "eq": 1}),
            json!({"field": "ok", "eq": true}),
            json!({"field": "none", "eq": null}),
            json!({"field": "missing", "eq": 1}),
            json!({"not": {"field": "lang", "eq": "en"}}),
            json!({"and": [{"field": "lang", "eq": "en"}, {"modality": "image"}]}),
            json!({"or": [{"field": "rating", "gt": 4}, {"field": "ok", "eq": true}]}),
            json!({"and": []}),
            json!({"or": []}),
            json!({"collection": "c"}),
            json!({"collection": ["x", "y"]}),
        ];
        let docs = docs();
        let mut postings = Postings::default();
        for (i, (m, meta)) in docs.iter().enumerate() {
            postings.insert(i as u32, *m, meta);
        }
        let check = |postings: &Postings, live: &[usize]| {
            for f in &filters {
                let filter = Filter::from_json(f).unwrap();
                let expected: Vec<u32> = live
                    .iter()
                    .filter(|&&i| {
                        filter.matches(&FilterTarget {
                            collection: "c",
                            modality: docs[i].0,
                            metadata: &docs[i].1,
                        })
                    })
                    .map(|&i| i as u32)
                    .collect();
                let got: Vec<u32> = postings.matching(&filter, "c").unwrap().iter().collect();
                assert_eq!(got, expected, "{f}");
            }
        };
        check(&postings, &[0, 1, 2, 3, 4, 5]);
        for i in [1, 4] {
            postings.remove(i as u32, docs[i].0, &docs[i].1);
        }
        check(&postings, &[0, 2, 3, 5]);
    }

    #[test]
    fn unanswerable_shapes_fall_back() {
        let mut postings = Postings::default();
        let meta = json!({"year": 9007199254740993u64});
        postings.insert(0, Modality::Text, meta.as_object().unwrap());
        // Integers this large are equal as floats but not as integers.
        for f in [
            json!({"field": "year", "eq": 9007199254740993u64}),
            json!({"field": "year", "eq": -9007199254740992i64}),
            json!({"field": "nope", "in": [1, 9007199254740993u64]}),
            json!({"not": {"field": "year", "in": [9007199254740992u64]}}),
        ] {
            let filter = Filter::from_json(&f).unwrap();
            assert!(postings.matching(&filter, "c").is_none(), "{f}");
        }
    }
}
