//! CPU float32 kernels for the parts of the forward pass that MLX's CPU
//! backend runs slowly. Plain Rust on slices (no MLX types), used by the
//! vision tower and the decoder when they compute in float32 on the CPU.
//!
//! Why (measured with the mlx-cpu 0.32.2 wheel on an AVX-512 Xeon): MLX's CPU
//! `exp` costs ~29 ns per element on one thread, so a softmax over a vision
//! tower's 4,000 × 4,000 scores per head, or SiLU over a batch's MLP
//! activations, takes longer than the matrix products around it; its SDPA
//! also materialises the whole score matrix. Here:
//! - attention is computed per (sequence, head, block of queries): scores of
//!   the block against all keys as one GEMM (the `gemm` crate, dispatched at
//!   run time to AVX2/AVX-512/NEON), softmax in place while the block is in
//!   cache, then one GEMM with the values. Rotary embedding and the 1/√d
//!   scale are applied while packing each head's queries and keys. Blocks are
//!   spread over all cores.
//! - activations (SiLU gating, quick GELU) use a vectorisable `exp`, compiled
//!   for several instruction sets and chosen at run time (`multiversion`).
//!
//! Numerics: float32 throughout, `exp` within 2 ulp; results agree with the
//! MLX path and the reference fixtures within their tolerances (tested in
//! `tests/it/model_parity.rs` on both paths).
use multiversion::multiversion;

/// Query rows per attention block: a block's scores (`BLOCK × keys` floats)
/// stay in a core's L2 cache for sequences up to a few thousand tokens.
const BLOCK: usize = 128;

/// One projection's output as the linear layer wrote it: token `t`, head
/// `h`, component `d` is at
/// `data[(t - first_token) * row_stride + offset + h * head_dim + d]`
/// (tokens before `first_token` have no row here: a cached prompt prefix
/// has keys and values but no queries).
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub offset: usize,
    pub first_token: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub heads: usize,
    /// Grouped-query attention: query head `h` reads key/value head
    /// `h / (heads / kv_heads)`.
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Rotate-half rotary tables, one row of `head_dim` per token.
#[derive(Clone, Copy)]
pub struct Rotary<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// One attention sequence of a ragged batch: the token rows it consists of,
/// in position order, and the first position whose query is computed (the
/// ones before only serve as keys and values: a prompt prefix shared with
/// other sequences, or all but the last token in the decoder's last layer).
#[derive(Clone, Debug)]
pub struct Sequence {
    pub tokens: Vec<usize>,
    pub first_query: usize,
}

/// Scaled dot-product attention with rotary embedding on queries and keys,
/// over sequences of token rows (no padding is ever computed). Returns
/// `[tokens, heads · head_dim]` row-major; rows of tokens that are no
/// sequence's query are zero.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: Rows,
    k: Rows,
    v: Rows,
    tokens: usize,
    shape: Heads,
    sequences: &[Sequence],
    rotary: Option<Rotary>,
    causal: bool,
    scale: f32,
) -> Vec<f32> {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    assert!(
        heads % kv_heads == 0 && hd % 2 == 0,
        "bad attention shape {shape:?}"
    );
    // One head's rows of a sequence from position `from`, contiguous
    // `[positions, hd]`: queries rotated and scaled, keys rotated, values
    // copied.
    let pack = |rows: Rows, seq: &Sequence, from: usize, h: usize, rotate: bool, factor: f32| {
        let mut out = vec![0.0f32; (seq.tokens.len() - from) * hd];
        for (dst, &token) in out.chunks_mut(hd).zip(&seq.tokens[from..]) {
            let start = (token - rows.first_token) * rows.row_stride + rows.offset + h * hd;
            let x = &rows.data[start..start + hd];
            match (rotate, rotary) {
                (true, Some(r)) => {
                    let cos = &r.cos[token * hd..(token + 1) * hd];
                    let sin = &r.sin[token * hd..(token + 1) * hd];
                    rotate_half(x, cos, sin, factor, dst);
                }
                _ => dst.iter_mut().zip(x).for_each(|(d, x)| *d = x * factor),
            }
        }
        out
    };
    let group = heads / kv_heads;
    let kv_ids: Vec<(usize, usize)> = (0..sequences.len())
        .flat_map(|s| (0..kv_heads).map(move |h| (s, h)))
        .collect();
    let q_ids: Vec<(usize, usize)> = (0..sequences.len())
        .flat_map(|s| (0..heads).map(move |h| (s, h)))
        .collect();
    // Keys transposed, `[hd, len]`: the score GEMM then reads both operands
    // along their rows (measured ~1.3x faster than strided reads).
    let keys = parallel_map(&kv_ids, |&(s, h), _| {
        let seq = &sequences[s];
        transpose(&pack(k, seq, 0, h, true, 1.0), seq.tokens.len(), hd)
    });
    let values = parallel_map(&kv_ids, |&(s, h), _| {
        pack(v, &sequences[s], 0, h, false, 1.0)
    });
    let queries = parallel_map(&q_ids, |&(s, h), _| {
        let seq = &sequences[s];
        pack(q, seq, seq.first_query, h, true, scale)
    });

    // Tasks: (sequence, head, first position of a block of queries).
    let mut tasks = Vec::new();
    for (s, seq) in sequences.iter().enumerate() {
        for h in 0..heads {
            let mut i0 = seq.first_query;
            while i0 < seq.tokens.len() {
                tasks.push((s, h, i0));
                i0 += BLOCK;
            }
        }
    }
    let blocks = parallel_map(&tasks, |&(s, h, i0), scores: &mut Vec<f32>| {
        let seq = &sequences[s];
        let len = seq.tokens.len();
        let i1 = (i0 + BLOCK).min(len);
        let rows = i1 - i0;
        let kv = s * kv_heads + h / group;
        let n_keys = if causal { i1 } else { len };
        let q_from = (i0 - seq.first_query) * hd;
        let q = &queries[s * heads + h][q_from..q_from + rows * hd];
        let v = &values[kv][..n_keys * hd];
        // Scratch reused across blocks: every value is written by the GEMM.
        if scores.len() < rows * n_keys {
            scores.resize(rows * n_keys, 0.0);
        }
        let scores = &mut scores[..rows * n_keys];
        matmul(scores, rows, n_keys, hd, (q, hd, 1), (&keys[kv], len, 1));
        // Unnormalised softmax here; the 1/sum is applied to the (much
        // smaller) output rows instead of the scores.
        let mut inv_sums = Vec::with_capacity(rows);
        for (r, row) in scores.chunks_mut(n_keys).enumerate() {
            let visible = if causal { i0 + r + 1 } else { n_keys };
            inv_sums.push(1.0 / exp_shifted_in_place(&mut row[..visible]));
            row[visible..].fill(0.0);
        }
        let mut out = vec![0.0f32; rows * hd];
        matmul(&mut out, rows, hd, n_keys, (scores, n_keys, 1), (v, hd, 1));
        for (o, inv) in out.chunks_mut(hd).zip(inv_sums) {
            o.iter_mut().for_each(|x| *x *= inv);
        }
        out
    });

    let width = heads * hd;
    let mut out = vec![0.0f32; tokens * width];
    for (&(s, h, i0), block) in tasks.iter().zip(blocks) {
        for (r, o) in block.chunks(hd).enumerate() {
            let start = sequences[s].tokens[i0 + r] * width + h * hd;
            out[start..start + hd].copy_from_slice(o);
        }
    }
    out
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// `x·cos + rotate_half(x)·sin`, times `factor`, into `out`.
fn rotate_half(x: &[f32], cos: &[f32], sin: &[f32], factor: f32, out: &mut [f32]) {
    let half = x.len() / 2;
    for d in 0..half {
        out[d] = (x[d] * cos[d] - x[d + half] * sin[d]) * factor;
        out[d + half] = (x[d + half] * cos[d + half] + x[d] * sin[d + half]) * factor;
    }
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`; `dst` is row-major and contiguous, the
/// operands are `(data, row_stride, column_stride)`.
fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    let last = |rows: usize, cols: usize, (_, rs, cs): (&[f32], usize, usize)| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    assert!(last(m, k, lhs) < lhs.0.len() && last(k, n, rhs) < rhs.0.len());
    // SAFETY: every element gemm reads or writes lies inside the slices: the
    // largest offsets were checked above (dst is m×n row-major, stride n).
    // The slices do not overlap (dst is borrowed mutably).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `f(task)` for every task, on all cores; results in task order. Each
/// worker keeps one scratch buffer across its tasks.
fn parallel_map<T: Sync, R: Send>(
    tasks: &[T],
    f: impl Fn(&T, &mut Vec<f32>) -> R + Sync,
) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tasks.len())
        .max(1);
    if workers == 1 {
        let mut scratch = Vec::new();
        return tasks.iter().map(|t| f(t, &mut scratch)).collect();
    }
    // Interleaved assignment keeps the workers' loads even when task costs
    // grow along the list (causal attention).
    let mut per_worker: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let f = &f;
                s.spawn(move || {
                    let mut scratch = Vec::new();
                    (w..tasks.len())
                        .step_by(workers)
                        .map(|i| (i, f(&tasks[i], &mut scratch)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("kernel worker panicked"))
            .collect()
    });
    let mut results: Vec<Option<R>> = (0..tasks.len()).map(|_| None).collect();
    for (i, r) in per_worker.iter_mut().flat_map(|v| v.drain(..)) {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.expect("every task ran"))
        .collect()
}

/// `gate = silu(gate) · up`, element-wise (the SwiGLU of the decoder's MLP).
pub fn silu_mul_in_place(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    in_parallel(gate, 1, |start, part| {
        silu_mul_part(part, &up[start..start + part.len()])
    });
}

/// `x · sigmoid(1.702 x)` in place, element-wise (CLIP's quick GELU).
pub fn quick_gelu_in_place(x: &mut [f32]) {
    in_parallel(x, 1, |_, part| quick_gelu_part(part));
}

/// `x · Φ(x)` in place, with the exact (erf) normal CDF (the merger's GELU).
pub fn gelu_in_place(x: &mut [f32]) {
    in_parallel(x, 1, |_, part| gelu_part(part));
}

/// `f(first_unit, part)` over `data` cut into one contiguous part per core,
/// each a whole number of `unit`-value units (rows); `first_unit` is the
/// index of the part's first unit.
pub fn in_parallel(data: &mut [f32], unit: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let units = data.len() / unit.max(1);
    // Below ~64 Ki values a thread costs more than it saves.
    let workers = std::thread::available_parallelism()
        .map_or(1, |w| w.get())
        .min(data.len().div_ceil(1 << 16))
        .max(1);
    if workers == 1 {
        f(0, data);
        return;
    }
    let per_part = units.div_ceil(workers).max(1);
    std::thread::scope(|s| {
        for (i, part) in data.chunks_mut(per_part * unit.max(1)).enumerate() {
            let f = &f;
            s.spawn(move || f(i * per_part, part));
        }
    });
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
fn silu_mul_part(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
fn quick_gelu_part(x: &mut [f32]) {
    for x in x.iter_mut() {
        *x = *x / (1.0 + exp(-1.702 * *x));
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
fn gelu_part(x: &mut [f32]) {
    for x in x.iter_mut() {
        // 1 + erf(u) = erfc(-u): computed from erfc(|u|) on either side, so
        // there is no cancellation for negative x.
        let u = *x * std::f32::consts::FRAC_1_SQRT_2;
        let tail = erfc_abs(u);
        let one_plus_erf = if u < 0.0 { tail } else { 2.0 - tail };
        *x = 0.5 * *x * one_plus_erf;
    }
}

/// One row of layer normalisation: `(x - mean) / sqrt(var + eps) · w + b`.
/// Mean and variance are sums over lanes (float32, as MLX's CPU layer norm
/// accumulates), the variance from the centred values.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
pub fn layer_norm_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, &x), &w), &b) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (x - mean) * inv * w + b;
    }
}

/// One row of RMS normalisation: `x / sqrt(mean(x²) + eps) · w`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let inv = 1.0 / (lane_sum(x, |v| v * v) / x.len() as f32 + eps).sqrt();
    for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
        *o = x * inv * w;
    }
}

/// `Σ f(x)` over 16 independent lane accumulators, so that the loop
/// vectorises without the compiler reordering float additions itself.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    chunks.remainder().iter().map(|&v| f(v)).sum::<f32>() + acc.iter().sum::<f32>()
}

/// erfc(|x|) in float32 with relative error ≤ 1.2e-7 before rounding
/// (the Chebyshev fit of Numerical Recipes' `erfcc`), branch-free so that
/// loops over it vectorise.
#[inline(always)]
fn erfc_abs(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    t * exp(-z * z + poly)
}

/// Numerically safe softmax of one row, in place (the attention kernel
/// defers the normalisation; this is its yardstick in the tests).
#[cfg(test)]
fn softmax_in_place(row: &mut [f32]) {
    let inv = 1.0 / exp_shifted_in_place(row);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// `row[i] = e^(row[i] - max(row))`; returns the sum of the new values.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
fn exp_shifted_in_place(row: &mut [f32]) -> f32 {
    // Lane-wise max and sum (LANES independent accumulators) so the loops
    // vectorise without reordering float additions behind our back.
    const LANES: usize = 16;
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            max[l] = if c[l] > max[l] { c[l] } else { max[l] };
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    m = max.iter().fold(m, |a, &b| a.max(b));
    // e^(x - m) and its sum in one pass over the row.
    let mut sum = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = exp(c[l] - m);
            sum[l] += c[l];
        }
    }
    let rest = chunks.into_remainder();
    rest.iter_mut().for_each(|x| *x = exp(*x - m));
    rest.iter().sum::<f32>() + sum.iter().sum::<f32>()
}

/// `e^x` in float32 (Cephes' `expf` scheme: x = n·ln2 + r, |r| ≤ ln2/2,
/// degree-7 polynomial for e^r, 2^n built in the exponent bits). Written
/// with plain float and integer lane operations only — no branches, no
/// float-to-int conversion, no library calls — so that loops over it
/// vectorise; ≤ 2 ulp for normal results. Inputs are clamped to [-87.3, 88]:
/// smaller ones give ~1e-38 instead of a denormal, larger ones e^88 instead
/// of infinity.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // t = x·log2(e) + 1.5·2^23 rounds to the nearest integer n in the
    // default rounding mode; n then sits in t's low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = p * r * r + r + 1.0;
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    e_r * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            let ulp = (want as f32).to_bits();
            let ulp = (f32::from_bits(ulp + 1) - f32::from_bits(ulp)) as f64;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.001_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let xs: Vec<f32> = (-400..400).map(|i| i as f32 * 0.02).collect();
        let mut ys = xs.clone();
        gelu_in_place(&mut ys);
        for (x, g) in xs.iter().zip(ys) {
            let want = 0.5 * *x as f64 * (1.0 + libm_erf(*x as f64 / 2f64.sqrt()));
            assert!(
                (g as f64 - want).abs() <= 2e-7 * (1.0 + want.abs()),
                "{x}: {g} vs {want}"
            );
        }
    }

    /// erf to double precision (series for small |x|, continued fraction
    /// for large), as an independent yardstick.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let r = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
        };
        r.copysign(x)
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs: Vec<f32> = (0..200_000)
            .map(|i| (i as f32 * 0.37).sin() * 12.0)
            .collect();
        let ys: Vec<f32> = (0..200_000).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut gated = xs.clone();
        silu_mul_in_place(&mut gated, &ys);
        for ((x, y), got) in xs.iter().zip(&ys).zip(gated) {
            let want = *x as f64 / (1.0 + (-*x as f64).exp()) * *y as f64;
            assert!((got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()));
        }
        let mut gelus = xs.clone();
        quick_gelu_in_place(&mut gelus);
        for (x, got) in xs.iter().zip(gelus) {
            let want = *x as f64 / (1.0 + (-1.702 * *x as f64).exp());
            assert!((got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()));
        }
    }

    #[test]
    fn layer_norm_matches_its_definition() {
        let width = 1283; // lanes plus a remainder
        let x: Vec<f32> = (0..3 * width)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 0.5)
            .collect();
        let w: Vec<f32> = (0..width)
            .map(|i| 1.0 + (i as f32 * 0.1).cos() * 0.2)
            .collect();
        let b: Vec<f32> = (0..width).map(|i| (i as f32 * 0.3).sin() * 0.1).collect();
        for row in x.chunks(width) {
            let mut out = vec![0.0f32; width];
            layer_norm_row(row, &w, &b, 1e-6, &mut out);
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            for (i, &got) in out.iter().enumerate() {
                let want = (row[i] as f64 - mean) / (var + 1e-6).sqrt() * w[i] as f64 + b[i] as f64;
                assert!((got as f64 - want).abs() <= 2e-6, "{i}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn rms_norm_matches_its_definition() {
        let width = 899;
        let x: Vec<f32> = (0..width)
            .map(|i| (i as f32 * 0.71).cos() * 2.0 - 0.3)
            .collect();
        let w: Vec<f32> = (0..width)
            .map(|i| 0.5 + (i as f32 * 0.05).sin().abs())
            .collect();
        let mut out = vec![0.0f32; width];
        rms_norm_row(&x, &w, 1e-6, &mut out);
        let ms = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / width as f64;
        for (i, &got) in out.iter().enumerate() {
            let want = x[i] as f64 / (ms + 1e-6).sqrt() * w[i] as f64;
            assert!((got as f64 - want).abs() <= 2e-6, "{i}: {got} vs {want}");
        }
    }

    #[test]
    fn softmax_matches_a_direct_computation() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let denom: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        let want: Vec<f64> = row
            .iter()
            .map(|&x| (x as f64 - max).exp() / denom)
            .collect();
        softmax_in_place(&mut row);
        for (g, w) in row.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-7, "{g} vs {w}");
        }
    }

    /// Attention against a naive loop, with GQA, rotary, a shared prefix
    /// and ragged rows.
    #[test]
    fn attention_matches_a_naive_implementation() {
        let (tokens, heads, kv_heads, hd) = (150, 4, 2, 8);
        let width_q = heads * hd;
        let width_kv = kv_heads * hd;
        let val = |i: usize| ((i as f32) * 0.37).sin();
        let q: Vec<f32> = (0..tokens * width_q).map(val).collect();
        let k: Vec<f32> = (0..tokens * width_kv).map(|i| val(i + 7)).collect();
        let v: Vec<f32> = (0..tokens * width_kv).map(|i| val(i + 13)).collect();
        let cos: Vec<f32> = (0..tokens * hd).map(|i| (i as f32 * 0.01).cos()).collect();
        let sin: Vec<f32> = (0..tokens * hd).map(|i| (i as f32 * 0.01).sin()).collect();
        // A 10-token prefix (its own sequence), then two rows that share it,
        // longer than one block of queries.
        let prefix: Vec<usize> = (0..10).collect();
        let row = |from: usize, to: usize| Sequence {
            tokens: prefix.iter().copied().chain(from..to).collect(),
            first_query: prefix.len(),
        };
        let sequences = vec![
            Sequence {
                tokens: prefix.clone(),
                first_query: 0,
            },
            row(10, 20),
            row(20, 150),
        ];
        let scale = 0.3;
        fn rows(data: &[f32], w: usize) -> Rows<'_> {
            Rows {
                data,
                row_stride: w,
                offset: 0,
                first_token: 0,
            }
        }
        let shape = Heads {
            heads,
            kv_heads,
            head_dim: hd,
        };
        let rotary = Some(Rotary {
            cos: &cos,
            sin: &sin,
        });
        for causal in [true, false] {
            let got = attention(
                rows(&q, width_q),
                rows(&k, width_kv),
                rows(&v, width_kv),
                tokens,
                shape,
                &sequences,
                rotary,
                causal,
                scale,
            );
            let rot = |x: &[f32], t: usize| -> Vec<f64> {
                let (c, s) = (&cos[t * hd..], &sin[t * hd..]);
                (0..hd)
                    .map(|d| {
                        let other = if d < hd / 2 {
                            -x[d + hd / 2]
                        } else {
                            x[d - hd / 2]
                        };
                        (x[d] * c[d] + other * s[d]) as f64
                    })
                    .collect()
            };
            for seq in &sequences {
                for h in 0..heads {
                    let kvh = h / (heads / kv_heads);
                    for i in seq.first_query..seq.tokens.len() {
                        let ti = seq.tokens[i];
                        let qi = rot(&q[ti * width_q + h * hd..][..hd], ti);
                        let keys = if causal {
                            &seq.tokens[..=i]
                        } else {
                            &seq.tokens[..]
                        };
                        let scores: Vec<f64> = keys
                            .iter()
                            .map(|&tj| {
                                let kj = rot(&k[tj * width_kv + kvh * hd..][..hd], tj);
                                let dot: f64 = qi.iter().zip(&kj).map(|(a, b)| a * b).sum();
                                dot * scale as f64
                            })
                            .collect();
                        let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for d in 0..hd {
                            let want: f64 = keys
                                .iter()
                                .zip(&e)
                                .map(|(&tj, w)| w / z * v[tj * width_kv + kvh * hd + d] as f64)
                                .sum();
                            let g = got[ti * width_q + h * hd + d] as f64;
                            assert!((g - want).abs() < 1e-5, "t{ti} h{h} d{d}: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
