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
