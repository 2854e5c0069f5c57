//! MLX through mlx-rs on this machine: each kernel the model uses, against
//! values computed independently with numpy in float64
//! (`tests/fixtures/mlx_smoke/gen_expected.py`, output pasted below).
use mlx_rs::{fast, ops, Array};

use crate::mlx_lock;

const MATMUL: &[f64] = &[
    1.187500000e+00,
    -5.625000000e-01,
    -6.250000000e-02,
    1.687500000e+00,
    -5.000000000e-01,
    -9.375000000e-01,
];
const SOFTMAX: &[f64] = &[
    5.856033357e-02,
    3.369914523e-01,
    7.519295671e-02,
    4.327055899e-01,
    9.654966757e-02,
    6.160101456e-01,
    1.374504424e-01,
    3.066933923e-02,
    1.764898616e-01,
    3.938021109e-02,
];
const SDPA_CAUSAL: &[f64] = &[
    0.000000000e+00,
    -1.500000000e+00,
    2.500000000e-01,
    -1.250000000e+00,
    4.298318753e-01,
    -1.070168125e+00,
    6.798318753e-01,
    -8.201681247e-01,
    6.565725370e-01,
    -8.434274630e-01,
    9.065725370e-01,
    -5.934274630e-01,
    0.000000000e+00,
    -1.500000000e+00,
    2.500000000e-01,
    -1.250000000e+00,
    2.578099579e-01,
    -1.242190042e+00,
    5.078099579e-01,
    -9.921900421e-01,
    2.736926802e-01,
    -1.226307320e+00,
    5.236926802e-01,
    -9.763073198e-01,
];
const RMS_NORM: &[f64] = &[
    4.423255608e-01,
    -0.000000000e+00,
    1.032092975e+00,
    -2.948837072e-01,
    1.459991561e+00,
    -0.000000000e+00,
    2.271097983e+00,
    -1.622212845e-01,
];
const ROPE: &[f64] = &[
    -1.221407554e+00,
    -7.398506717e-01,
    2.658262336e-01,
    -5.148990034e-01,
    -1.449170633e+00,
    -2.498875084e-01,
    -1.308588735e+00,
    -7.498875051e-03,
    3.446231216e-02,
    2.298053596e-01,
    1.952258269e+00,
    5.095973869e-01,
];
const QMM_EXACT: &[f64] = &[
    1.606250000e+01,
    -1.384375000e+01,
    2.815625000e+01,
    -1.393750000e+01,
    -1.200000000e+01,
    1.587500000e+01,
    -1.393750000e+01,
    2.815625000e+01,
];

/// Same inputs as the generator: exact small rationals.
fn v(n: usize, seed: usize, shape: &[i32]) -> Array {
    let data: Vec<f32> = (0..n)
        .map(|i| (((i * 7 + seed) % 13) as f32 - 6.0) / 4.0)
        .collect();
    Array::from_slice(&data, shape)
}

fn assert_close(got: &Array, want: &[f64], tol: f64) {
    got.eval().unwrap();
    let got: Vec<f32> = got.as_type::<f32>().unwrap().as_slice().to_vec();
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol,
            "element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

#[test]
fn matmul_matches_numpy() {
    let _mlx = mlx_lock();
    let c = ops::matmul(v(12, 1, &[3, 4]), v(8, 2, &[4, 2])).unwrap();
    assert_eq!(c.shape(), &[3, 2]);
    assert_close(&c, MATMUL, 1e-6);
}

#[test]
fn softmax_matches_numpy() {
    let _mlx = mlx_lock();
    let s = ops::softmax_axis(v(10, 3, &[2, 5]), -1, None).unwrap();
    assert_close(&s, SOFTMAX, 1e-6);
}

#[test]
fn causal_gqa_attention_matches_numpy() {
    let _mlx = mlx_lock();
    let q = v(24, 4, &[1, 2, 3, 4]);
    let k = v(12, 5, &[1, 1, 3, 4]);
    let val = v(12, 6, &[1, 1, 3, 4]);
    let o = fast::scaled_dot_product_attention(
        &q,
        &k,
        &val,
        0.5,
        fast::ScaledDotProductAttentionMask::Causal,
        None,
    )
    .unwrap();
    assert_eq!(o.shape(), &[1, 2, 3, 4]);
    assert_close(&o, SDPA_CAUSAL, 1e-6);
}

#[test]
fn rms_norm_matches_numpy() {
    let _mlx = mlx_lock();
    let w = ops::add(v(4, 8, &[4]), Array::from_f32(1.0)).unwrap();
    let y = fast::rms_norm(v(8, 7, &[2, 4]), Some(&w), 1e-6).unwrap();
    assert_close(&y, RMS_NORM, 1e-6);
}

#[test]
fn rope_matches_numpy() {
    let _mlx = mlx_lock();
    let y = fast::rope(v(12, 9, &[1, 1, 3, 4]), 4, false, 10000.0, 1.0, 2, None).unwrap();
    assert_close(&y, ROPE, 1e-6);
}

#[test]
fn quantized_matmul_approximates_exact_product() {
    let _mlx = mlx_lock();
    let x = v(128, 10, &[2, 64]);
    let w = ops::multiply(v(256, 11, &[4, 64]), Array::from_f32(0.5)).unwrap();
    for bits in [8, 4] {
        let (wq, scales, biases) = ops::quantize(&w, 64, bits).unwrap();
        // Each weight is off by at most one quantization step (MLX nudges the
        // grid so the group's extreme value is exactly representable).
        let back = ops::dequantize(&wq, &scales, &biases, 64, bits).unwrap();
        let err = ops::abs(ops::subtract(&back, &w).unwrap()).unwrap();
        let max_err = err.max(None).unwrap().item_exact::<f32>();
        let max_scale = ops::abs(&scales)
            .unwrap()
            .max(None)
            .unwrap()
            .item_exact::<f32>();
        assert!(
            max_err <= max_scale + 1e-6,
            "bits {bits}: {max_err} > {max_scale}"
        );
        // The quantized kernel computes x @ dequantized(w)^T ...
        let y = ops::quantized_matmul(&x, &wq, &scales, &biases, true, 64, bits).unwrap();
        let via_dequant = ops::matmul(&x, back.t()).unwrap();
        let via_dequant: Vec<f64> = via_dequant
            .as_slice::<f32>()
            .iter()
            .map(|&f| f as f64)
            .collect();
        assert_close(&y, &via_dequant, 1e-4);
        // ... which is the exact product up to |x|_1 * max weight error.
        let x_l1 = ops::abs(&x)
            .unwrap()
            .sum_axis(-1, None)
            .unwrap()
            .max(None)
            .unwrap()
            .item_exact::<f32>();
        assert_close(&y, QMM_EXACT, (x_l1 * max_err) as f64 + 1e-4);
    }
}

#[test]
fn float32_round_trips_through_bfloat16_exactly_for_representable_values() {
    let _mlx = mlx_lock();
    // The model's bf16 weights are upcast to f32 on CPU; values like these survive.
    let x = v(16, 12, &[16]);
    let back = x.as_type::<half::bf16>().unwrap().as_type::<f32>().unwrap();
    let want: Vec<f64> = x.as_slice::<f32>().iter().map(|&f| f as f64).collect();
    assert_close(&back, &want, 0.0);
}

#[test]
fn reports_its_device() {
    let _mlx = mlx_lock();
    let device = tkr_embed::model::runtime::default_device();
    assert!(device.contains("cpu") || device.contains("gpu"), "{device}");
}
