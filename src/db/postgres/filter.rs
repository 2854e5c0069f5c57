//! Our filter language ([`crate::index::Filter`]) as a SQL condition on the
//! documents table (alias `d`). Every value from the filter — field names
//! included — travels as a bind parameter; the SQL text is built only from
//! our own fragments and placeholder numbers.
//!
//! Semantics match the embedded index's `Filter::matches`: a field is the
//! metadata key as written, else its dotted path; a condition on a list
//! holds when it holds for one of its items; a missing field fails every
//! condition (so `not` of it holds). Equality on a plain key with a scalar
//! value is written as jsonb containment, which the GIN index on
//! `metadata` answers; the rest goes through the SQL functions of the
//! schema (`tkr_eq`, `tkr_in_range`).
use postgres::types::ToSql;
use serde_json::{json, Value};

use crate::index::filter::Condition;
use crate::index::Filter;

/// Bind parameters of a statement, in placeholder order.
#[derive(Default)]
pub struct Params {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Params {
    /// Adds a value; returns its placeholder (`$n`).
    pub fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    pub fn as_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The condition `filter` puts on a document of `collection`; never NULL.
pub fn filter_sql(filter: &Filter, collection: &str, params: &mut Params) -> String {
    match filter {
        Filter::And(parts) if parts.is_empty() => "TRUE".into(),
        Filter::Or(parts) if parts.is_empty() => "FALSE".into(),
        Filter::And(parts) => join(parts, " AND ", collection, params),
        Filter::Or(parts) => join(parts, " OR ", collection, params),
        Filter::Not(inner) => format!("(NOT {})", filter_sql(inner, collection, params)),
        Filter::Modality(modalities) => {
            let names: Vec<String> = modalities.iter().map(|m| m.as_str().to_owned()).collect();
            format!("(d.modality = ANY({}::text[]))", params.push(names))
        }
        // A search runs in one collection: this part is decided here.
        Filter::Collection(names) => match names.iter().any(|n| n == collection) {
            true => "TRUE".into(),
            false => "FALSE".into(),
        },
        Filter::Field { field, cond } => field_sql(field, cond, params),
    }
}

fn join(parts: &[Filter], op: &str, collection: &str, params: &mut Params) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|p| filter_sql(p, collection, params))
        .collect();
    format!("({})", parts.join(op))
}

fn field_sql(field: &str, cond: &Condition, params: &mut Params) -> String {
    match cond {
        Condition::Eq(value) => equals_sql(field, value, params),
        Condition::In(values) if values.is_empty() => "FALSE".into(),
        Condition::In(values) => {
            let parts: Vec<String> = values
                .iter()
                .map(|v| equals_sql(field, v, params))
                .collect();
            format!("({})", parts.join(" OR "))
        }
        Condition::Range { gt, gte, lt, lte } => {
            let value = lookup_sql(field, params);
            format!(
                "COALESCE(tkr_in_range({value}, {}::float8, {}::float8, {}::float8, {}::float8), FALSE)",
                params.push(*gt),
                params.push(*gte),
                params.push(*lt),
                params.push(*lte)
            )
        }
    }
}

fn equals_sql(field: &str, value: &Value, params: &mut Params) -> String {
    let scalar = !matches!(value, Value::Array(_) | Value::Object(_));
    if scalar && !field.contains('.') {
        // The field itself equal, or a list holding it: both containment.
        let one = params.push(json!({ field: value }));
        let list = params.push(json!({ field: [value] }));
        return format!("(d.metadata @> {one}::jsonb OR d.metadata @> {list}::jsonb)");
    }
    let lookup = lookup_sql(field, params);
    format!(
        "COALESCE(tkr_eq({lookup}, {}::jsonb), FALSE)",
        params.push(value.clone())
    )
}

/// The field's value (jsonb, NULL when missing): the key as written, else
/// the dotted path.
fn lookup_sql(field: &str, params: &mut Params) -> String {
    let key = params.push(field.to_owned());
    if !field.contains('.') {
        return format!("(d.metadata -> {key}::text)");
    }
    let path: Vec<String> = field.split('.').map(str::to_owned).collect();
    format!(
        "(CASE WHEN d.metadata ? {key}::text THEN d.metadata -> {key}::text \
         ELSE d.metadata #> {}::text[] END)",
        params.push(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(filter: Value) -> (String, usize) {
        let filter = Filter::from_json(&filter).unwrap();
        let mut params = Params::default();
        let sql = filter_sql(&filter, "photos", &mut params);
        (sql, params.values.len())
    }

    #[test]
    fn values_travel_as_parameters_never_in_the_sql_text() {
        let (text, n) = sql(json!({"and": [
            {"field": "x'); DROP TABLE tkr_documents; --", "eq": "a'b"},
            {"field": "a.b", "in": ["q", 1]},
            {"field": "year", "gte": 2020, "lt": 2024},
            {"not": {"modality": "image"}},
        ]}));
        assert!(!text.contains("DROP"), "{text}");
        assert!(!text.contains("a'b"), "{text}");
        assert!(!text.contains("2020"), "{text}");
        assert_eq!(n, 2 + 2 * 3 + 5 + 1);
    }

    #[test]
    fn collection_conditions_are_decided_for_the_searched_collection() {
        assert_eq!(sql(json!({"collection": "photos"})).0, "TRUE");
        assert_eq!(sql(json!({"collection": ["a", "b"]})).0, "FALSE");
    }
}
