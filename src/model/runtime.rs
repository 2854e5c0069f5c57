//! Facts about the MLX runtime this binary was built against, and the choice
//! of device.
use crate::config::DeviceChoice;

/// The MLX device computations run on by default ("Device(cpu, 0)", "Device(gpu, 0)").
pub fn default_device() -> String {
    format!("{}", mlx_rs::Device::default())
}

/// The BLAS the MLX CPU backend uses (a library directory, or `bundled`).
pub fn blas() -> &'static str {
    mlx_sys::BLAS
}

pub use mlx_sys::blas_kernel::{BlasKernel, KernelSource};

/// The BLAS kernel running in this process (see `mlx-sys/src/blas_kernel.rs`
/// for how it is chosen before OpenBLAS starts).
pub fn blas_kernel() -> BlasKernel {
    mlx_sys::blas_kernel::blas_kernel()
}

/// One line for people: library, kernel and who chose it.
pub fn blas_summary() -> String {
    let k = blas_kernel();
    let library = match &k.config {
        // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH …" → "OpenBLAS 0.3.21"
        Some(config) => config
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        None if blas() == "bundled" => "reference BLAS (bundled with MLX)".to_owned(),
        None => format!("BLAS from {}", blas()),
    };
    match &k.core {
        Some(core) => format!("{library}, kernel {core} ({})", k.source.as_str()),
        None => library,
    }
}

/// A loud explanation when matrix products run far below this CPU's speed,
/// or `None` when the BLAS kernel fits the CPU.
pub fn blas_warning() -> Option<String> {
    let k = blas_kernel();
    if !k.slow_fallback || gpu_selected_now() {
        return None;
    }
    Some(match (&k.core, blas()) {
        (None, "bundled") => "MLX runs on its bundled reference BLAS, about 30x slower than \
             OpenBLAS: install libopenblas0-pthread and rebuild (cargo clean -p mlx-sys)"
            .to_owned(),
        (Some(core), _) => format!(
            "OpenBLAS runs its generic {core} kernel on a CPU with AVX2 or better: matrix \
             products are up to 10x slower ({}); unset OPENBLAS_CORETYPE or set it to {}",
            k.source.as_str(),
            mlx_sys::blas_kernel::kernel_for_this_cpu().unwrap_or("Haswell")
        ),
        (None, dir) => format!("the BLAS in {dir} is not OpenBLAS; its speed is unknown"),
    })
}

/// The BLAS facts for `/info` and `config show --json`.
pub fn blas_report() -> serde_json::Value {
    let k = blas_kernel();
    serde_json::json!({
        "library": blas(),
        "summary": blas_summary(),
        "openblas_config": k.config,
        "kernel": k.core,
        "kernel_chosen_by": k.source.as_str(),
        "slow_fallback": k.slow_fallback,
        "warning": blas_warning(),
    })
}

/// Whether MLX's default device is a GPU (then BLAS speed does not matter).
fn gpu_selected_now() -> bool {
    default_device().contains("gpu")
}

/// Whether MLX has a GPU (Metal or CUDA) in this build on this machine.
pub fn gpu_available() -> bool {
    mlx_sys::gpu_count() > 0
}

/// Whether the configured device means computing on the GPU.
pub fn gpu_selected(choice: DeviceChoice) -> bool {
    match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Gpu => true,
        DeviceChoice::Auto => gpu_available(),
    }
}

/// Makes the chosen device MLX's default for the calling thread's work.
/// Must run on the model thread before the model is loaded.
pub fn select_device(gpu: bool) -> Result<String, super::ModelError> {
    if gpu && !gpu_available() {
        return Err(super::ModelError::Config(
            "model.device is gpu but this MLX build has no GPU (Metal or CUDA); \
             use device: cpu or auto"
                .into(),
        ));
    }
    let device = if gpu {
        mlx_rs::Device::gpu()
    } else {
        mlx_rs::Device::cpu()
    };
    mlx_rs::Device::set_default(&device);
    Ok(default_device())
}
