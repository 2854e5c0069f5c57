//! Linear layers, dense or quantized with MLX's affine group quantization.
use mlx_rs::{ops, Array, Dtype};

use super::ModelError;

/// How the decoder's linear layers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantSpec {
    None,
    Bits { bits: i32, group_size: i32 },
}

pub enum Linear {
    Dense {
        /// `[in, out]`: transposed once at load so forward is a plain matmul.
        /// Kept in the storage dtype (bf16 weights with f32 compute are cast
        /// per forward, so only one layer at a time exists in f32).
        weight_t: Array,
        bias: Option<Array>,
        compute: Dtype,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
    },
}

impl Linear {
    /// `weight` is `[out, in]` as in PyTorch checkpoints, in its storage
    /// dtype; the layer computes in `compute`.
    pub fn new(
        weight: Array,
        bias: Option<Array>,
        quant: QuantSpec,
        compute: Dtype,
    ) -> Result<Self, ModelError> {
        let in_features = weight.shape()[1];
        let bias = bias.map(|b| b.as_dtype(compute)).transpose()?;
        match quant {
            // MLX packs whole groups along the input axis; layers whose input
            // size is not a multiple of the group size stay dense.
            QuantSpec::Bits { bits, group_size } if in_features % group_size == 0 => {
                let (weight, scales, biases) =
                    ops::quantize(&weight.as_dtype(compute)?, group_size, bits)?;
                Ok(Linear::Quantized {
                    weight,
                    scales,
                    biases,
                    bias,
                    group_size,
                    bits,
                })
            }
            _ => Ok(Linear::Dense {
                weight_t: weight.t(),
                bias,
                compute,
            }),
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array, ModelError> {
        match self {
            // One GEMM that starts from the bias (C = bias, beta = 1) instead
            // of a GEMM and a separate pass to add it.
            Linear::Dense {
                weight_t,
                bias: Some(bias),
                compute,
            } => Ok(ops::addmm(
                bias,
                x,
                as_dtype(weight_t, *compute)?,
                1.0,
                1.0,
            )?),
            Linear::Dense {
                weight_t,
                bias: None,
                compute,
            } => Ok(ops::matmul(x, as_dtype(weight_t, *compute)?)?),
            Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                group_size,
                bits,
            } => {
                let y = ops::quantized_matmul(x, weight, scales, biases, true, *group_size, *bits)?;
                Ok(match bias {
                    Some(b) => ops::add(&y, b)?,
                    None => y,
                })
            }
        }
    }
}

/// `array` in `dtype`, without a cast node when it already is.
pub fn as_dtype(array: &Array, dtype: Dtype) -> Result<Array, ModelError> {
    Ok(if array.dtype() == dtype {
        array.clone()
    } else {
        array.as_dtype(dtype)?
    })
}
