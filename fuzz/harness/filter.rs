//! Target `filter`: the metadata filter language (`tkr_embed::index::filter`)
//! parsed from JSON text and evaluated, directly and through the metadata
//! postings (`tkr_embed::index::postings`).
//!
//! Input: UTF-8 text; the first line is the filter, every further line one
//! document's metadata object (document `i` has modality `Modality::ALL[i %
//! 5]`; lines that are not JSON objects are skipped).
//!
//! Properties: nothing panics; `str::parse` and serde agree; a parsed
//! filter survives `to_json` → `from_json` unchanged; `not` inverts; and
//! whenever the postings answer a filter, they answer exactly the set of
//! documents the filter matches one by one, before and after removals.
use serde_json::{Map, Value};
use tkr_embed::index::filter::{Filter, FilterTarget};
use tkr_embed::index::postings::Postings;
use tkr_embed::types::Modality;

/// Documents per input (more only slows the fuzzer down).
const MAX_DOCS: usize = 64;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let filter_text = lines.next().unwrap_or("");
    let parsed = filter_text.parse::<Filter>();
    let via_serde = serde_json::from_str::<Filter>(filter_text);
    assert_eq!(
        parsed.is_ok(),
        via_serde.is_ok(),
        "FromStr and serde disagree: {parsed:?} / {via_serde:?}"
    );
    let Ok(filter) = parsed else {
        return;
    };
    assert_eq!(via_serde.as_ref().ok(), Some(&filter));
    let json = filter.to_json();
    assert_eq!(
        Filter::from_json(&json).as_ref(),
        Ok(&filter),
        "to_json → from_json changed the filter ({json})"
    );

    let docs: Vec<(Modality, Map<String, Value>)> = lines
        .filter_map(|line| serde_json::from_str::<Map<String, Value>>(line).ok())
        .take(MAX_DOCS)
        .enumerate()
        .map(|(i, meta)| (Modality::ALL[i % Modality::ALL.len()], meta))
        .collect();
    let negated = Filter::Not(Box::new(filter.clone()));
    let matches = |f: &Filter, i: usize, collection: &str| {
        f.matches(&FilterTarget {
            collection,
            modality: docs[i].0,
            metadata: &docs[i].1,
        })
    };
    for i in 0..docs.len() {
        assert_eq!(matches(&negated, i, "c"), !matches(&filter, i, "c"));
    }

    let mut postings = Postings::default();
    for (i, (modality, meta)) in docs.iter().enumerate() {
        postings.insert(i as u32, *modality, meta);
    }
    let check = |postings: &Postings, live: &[usize]| {
        for collection in ["c", "other"] {
            let Some(bits) = postings.matching(&filter, collection) else {
                continue;
            };
            let got: Vec<u32> = bits.iter().collect();
            let expected: Vec<u32> = live
                .iter()
                .copied()
                .filter(|&i| matches(&filter, i, collection))
                .map(|i| i as u32)
                .collect();
            assert_eq!(
                got, expected,
                "postings disagree with the filter {filter_text} in collection {collection}"
            );
        }
    };
    let all: Vec<usize> = (0..docs.len()).collect();
    check(&postings, &all);
    // Remove every other document: the postings must forget exactly those.
    for i in (1..docs.len()).step_by(2) {
        postings.remove(i as u32, docs[i].0, &docs[i].1);
    }
    let kept: Vec<usize> = (0..docs.len()).step_by(2).collect();
    check(&postings, &kept);
    assert_eq!(postings.len(), kept.len() as u64);
}
