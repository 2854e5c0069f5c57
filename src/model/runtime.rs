//! Facts about the MLX runtime this binary was built against.

/// The MLX device computations run on by default ("Device(cpu, 0)", "Device(gpu, 0)").
pub fn default_device() -> String {
    format!("{}", mlx_rs::Device::default())
}

/// The BLAS the MLX CPU backend uses (a library directory, or `bundled`).
pub fn blas() -> &'static str {
    mlx_sys::BLAS
}
