//! Rotary position tables, computed on the CPU in f32 exactly as transformers
//! does (inv_freq in f32, one f32 product per angle, f32 cos/sin), then handed
//! to MLX. Plain Rust: no mlx types here.
//!
//! - Text: M-RoPE (Qwen2-VL, arXiv 2409.12191 §2.1). Every token has a
//!   (temporal, height, width) position; text tokens use the same value on all
//!   three axes, image tokens their grid coordinates. The rotary half-dimension
//!   is split into `mrope_section` parts taking their angle from t, h, w.
//!   Positions follow transformers' `Qwen2VLModel.get_rope_index`.
//! - Vision: 2-D RoPE over (row, column) of each patch, in merge-window order.

/// `1 / theta^(2j/dim)` for j in 0..dim/2, in f32 like torch.
fn inv_freq(theta: f32, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|j| 1.0 / theta.powf((2 * j) as f32 / dim as f32))
        .collect()
}

/// (t, h, w) positions of a row's real tokens. `image_grids` are the
/// `grid_thw` of the row's images in order; each image is a run of
/// `t·h·w / merge²` consecutive `image_token_id`s.
pub fn mrope_positions(
    ids: &[u32],
    image_token_id: u32,
    image_grids: &[[u32; 3]],
    merge: u32,
) -> Vec<[u32; 3]> {
    let mut out = Vec::with_capacity(ids.len());
    let mut next = 0u32; // next text position
    let mut grids = image_grids.iter();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] != image_token_id {
            out.push([next; 3]);
            next += 1;
            i += 1;
            continue;
        }
        let [t, h, w] = *grids
            .next()
            .expect("tokenizer emitted one pad run per image grid");
        let (gh, gw) = (h / merge, w / merge);
        for ti in 0..t {
            for hi in 0..gh {
                for wi in 0..gw {
                    out.push([next + ti, next + hi, next + wi]);
                }
            }
        }
        i += (t * gh * gw) as usize;
        next += t.max(gh).max(gw);
    }
    out
}

/// cos and sin tables `[rows, len, head_dim]` (row-major) for M-RoPE.
/// `positions[row]` holds the real tokens' positions; each row is left-padded
/// to `len` (padding positions get angle 0 — they are masked anyway).
pub fn mrope_tables(
    positions: &[Vec<[u32; 3]>],
    len: usize,
    head_dim: usize,
    theta: f32,
    section: [usize; 3],
) -> (Vec<f32>, Vec<f32>) {
    let freqs = inv_freq(theta, head_dim);
    // Which axis each frequency takes its position from: [t.., h.., w..].
    let axis: Vec<usize> = (0..3)
        .flat_map(|a| std::iter::repeat_n(a, section[a]))
        .collect();
    let half = head_dim / 2;
    let mut cos = vec![1.0f32; positions.len() * len * head_dim];
    let mut sin = vec![0.0f32; positions.len() * len * head_dim];
    for (row, pos) in positions.iter().enumerate() {
        let pad = len - pos.len();
        for (l, p) in pos.iter().enumerate() {
            let base = (row * len + pad + l) * head_dim;
            for j in 0..half {
                let angle = p[axis[j]] as f32 * freqs[j];
                let (s, c) = angle.sin_cos();
                cos[base + j] = c;
                cos[base + half + j] = c;
                sin[base + j] = s;
                sin[base + half + j] = s;
            }
        }
    }
    (cos, sin)
}

/// cos and sin tables `[t·h·w, head_dim]` for one image in the vision tower.
/// Patches are in 2×2 merge-window order, as the preprocessor lays them out.
pub fn vision_tables(grid: [u32; 3], merge: u32, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
    const VISION_THETA: f32 = 10_000.0;
    let [t, h, w] = grid;
    // The rotary dim is head_dim/2: a quarter of head_dim frequencies for rows, a quarter for columns.
    let freqs = inv_freq(VISION_THETA, head_dim / 2);
    let half = head_dim / 2;
    let n = (t * h * w) as usize;
    let mut cos = Vec::with_capacity(n * head_dim);
    let mut sin = Vec::with_capacity(n * head_dim);
    for _ in 0..t {
        for bh in 0..h / merge {
            for bw in 0..w / merge {
                for ih in 0..merge {
                    for iw in 0..merge {
                        let (row, col) = ((bh * merge + ih) as f32, (bw * merge + iw) as f32);
                        let mut angles = Vec::with_capacity(half);
                        angles.extend(freqs.iter().map(|f| row * f));
                        angles.extend(freqs.iter().map(|f| col * f));
                        for _ in 0..2 {
                            cos.extend(angles.iter().map(|a| a.cos()));
                            sin.extend(angles.iter().map(|a| a.sin()));
                        }
                    }
                }
            }
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_positions_are_sequential() {
        let p = mrope_positions(&[5, 6, 7], 99, &[], 2);
        assert_eq!(p, vec![[0, 0, 0], [1, 1, 1], [2, 2, 2]]);
    }

    #[test]
    fn image_positions_follow_the_grid_and_text_resumes_after_the_largest() {
        // text, 2x3 merged grid (grid_thw 1x4x6), text
        let ids = [1, 2, 9, 9, 9, 9, 9, 9, 3];
        let p = mrope_positions(&ids, 9, &[[1, 4, 6]], 2);
        assert_eq!(p[2], [2, 2, 2]);
        assert_eq!(p[3], [2, 2, 3]);
        assert_eq!(p[5], [2, 3, 2]);
        assert_eq!(p[7], [2, 3, 4]);
        assert_eq!(p[8], [5, 5, 5]);
    }
}
