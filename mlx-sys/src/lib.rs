#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(dead_code)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

pub mod blas_kernel;

/// mlx-rs seeds its default PRNG state with `mach_sys::mach_time::mach_approximate_time()`,
/// a Darwin-only libc function that the mach-sys crate merely declares. Provide it
/// elsewhere (monotonic nanoseconds) so `mlx_rs::random` links and works on Linux.
#[cfg(not(target_vendor = "apple"))]
#[no_mangle]
pub extern "C" fn mach_approximate_time() -> u64 {
    let mut ts = std::mem::MaybeUninit::<[i64; 2]>::zeroed();
    // SAFETY: clock_gettime writes a `struct timespec` (two 64-bit fields on the
    // 64-bit targets this crate supports).
    extern "C" {
        fn clock_gettime(clk: i32, ts: *mut [i64; 2]) -> i32;
    }
    const CLOCK_MONOTONIC: i32 = 1;
    unsafe {
        clock_gettime(CLOCK_MONOTONIC, ts.as_mut_ptr());
        let [s, ns] = ts.assume_init();
        (s as u64).wrapping_mul(1_000_000_000).wrapping_add(ns as u64)
    }
}

/// Which BLAS/LAPACK the MLX CPU backend was linked against at build time:
/// a directory (e.g. Debian's OpenBLAS) or `bundled` (the wheel's reference BLAS).
pub const BLAS: &str = env!("MLX_SYS_BLAS");

/// Number of GPUs MLX can use (Metal or CUDA); 0 on a CPU-only build.
pub fn gpu_count() -> i32 {
    let mut count: std::os::raw::c_int = 0;
    // SAFETY: mlx_device_count writes one int through the pointer we own.
    let status = unsafe { mlx_device_count(&mut count, mlx_device_type__MLX_GPU) };
    if status == 0 {
        count
    } else {
        0
    }
}
