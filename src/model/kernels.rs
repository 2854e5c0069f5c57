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

/// Working memory of [`attention`], kept by the caller across layers: the
/// buffers are sized on first use and reused after, so that no layer pays
/// for fresh pages (allocating them per call cost ~15 % of the kernel's
/// time in page faults and zero-filling).
#[derive(Default)]
pub struct AttentionScratch {
    keys: Vec<f32>,
    values: Vec<f32>,
    queries: Vec<f32>,
    scores: Vec<f32>,
    blocks: Vec<f32>,
}

/// Scaled dot-product attention with rotary embedding on queries and keys,
/// over sequences of token rows (no padding is ever computed), into `out`,
/// `[tokens, heads · head_dim]` row-major; rows of tokens that are no
/// sequence's query are set to zero.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: Rows,
    k: Rows,
    v: Rows,
    shape: Heads,
    sequences: &[Sequence],
    rotary: Option<Rotary>,
    causal: bool,
    scale: f32,
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    assert!(
        heads % kv_heads == 0 && hd % 2 == 0,
        "bad attention shape {shape:?}"
    );
    let width = heads * hd;
    assert_eq!(
        out.len() % width,
        0,
        "output rows are heads · head_dim wide"
    );
    // One head's rows of the given tokens into `dst`, `[tokens, hd]`,
    // rotated (where asked) and times `factor`.
    let pack =
        |rows: Rows, tokens: &[usize], h: usize, rotate: bool, factor: f32, dst: &mut [f32]| {
            for (dst, &token) in dst.chunks_mut(hd).zip(tokens) {
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
        };
    let group = heads / kv_heads;
    let kv_ids: Vec<(usize, usize)> = (0..sequences.len())
        .flat_map(|s| (0..kv_heads).map(move |h| (s, h)))
        .collect();
    let q_ids: Vec<(usize, usize)> = (0..sequences.len())
        .flat_map(|s| (0..heads).map(move |h| (s, h)))
        .collect();
    let kv_sizes: Vec<usize> = kv_ids
        .iter()
        .map(|&(s, _)| sequences[s].tokens.len() * hd)
        .collect();
    let q_sizes: Vec<usize> = q_ids
        .iter()
        .map(|&(s, _)| (sequences[s].tokens.len() - sequences[s].first_query) * hd)
        .collect();
    let workers = workers();

    // Keys transposed, `[hd, len]`: the score GEMM then reads both operands
    // along their rows (measured ~1.3x faster than strided reads). Written
    // through a tile of `TILE` packed rows so that the transposed writes go
    // to `TILE` consecutive values at a time.
    const TILE: usize = 16;
    let keys = split_sizes(grown(&mut scratch.keys, kv_sizes.iter().sum()), &kv_sizes);
    let items: Vec<_> = kv_ids.iter().zip(keys).collect();
    parallel_for(items, workers, &mut [], |(&(s, h), dst), _| {
        let tokens = &sequences[s].tokens;
        let len = tokens.len();
        let mut tile = vec![0.0f32; TILE * hd];
        for (c, chunk) in tokens.chunks(TILE).enumerate() {
            pack(k, chunk, h, true, 1.0, &mut tile);
            for d in 0..hd {
                let column = &mut dst[d * len + c * TILE..][..chunk.len()];
                for (j, x) in column.iter_mut().enumerate() {
                    *x = tile[j * hd + d];
                }
            }
        }
    });
    let values = split_sizes(grown(&mut scratch.values, kv_sizes.iter().sum()), &kv_sizes);
    let items: Vec<_> = kv_ids.iter().zip(values).collect();
    parallel_for(items, workers, &mut [], |(&(s, h), dst), _| {
        pack(v, &sequences[s].tokens, h, false, 1.0, dst)
    });
    let queries = split_sizes(grown(&mut scratch.queries, q_sizes.iter().sum()), &q_sizes);
    let items: Vec<_> = q_ids.iter().zip(queries).collect();
    parallel_for(items, workers, &mut [], |(&(s, h), dst), _| {
        let seq = &sequences[s];
        pack(q, &seq.tokens[seq.first_query..], h, true, scale, dst)
    });
    let keys = split_sizes_ref(&scratch.keys, &kv_sizes);
    let values = split_sizes_ref(&scratch.values, &kv_sizes);
    let queries = split_sizes_ref(&scratch.queries, &q_sizes);

    // Tasks: (sequence, head, first position of a block of queries), each
    // with `BLOCK · hd` values of `blocks` for its output rows.
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
    let longest = sequences.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    let scores = grown(&mut scratch.scores, workers * BLOCK * longest);
    let blocks = grown(&mut scratch.blocks, tasks.len() * BLOCK * hd);
    let items: Vec<_> = tasks.iter().zip(blocks.chunks_mut(BLOCK * hd)).collect();
    parallel_for(items, workers, scores, |(&(s, h, i0), block), scores| {
        let seq = &sequences[s];
        let len = seq.tokens.len();
        let i1 = (i0 + BLOCK).min(len);
        let rows = i1 - i0;
        let kv = s * kv_heads + h / group;
        let n_keys = if causal { i1 } else { len };
        let q_from = (i0 - seq.first_query) * hd;
        let q = &queries[s * heads + h][q_from..q_from + rows * hd];
        let v = &values[kv][..n_keys * hd];
        // Every score value is written by the GEMM.
        let scores = &mut scores[..rows * n_keys];
        matmul(scores, rows, n_keys, hd, (q, hd, 1), (keys[kv], len, 1));
        // Unnormalised softmax here; the 1/sum is applied to the (much
        // smaller) output rows instead of the scores.
        let mut inv_sums = [0.0f32; BLOCK];
        for (r, row) in scores.chunks_mut(n_keys).enumerate() {
            let visible = if causal { i0 + r + 1 } else { n_keys };
            inv_sums[r] = 1.0 / exp_shifted_in_place(&mut row[..visible]);
            row[visible..].fill(0.0);
        }
        let block = &mut block[..rows * hd];
        matmul(block, rows, hd, n_keys, (scores, n_keys, 1), (v, hd, 1));
        for (o, inv) in block.chunks_mut(hd).zip(inv_sums) {
            o.iter_mut().for_each(|x| *x *= inv);
        }
    });

    out.fill(0.0);
    for (&(s, h, i0), block) in tasks.iter().zip(scratch.blocks.chunks(BLOCK * hd)) {
        let tokens = &sequences[s].tokens[i0..];
        for (o, &token) in block.chunks(hd).zip(tokens) {
            let start = token * width + h * hd;
            out[start..start + hd].copy_from_slice(o);
        }
    }
}

/// `buffer` grown to at least `len` values (never shrunk: the memory is
/// reused by the next call), as a slice of exactly `len`.
fn grown(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// `data` cut into consecutive parts of the given sizes.
fn split_sizes<'a>(mut data: &'a mut [f32], sizes: &[usize]) -> Vec<&'a mut [f32]> {
    sizes
        .iter()
        .map(|&n| {
            let (part, rest) = std::mem::take(&mut data).split_at_mut(n);
            data = rest;
            part
        })
        .collect()
}

/// [`split_sizes`] for reading.
fn split_sizes_ref<'a>(mut data: &'a [f32], sizes: &[usize]) -> Vec<&'a [f32]> {
    sizes
        .iter()
        .map(|&n| {
            let (part, rest) = data.split_at(n);
            data = rest;
            part
        })
        .collect()
}

/// The number of threads the kernels spread work over.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

/// `f(item, scratch)` for every item, on up to `workers` threads; each
/// thread gets an equal share of `scratch` (empty where `scratch` is).
/// Items are dealt out in turn, which keeps the threads' loads even when
/// item costs grow along the list (causal attention).
fn parallel_for<T: Send>(
    items: Vec<T>,
    workers: usize,
    scratch: &mut [f32],
    f: impl Fn(T, &mut [f32]) + Sync,
) {
    let workers = workers.min(items.len()).max(1);
    if workers == 1 {
        items.into_iter().for_each(|item| f(item, &mut *scratch));
        return;
    }
    let mut dealt: Vec<Vec<T>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        dealt[i % workers].push(item);
    }
    let share = scratch.len() / workers;
    let mut shares: Vec<&mut [f32]> = Vec::with_capacity(workers);
    let mut rest = scratch;
    for _ in 0..workers {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(share);
        shares.push(part);
        rest = tail;
    }
    std::thread::scope(|s| {
        for (items, scratch) in dealt.into_iter().zip(shares) {
            let f = &f;
            s.spawn(move || items.into_iter().for_each(|item| f(item, &mut *scratch)));
        }
    });
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
    let workers = workers().min(data.len().div_ceil(1 << 16)).max(1);
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
/// On AVX-512 machines written out in 512-bit vector operations (the
/// compiler's vectorisation of the portable loop below used mostly 128-bit
/// lanes: ~0.6 ns per value against ~0.1); both give identical bits.
fn exp_shifted_in_place(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        #[allow(unsafe_code)]
        return unsafe { avx512::exp_shifted_in_place(row) };
    }
    exp_shifted_portable(row)
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+fma",
    "x86_64+avx2+fma",
    "x86_64+sse4.1",
    "aarch64+neon"
))]
fn exp_shifted_portable(row: &mut [f32]) -> f32 {
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

/// [`exp_shifted_in_place`] in AVX-512 intrinsics: the same operations in
/// the same order as the portable version (no FMA contraction, same lane
/// sums, the tail summed one by one), so the results are bit-identical.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    const LANES: usize = 16;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn exp_shifted_in_place(row: &mut [f32]) -> f32 {
        let n = row.len();
        let full = n - n % LANES;
        let tail: __mmask16 = ((1u32 << (n % LANES)) - 1) as __mmask16;
        let p = row.as_mut_ptr();
        // SAFETY (all loads and stores below): offsets `i < full` address
        // whole 16-value chunks inside `row`; the tail is read and written
        // through `tail`, whose set bits cover exactly the `n - full` values
        // left.
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            // max(x, m) returns m where x is NaN, like the portable loop.
            vmax = _mm512_max_ps(_mm512_loadu_ps(p.add(i)), vmax);
            i += LANES;
        }
        let mut lanes = [0.0f32; LANES];
        _mm512_storeu_ps(lanes.as_mut_ptr(), vmax);
        let m = row[full..].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let m = lanes.iter().fold(m, |a, &b| a.max(b));
        let vm = _mm512_set1_ps(m);
        let mut vsum = _mm512_setzero_ps();
        let mut i = 0;
        while i < full {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), vm));
            _mm512_storeu_ps(p.add(i), e);
            vsum = _mm512_add_ps(vsum, e);
            i += LANES;
        }
        if tail != 0 {
            let x = _mm512_maskz_loadu_ps(tail, p.add(full));
            _mm512_mask_storeu_ps(p.add(full), tail, exp(_mm512_sub_ps(x, vm)));
        }
        _mm512_storeu_ps(lanes.as_mut_ptr(), vsum);
        row[full..].iter().sum::<f32>() + lanes.iter().sum::<f32>()
    }

    /// `e^x` on 16 lanes for `x ≤ 0` (softmax exponents): the scheme of
    /// [`super::exp`] with fused multiply-adds, and 2^n applied by `scalef`,
    /// which flushes results below ~1e-38 to zero instead of needing a clamp.
    #[target_feature(enable = "avx512f,fma")]
    fn exp(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        // Below this e^x is 0 in float32 (and n would leave i32 range);
        // max(-104, x) returns x where x is NaN, so NaNs go through.
        let x = _mm512_max_ps(c(-104.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, c(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, c(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, c(-2.121_944_4e-4), r);
        let p = _mm512_fmadd_ps(c(1.987_569_1e-4), r, c(1.398_199_9e-3));
        let p = _mm512_fmadd_ps(p, r, c(8.333_452e-3));
        let p = _mm512_fmadd_ps(p, r, c(4.166_579_6e-2));
        let p = _mm512_fmadd_ps(p, r, c(1.666_666_5e-1));
        let p = _mm512_fmadd_ps(p, r, c(0.5));
        let e_r = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), c(1.0));
        _mm512_scalef_ps(e_r, n)
    }
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

    /// The softmax exponent as dispatched (AVX-512 with fused multiply-adds
    /// where the CPU has it) and the portable one agree within 2 ulp, on
    /// every row length around the vector width, down to underflow.
    #[test]
    fn exp_shifted_paths_agree() {
        for len in (1..50).chain([1024, 1037]) {
            let row: Vec<f32> = (0..len)
                .map(|i| (i as f32 * 0.61).sin() * 40.0 - (i % 7) as f32 * 20.0)
                .collect();
            let (mut fast, mut portable) = (row.clone(), row);
            let sum_fast = exp_shifted_in_place(&mut fast);
            let sum_portable = exp_shifted_portable(&mut portable);
            assert!(
                (sum_fast / sum_portable - 1.0).abs() < 1e-6,
                "sum, len {len}"
            );
            for (i, (a, b)) in fast.iter().zip(&portable).enumerate() {
                let ulp = f32::from_bits(b.to_bits() + 1) - b;
                assert!(
                    (a - b).abs() <= 2.0 * ulp || (*a < 1e-37 && *b < 1e-37),
                    "len {len}, value {i}: {a} vs {b}"
                );
            }
        }
        let mut nan = vec![0.0, f32::NAN, 1.0];
        exp_shifted_in_place(&mut nan);
        assert!(nan[1].is_nan(), "a NaN score stays NaN");
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
        let mut scratch = AttentionScratch::default();
        for causal in [true, false] {
            // One scratch for both runs: the second reuses its buffers.
            let mut got = vec![f32::NAN; tokens * width_q];
            attention(
                rows(&q, width_q),
                rows(&k, width_kv),
                rows(&v, width_kv),
                shape,
                &sequences,
                rotary,
                causal,
                scale,
                &mut scratch,
                &mut got,
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
