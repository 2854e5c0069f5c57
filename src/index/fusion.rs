//! Reciprocal-rank fusion of ranked result lists (Cormack, Clarke &
//! Büttcher 2009): a document's fused score is `Σ weight / (k + rank)` over
//! the lists it appears in (ranks from 1), so agreeing lists lift it and no
//! list's raw score scale matters.
//!
//! Equal fused scores are common (rank 1 of one list against rank 1 of the
//! other); they go to the hit its own list singles out more: the gap to
//! the next hit's score, as a share of the list's score range (a lone hit:
//! all of it). So an exact identifier that only one document contains beats
//! the head of an undecided vector list.
use std::collections::HashMap;
use std::sync::Arc;

use super::IndexHit;

/// The conventional constant: dampens the head of each list.
pub const DEFAULT_RRF_K: f32 = 60.0;

/// Where a fused document came from: its rank (from 1) and score in each
/// list it appeared in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fusion {
    pub vector: Option<(u32, f32)>,
    pub lexical: Option<(u32, f32)>,
}

/// How far the hit at `i` stands above the next one, as a share of the
/// list's score range (1 for a lone hit, 0 where all scores are equal).
fn standout(list: &[IndexHit], i: usize) -> f32 {
    let (first, last) = (list[0].score, list[list.len() - 1].score);
    if list.len() == 1 {
        return 1.0;
    }
    let next = list.get(i + 1).map_or(list[i].score, |h| h.score);
    let range = first - last;
    if range > 0.0 {
        (list[i].score - next) / range
    } else {
        0.0
    }
}

struct Entry {
    hit: IndexHit,
    fusion: Fusion,
    score: f32,
    best_rank: u32,
    standout: f32,
}

/// Fuses a vector and a lexical list (each best first, one hit per
/// document) into the `k` best by weighted RRF. A document keeps the
/// segment of the list that ranked it higher; its score becomes the fused
/// score.
/// With `per_segment`, hits are (document, segment) pairs: the same
/// document's parts are fused apart.
pub fn fuse(
    vector: &[IndexHit],
    lexical: &[IndexHit],
    weights: (f32, f32),
    rrf_k: f32,
    k: usize,
    per_segment: bool,
) -> Vec<(IndexHit, Fusion)> {
    let mut by_doc: HashMap<(Arc<str>, u32), Entry> = HashMap::new();
    for (list, weight, is_vector) in [(vector, weights.0, true), (lexical, weights.1, false)] {
        // A list weighted 0 takes no part (not even as filler).
        if weight <= 0.0 {
            continue;
        }
        for (i, hit) in list.iter().enumerate() {
            let rank = i as u32 + 1;
            let gain = weight / (rrf_k + rank as f32);
            let key = (hit.doc.clone(), if per_segment { hit.segment } else { 0 });
            let entry = by_doc.entry(key).or_insert_with(|| Entry {
                hit: hit.clone(),
                fusion: Fusion::default(),
                score: 0.0,
                best_rank: rank,
                standout: 0.0,
            });
            if rank < entry.best_rank {
                entry.hit.segment = hit.segment;
                entry.best_rank = rank;
            }
            entry.score += gain;
            entry.standout = entry.standout.max(standout(list, i));
            let place = Some((rank, hit.score));
            if is_vector {
                entry.fusion.vector = place;
            } else {
                entry.fusion.lexical = place;
            }
        }
    }
    let mut fused: Vec<Entry> = by_doc.into_values().collect();
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.standout.total_cmp(&a.standout))
            .then(a.hit.doc.cmp(&b.hit.doc))
    });
    fused.truncate(k);
    fused
        .into_iter()
        .map(|mut e| {
            e.hit.score = e.score;
            (e.hit, e.fusion)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ids: &[&str], segment: u32) -> Vec<IndexHit> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| IndexHit {
                doc: Arc::from(*id),
                seq: 1,
                segment,
                score: 10.0 - i as f32,
            })
            .collect()
    }

    #[test]
    fn agreement_wins_weights_shift_and_details_are_kept() {
        let v = hits(&["a", "b", "c"], 1);
        let l = hits(&["c", "d", "a"], 2);
        let fused = fuse(&v, &l, (1.0, 1.0), 60.0, 10, false);
        let order: Vec<&str> = fused.iter().map(|(h, _)| &*h.doc).collect();
        // a: 1/61 + 1/63, c: 1/63 + 1/61 (a tie; equal standouts: by id),
        // then b and d (1/62 each, by id).
        assert_eq!(order, ["a", "c", "b", "d"]);
        assert!((fused[0].0.score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert_eq!(fused[0].1.vector, Some((1, 10.0)));
        assert_eq!(fused[0].1.lexical, Some((3, 8.0)));
        assert_eq!(fused[0].0.segment, 1, "a ranked higher in the vector list");
        assert_eq!(fused[1].0.segment, 2, "c ranked higher in the lexical list");
        assert_eq!(fused[3].1.vector, None);
        // Lexical weighted up: its head comes first; k truncates.
        let fused = fuse(&v, &l, (0.2, 1.0), 60.0, 2, false);
        assert_eq!(fused.len(), 2);
        assert_eq!(&*fused[0].0.doc, "c");
        // Tied heads: the lone lexical hit stands out fully, the vector
        // list's head barely (10 vs 9.9 in a range of 10 to 1).
        let mut flat = hits(&["v1", "v2", "v3"], 0);
        flat[1].score = 9.9;
        flat[2].score = 1.0;
        let lone = hits(&["z"], 0);
        let fused = fuse(&flat, &lone, (1.0, 1.0), 60.0, 3, false);
        assert_eq!(&*fused[0].0.doc, "z");
        assert_eq!(fused[0].0.score, fused[1].0.score);
        // A list weighted 0 adds nothing, not even filler.
        let fused = fuse(&v, &l, (1.0, 0.0), 60.0, 10, false);
        let order: Vec<&str> = fused.iter().map(|(h, _)| &*h.doc).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(fused[0].1.lexical, None);
        // One empty list: the other's order.
        let fused = fuse(&v, &[], (1.0, 1.0), 60.0, 10, false);
        let order: Vec<&str> = fused.iter().map(|(h, _)| &*h.doc).collect();
        assert_eq!(order, ["a", "b", "c"]);
        // Per segment: a's segment 1 (vector) and segment 2 (lexical) are
        // two hits.
        let fused = fuse(&v, &l, (1.0, 1.0), 60.0, 10, true);
        assert_eq!(fused.iter().filter(|(h, _)| &*h.doc == "a").count(), 2);
    }
}
