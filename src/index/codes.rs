//! The graph's vector arena in one of the [`VectorEncoding`]s, and the
//! distance between a probe (a query, or a node of the graph) and a stored
//! vector.
//!
//! - `f32`: the unit vectors as given; the distance is `1 - dot`.
//! - `int8`: each vector `x` becomes `round(x / s)` in `[-127, 127]` with
//!   its own scale `s = max |x_i| / 127`, so `dot(x, y) ≈ s_x s_y Σ cx_i cy_i`
//!   (an integer sum: exact, and vectorised by the compiler without
//!   reordering floats). A query is quantized the same way. A quarter of the
//!   memory of `f32`; the scores are close, not exact, which is why the
//!   index asks for more candidates and rescores them with the exact
//!   vectors (`CollectionIndex::rescore`).
use multiversion::multiversion;

use crate::types::{dot, VectorEncoding};

/// Largest code magnitude (symmetric: -128 is never used).
const INT8_MAX: f32 = 127.0;

/// Vectors of one graph, `dim` values per node, in node order.
#[derive(Debug)]
pub(crate) enum Arena {
    F32(Vec<f32>),
    Int8 { codes: Vec<i8>, scales: Vec<f32> },
}

/// A point distances are measured from, in the arena's encoding.
pub(crate) enum Probe<'a> {
    F32(&'a [f32]),
    Int8 { codes: &'a [i8], scale: f32 },
}

/// A query converted to the arena's encoding (owns the int8 codes).
pub(crate) enum Prepared<'a> {
    F32(&'a [f32]),
    Int8 { codes: Vec<i8>, scale: f32 },
}

impl Prepared<'_> {
    pub(crate) fn probe(&self) -> Probe<'_> {
        match self {
            Prepared::F32(v) => Probe::F32(v),
            Prepared::Int8 { codes, scale } => Probe::Int8 {
                codes,
                scale: *scale,
            },
        }
    }
}

impl Arena {
    pub(crate) fn new(encoding: VectorEncoding) -> Arena {
        match encoding {
            VectorEncoding::F32 => Arena::F32(Vec::new()),
            VectorEncoding::Int8 => Arena::Int8 {
                codes: Vec::new(),
                scales: Vec::new(),
            },
        }
    }

    /// Appends whole vectors (`dim` values each).
    pub(crate) fn push(&mut self, dim: usize, vectors: &[f32]) {
        match self {
            Arena::F32(v) => v.extend_from_slice(vectors),
            Arena::Int8 { codes, scales } => {
                for v in vectors.chunks_exact(dim) {
                    scales.push(quantize(v, codes));
                }
            }
        }
    }

    /// Bytes in use.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Arena::F32(v) => v.len() * 4,
            Arena::Int8 { codes, scales } => codes.len() + scales.len() * 4,
        }
    }

    /// Node `id` as a probe (for distances between nodes while linking).
    #[inline]
    pub(crate) fn probe(&self, dim: usize, id: u32) -> Probe<'_> {
        let start = id as usize * dim;
        match self {
            Arena::F32(v) => Probe::F32(&v[start..start + dim]),
            Arena::Int8 { codes, scales } => Probe::Int8 {
                codes: &codes[start..start + dim],
                scale: scales[id as usize],
            },
        }
    }

    /// A unit query in this arena's encoding.
    pub(crate) fn prepare<'q>(&self, query: &'q [f32]) -> Prepared<'q> {
        match self {
            Arena::F32(_) => Prepared::F32(query),
            Arena::Int8 { .. } => {
                let mut codes = Vec::with_capacity(query.len());
                let scale = quantize(query, &mut codes);
                Prepared::Int8 { codes, scale }
            }
        }
    }

    /// `1 - dot(probe, node id)` (approximate for int8).
    #[inline]
    pub(crate) fn dist(&self, dim: usize, probe: &Probe<'_>, id: u32) -> f32 {
        1.0 - self.score(dim, probe, id)
    }

    /// `dot(probe, node id)` (approximate for int8).
    #[inline]
    pub(crate) fn score(&self, dim: usize, probe: &Probe<'_>, id: u32) -> f32 {
        let start = id as usize * dim;
        match (self, probe) {
            (Arena::F32(v), Probe::F32(q)) => dot(q, &v[start..start + dim]),
            (Arena::Int8 { codes, scales }, Probe::Int8 { codes: q, scale }) => {
                let sum = dot_i8(q, &codes[start..start + dim]);
                scale * scales[id as usize] * sum as f32
            }
            _ => unreachable!("a probe is always made by the arena it is used with"),
        }
    }

    /// Asks the CPU to start loading node `id`'s vector.
    #[inline(always)]
    pub(crate) fn prefetch(&self, dim: usize, id: u32) {
        let start = id as usize * dim;
        match self {
            Arena::F32(v) => prefetch(&v[start..]),
            Arena::Int8 { codes, .. } => prefetch(&codes[start..]),
        }
    }

    /// Appends node `id`'s vector as float32 (decoded for int8) to `out`.
    pub(crate) fn copy_f32(&self, dim: usize, id: u32, out: &mut Vec<f32>) {
        let start = id as usize * dim;
        match self {
            Arena::F32(v) => out.extend_from_slice(&v[start..start + dim]),
            Arena::Int8 { codes, scales } => {
                let scale = scales[id as usize];
                out.extend(codes[start..start + dim].iter().map(|&c| c as f32 * scale));
            }
        }
    }
}

/// Appends the int8 codes of `v` to `out` and returns their scale (0 for an
/// all-zero vector, whose codes are all 0).
pub(crate) fn quantize(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out.extend(std::iter::repeat_n(0i8, v.len()));
        return 0.0;
    }
    let inv = INT8_MAX / max;
    out.extend(
        v.iter()
            .map(|&x| (x * inv).round().clamp(-INT8_MAX, INT8_MAX) as i8),
    );
    max / INT8_MAX
}

/// Integer inner product of two code vectors. An integer sum may be
/// reordered freely, so the compiler vectorises the plain loop (widening
/// multiply-adds); one copy per instruction set, chosen at run time. At most
/// 127² per term: no overflow below 133,000 dimensions.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512vnni",
    "x86_64+avx2",
    "x86_64+sse4.1",
))]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// Asks the CPU to start loading the start of `v` into its caches (a hint:
/// no effect on results; nothing on targets without a stable prefetch).
#[inline(always)]
pub(crate) fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch never faults and changes no program state; the
    // address is `v`'s first element anyway. The hardware prefetcher streams
    // the rest of the vector once its first line is requested.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = v.as_ptr().cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(p);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        crate::types::l2_normalize(&mut v).unwrap();
        v
    }

    #[test]
    fn int8_dot_matches_the_plain_sum() {
        for len in [0usize, 1, 7, 31, 64, 255, 1000, 3584] {
            let a: Vec<i8> = (0..len).map(|i| ((i * 37) % 255) as i32 as i8).collect();
            let b: Vec<i8> = (0..len)
                .map(|i| ((i * 91 + 3) % 255) as i32 as i8)
                .collect();
            let want: i64 = a.iter().zip(&b).map(|(&x, &y)| x as i64 * y as i64).sum();
            assert_eq!(dot_i8(&a, &b) as i64, want, "len {len}");
        }
        let extreme = vec![-127i8; 4096];
        assert_eq!(dot_i8(&extreme, &extreme), 127 * 127 * 4096);
    }

    #[test]
    fn int8_scores_are_close_to_the_exact_ones() {
        for dim in [8usize, 256, 1536] {
            let mut arena = Arena::new(VectorEncoding::Int8);
            let vectors: Vec<Vec<f32>> = (0..50).map(|i| unit(i, dim)).collect();
            arena.push(dim, &vectors.concat());
            assert_eq!(arena.bytes(), 50 * dim + 50 * 4);
            let query = unit(999, dim);
            let prepared = arena.prepare(&query);
            for (i, v) in vectors.iter().enumerate() {
                let exact = dot(&query, v);
                let approx = arena.score(dim, &prepared.probe(), i as u32);
                // Each code is off by at most half a step (max/254), so the
                // error of a unit-vector product stays far below 0.02.
                assert!(
                    (exact - approx).abs() < 0.02,
                    "dim {dim}: {exact} vs {approx}"
                );
            }
            // Decoding gives back the vector within half a step per value.
            let mut decoded = Vec::new();
            arena.copy_f32(dim, 3, &mut decoded);
            let step = vectors[3].iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
            for (a, b) in decoded.iter().zip(&vectors[3]) {
                assert!((a - b).abs() <= step * 0.5 + 1e-7);
            }
        }
    }

    #[test]
    fn quantizing_a_decoded_vector_gives_the_same_codes() {
        let v = unit(5, 300);
        let mut codes = Vec::new();
        let scale = quantize(&v, &mut codes);
        let decoded: Vec<f32> = codes.iter().map(|&c| c as f32 * scale).collect();
        let mut again = Vec::new();
        let scale2 = quantize(&decoded, &mut again);
        assert_eq!(codes, again);
        assert!((scale - scale2).abs() <= scale * 1e-6);
        assert_eq!(quantize(&[0.0; 4], &mut Vec::new()), 0.0);
    }
}
