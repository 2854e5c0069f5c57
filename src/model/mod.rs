//! The only module that talks to MLX (mlx-rs). Nothing of mlx leaves it.
pub mod runtime;
