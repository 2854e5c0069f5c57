//! Reciprocal-rank fusion of ranked result lists (Cormack, Clarke &
//! Büttcher 2009): a document's fused score is `Σ weight / (k + rank)` over
//! the lists it appears in (ranks from 1), so agreeing lists lift it and no
//! list's raw score scale matters.
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

/// Fuses a vector and a lexical list (each best first, one hit per
/// document) into the `k` best by weighted RRF. A document keeps the
/// segment of the list that ranked it higher; its score becomes the fused
/// score.
pub fn fuse(
    vector: &[IndexHit],
    lexical: &[IndexHit],
    weights: (f32, f32),
    rrf_k: f32,
    k: usize,
) -> Vec<(IndexHit, Fusion)> {
    let mut by_doc: HashMap<Arc<str>, (IndexHit, Fusion, f32, u32)> = HashMap::new();
    for (list, weight, is_vector) in [(vector, weights.0, true), (lexical, weights.1, false)] {
        for (i, hit) in list.iter().enumerate() {
            let rank = i as u32 + 1;
            let gain = weight / (rrf_k + rank as f32);
            let entry = by_doc
                .entry(hit.doc.clone())
                .or_insert_with(|| (hit.clone(), Fusion::default(), 0.0, rank));
            if rank < entry.3 {
                entry.0.segment = hit.segment;
                entry.3 = rank;
            }
            entry.2 += gain;
            let place = Some((rank, hit.score));
            if is_vector {
                entry.1.vector = place;
            } else {
                entry.1.lexical = place;
            }
        }
    }
    let mut fused: Vec<(IndexHit, Fusion)> = by_doc
        .into_values()
        .map(|(mut hit, fusion, score, _)| {
            hit.score = score;
            (hit, fusion)
        })
        .collect();
    fused.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then(a.0.doc.cmp(&b.0.doc)));
    fused.truncate(k);
    fused
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
        let fused = fuse(&v, &l, (1.0, 1.0), 60.0, 10);
        let order: Vec<&str> = fused.iter().map(|(h, _)| &*h.doc).collect();
        // a: 1/61 + 1/63, c: 1/63 + 1/61 (tie, by id), then b (1/62), d (1/62).
        assert_eq!(order, ["a", "c", "b", "d"]);
        assert!((fused[0].0.score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert_eq!(fused[0].1.vector, Some((1, 10.0)));
        assert_eq!(fused[0].1.lexical, Some((3, 8.0)));
        assert_eq!(fused[0].0.segment, 1, "a ranked higher in the vector list");
        assert_eq!(fused[1].0.segment, 2, "c ranked higher in the lexical list");
        assert_eq!(fused[3].1.vector, None);
        // Lexical weighted up: its head comes first; k truncates.
        let fused = fuse(&v, &l, (0.2, 1.0), 60.0, 2);
        assert_eq!(fused.len(), 2);
        assert_eq!(&*fused[0].0.doc, "c");
        // One empty list: the other's order.
        let fused = fuse(&v, &[], (1.0, 1.0), 60.0, 10);
        let order: Vec<&str> = fused.iter().map(|(h, _)| &*h.doc).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }
}
