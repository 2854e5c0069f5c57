//! Dense layers and norms on host `f32` slices, for the float32 CPU path
//! of the vision tower and the text decoder.
//!
//! Why (profiled with `cargo bench --bench embed -- --profile`): with MLX on
//! the CPU, a vision block spent ~40 % more than its matrix products need —
//! MLX runs layer norms, residual adds and bias broadcasts as separate
//! single-threaded passes, and every hand-off between an MLX array and a
//! host kernel (attention, GELU) is an evaluation plus a copy. Here a block
//! is a sequence of calls on buffers that live across layers:
//! - each linear layer is one `cblas_sgemm` — the BLAS MLX itself uses, so
//!   the products and the kernel chosen for this CPU are the same;
//! - a residual connection is the GEMM's `beta = 1` (it adds into the
//!   residual stream; no pass of its own);
//! - biases are the GEMM's starting value, or added in the pass that follows
//!   anyway (layer norm, activation);
//! - norms and activations run on all cores.
use std::sync::OnceLock;

use mlx_rs::{Array, Dtype};

use super::{
    kernels,
    linear::{Linear, QuantSpec},
    ModelError,
};

/// `cblas_sgemm`, as exported by the BLAS library MLX is linked with.
type Sgemm = unsafe extern "C" fn(
    layout: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

const CBLAS_ROW_MAJOR: i32 = 101;
const CBLAS_NO_TRANS: i32 = 111;
const CBLAS_TRANS: i32 = 112;

/// The process's `cblas_sgemm` (looked up once among the loaded libraries:
/// libmlx.so's BLAS is one of them), or `None` where there is none.
fn sgemm() -> Option<Sgemm> {
    static SGEMM: OnceLock<Option<Sgemm>> = OnceLock::new();
    *SGEMM.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; a non-null result is the
        // address of the C function `cblas_sgemm`, whose signature is the
        // CBLAS standard one written above.
        #[allow(unsafe_code)]
        unsafe {
            let f = libc::dlsym(libc::RTLD_DEFAULT, c"cblas_sgemm".as_ptr());
            (!f.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, Sgemm>(f))
        }
    })
}

/// Whether this process can run the host layers (a CBLAS is loaded).
pub fn available() -> bool {
    sgemm().is_some()
}

/// `array` as a host vector of `f32` (cast, evaluated, copied).
pub(super) fn to_host(array: &Array) -> Result<Vec<f32>, ModelError> {
    let a = super::on_host(&array.as_dtype(Dtype::Float32)?)?;
    Ok(a.try_as_slice::<f32>()?.to_vec())
}

/// A linear layer `y = x·Wᵀ + b` with `W` `[outputs, inputs]` as in
/// PyTorch checkpoints (the GEMM reads it transposed; no copy).
pub struct HostLinear {
    weight: Matrix,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
}

/// A weight matrix as stored: float32, or bfloat16 bits widened to float32
/// per call (exact), so that `--weight-storage bfloat16` keeps its memory.
enum Matrix {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

thread_local! {
    /// The widened float32 copy of a bfloat16 matrix, reused across calls.
    static WIDENED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl HostLinear {
    /// `weight` keeps its dtype if that is bfloat16; anything else becomes
    /// float32.
    pub fn new(weight: &Array, bias: Option<&Array>) -> Result<Self, ModelError> {
        let shape = weight.shape();
        assert_eq!(shape.len(), 2, "a linear layer's weight is a matrix");
        let values = to_host(weight)?;
        let weight = if weight.dtype() == Dtype::Bfloat16 {
            // bfloat16 → float32 is exact, so the top half is the original.
            Matrix::Bf16(values.iter().map(|v| (v.to_bits() >> 16) as u16).collect())
        } else {
            Matrix::F32(values)
        };
        Ok(HostLinear {
            weight,
            bias: bias.map(to_host).transpose()?,
            inputs: shape[1] as usize,
            outputs: shape[0] as usize,
        })
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `out = x·Wᵀ + b`, for every row of `x`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let rows = self.rows(x, out);
        match &self.bias {
            Some(b) => {
                // The bias is where the GEMM starts (beta = 1).
                out.chunks_mut(self.outputs)
                    .for_each(|row| row.copy_from_slice(b));
                self.gemm(x, rows, out, 1.0);
            }
            None => self.gemm(x, rows, out, 0.0),
        }
    }

    /// `acc += x·Wᵀ + b`: a residual connection in the GEMM itself.
    pub fn accumulate(&self, x: &[f32], acc: &mut [f32]) {
        let rows = self.rows(x, acc);
        if let Some(b) = &self.bias {
            kernels::in_parallel(acc, self.outputs, |_, part| {
                for row in part.chunks_mut(self.outputs) {
                    row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                }
            });
        }
        self.gemm(x, rows, acc, 1.0);
    }

    fn rows(&self, x: &[f32], out: &[f32]) -> usize {
        let rows = x.len() / self.inputs;
        assert!(x.len() == rows * self.inputs && out.len() == rows * self.outputs);
        rows
    }

    fn gemm(&self, x: &[f32], rows: usize, out: &mut [f32], beta: f32) {
        if rows == 0 {
            return;
        }
        match &self.weight {
            Matrix::F32(w) => self.gemm_with(w, x, rows, out, beta),
            Matrix::Bf16(bits) => WIDENED.with_borrow_mut(|w| {
                w.clear();
                w.extend(bits.iter().map(|&b| f32::from_bits((b as u32) << 16)));
                self.gemm_with(w, x, rows, out, beta);
            }),
        }
    }

    fn gemm_with(&self, weight: &[f32], x: &[f32], rows: usize, out: &mut [f32], beta: f32) {
        assert_eq!(weight.len(), self.inputs * self.outputs);
        let sgemm = sgemm().expect("host layers are only built where a CBLAS is loaded");
        let int = |v: usize| i32::try_from(v).expect("matrix dimension fits in i32");
        // SAFETY: row-major x [rows, inputs], W [outputs, inputs] read
        // transposed, out [rows, outputs]: the lengths were checked in
        // `rows` and above, so every element the GEMM touches is inside the slices;
        // out does not alias x or W (it is borrowed mutably).
        #[allow(unsafe_code)]
        unsafe {
            sgemm(
                CBLAS_ROW_MAJOR,
                CBLAS_NO_TRANS,
                CBLAS_TRANS,
                int(rows),
                int(self.outputs),
                int(self.inputs),
                1.0,
                x.as_ptr(),
                int(self.inputs),
                weight.as_ptr(),
                int(self.inputs),
                beta,
                out.as_mut_ptr(),
                int(self.outputs),
            );
        }
    }
}

/// Layer normalisation over rows of `weight.len()` values.
pub struct HostLayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl HostLayerNorm {
    pub fn new(weight: &Array, bias: &Array, eps: f32) -> Result<Self, ModelError> {
        Ok(HostLayerNorm {
            weight: to_host(weight)?,
            bias: to_host(bias)?,
            eps,
        })
    }

    /// `out = (x - mean) / sqrt(var + eps) · weight + bias`, row by row.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        by_rows(x, out, self.weight.len(), |x, out| {
            kernels::layer_norm_row(x, &self.weight, &self.bias, self.eps, out)
        });
    }
}

/// `f(row of x, row of out)` for every row `width` wide, on all cores.
fn by_rows(x: &[f32], out: &mut [f32], width: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    assert!(x.len() == out.len() && x.len().is_multiple_of(width));
    kernels::in_parallel(out, width, |first_row, part| {
        let x = &x[first_row * width..first_row * width + part.len()];
        for (x, out) in x.chunks(width).zip(part.chunks_mut(width)) {
            f(x, out);
        }
    });
}

/// RMS normalisation over rows of `weight.len()` values (Qwen2's RMSNorm).
pub struct HostRmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl HostRmsNorm {
    pub fn new(weight: &Array, eps: f32) -> Result<Self, ModelError> {
        Ok(HostRmsNorm {
            weight: to_host(weight)?,
            eps,
        })
    }

    /// `out = x / sqrt(mean(x²) + eps) · weight`, row by row.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        by_rows(x, out, self.weight.len(), |x, out| {
            kernels::rms_norm_row(x, &self.weight, self.eps, out)
        });
    }
}

/// A linear layer on host buffers: BLAS over float32 or bfloat16 weights,
/// or MLX for quantized weights (its quantized matmul; the rows go into an
/// MLX array and back).
pub enum Projection {
    Blas(HostLinear),
    Mlx { layer: Linear, inputs: usize },
}

impl Projection {
    /// `weight` `[outputs, inputs]` in its storage dtype; quantized when
    /// `quant` says so (and MLX can: see `Linear::new`).
    pub fn new(weight: Array, bias: Option<Array>, quant: QuantSpec) -> Result<Self, ModelError> {
        if quant == QuantSpec::None {
            return Ok(Projection::Blas(HostLinear::new(&weight, bias.as_ref())?));
        }
        let inputs = weight.shape()[1] as usize;
        Ok(Projection::Mlx {
            layer: Linear::new(weight, bias, quant, Dtype::Float32)?,
            inputs,
        })
    }

    /// `out = x·Wᵀ + b`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Projection::Blas(l) => l.forward(x, out),
            Projection::Mlx { .. } => out.copy_from_slice(&self.through_mlx(x)?),
        }
        Ok(())
    }

    /// `acc += x·Wᵀ + b`.
    pub fn accumulate(&self, x: &[f32], acc: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Projection::Blas(l) => l.accumulate(x, acc),
            Projection::Mlx { .. } => {
                let y = self.through_mlx(x)?;
                acc.iter_mut().zip(&y).for_each(|(a, y)| *a += y);
            }
        }
        Ok(())
    }

    fn through_mlx(&self, x: &[f32]) -> Result<Vec<f32>, ModelError> {
        let Projection::Mlx { layer, inputs, .. } = self else {
            unreachable!("only the MLX variant goes through MLX")
        };
        let rows = (x.len() / inputs) as i32;
        let y = layer.forward(&Array::from_slice(x, &[rows, *inputs as i32]))?;
        to_host(&y)
    }
}
