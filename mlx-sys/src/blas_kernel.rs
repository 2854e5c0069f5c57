//! Which OpenBLAS kernel the MLX CPU backend runs on, chosen from the CPU's
//! features before OpenBLAS starts.
//!
//! Why: Debian 12's OpenBLAS 0.3.21 (a `DYNAMIC_ARCH` build with kernels up to
//! Cooperlake) picks its kernel from a table of CPU models. A CPU newer than
//! that table (e.g. Emerald Rapids, family 6 model 207) falls back to the
//! generic `Prescott` kernel: 24 instead of 227 GFLOP/s for f32 GEMM.
//! OpenBLAS honours `OPENBLAS_CORETYPE`, but reads it exactly once, in its
//! library constructor, which runs before `main`.
//!
//! How: an ELF executable's `.preinit_array` runs before any shared library's
//! constructor. Setting the variable there is not enough: glibc's own
//! constructor then resets the environment to the one the kernel passed in.
//! So the preinit function re-executes the program (`/proc/self/exe`, same
//! arguments) with `OPENBLAS_CORETYPE` added, before any library has started:
//! no state is lost, and OpenBLAS starts once, with the right kernel. The
//! cost is one extra `execve` at startup (a few milliseconds).
//!
//! It does nothing when the user set `OPENBLAS_CORETYPE` (their choice wins),
//! when MLX does not use OpenBLAS, under valgrind (which would stop tracing
//! at the exec), or when the CPU is too old for any choice to matter.
//!
//! The rule mirrors newer OpenBLAS releases: AVX-512 with BF16 → Cooperlake,
//! AVX-512 → SkylakeX (Intel and AMD Zen 4/5 alike), AVX2 + FMA → Haswell
//! (Intel and others) or Zen (AMD, Hygon), AVX → Sandybridge, SSE4.2 → Nehalem.
use std::{
    ffi::{c_char, c_void, CStr},
    sync::atomic::{AtomicU8, Ordering},
};

/// The variable OpenBLAS reads in its constructor.
pub const CORETYPE_VAR: &str = "OPENBLAS_CORETYPE";
/// How long OpenBLAS's idle threads spin, as a power of two of CPU cycles.
const THREAD_TIMEOUT_VAR: &str = "OPENBLAS_THREAD_TIMEOUT";
/// Set beside it by the re-executed process, so it knows the choice was ours.
const CHOSEN_MARK: &str = "TKR_OPENBLAS_CORETYPE_CHOSEN=1";

/// Kernels that use AVX2/FMA or better: anything else on an AVX2 machine is
/// a slow fallback.
const FAST_X86_KERNELS: &[&str] = &[
    "haswell",
    "zen",
    "skylakex",
    "cooperlake",
    "sapphirerapids",
];

/// Who decided the kernel OpenBLAS runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSource {
    /// `OPENBLAS_CORETYPE` was set by the user.
    User,
    /// tkr-embed set `OPENBLAS_CORETYPE` from the CPU's features.
    CpuFeatures,
    /// Nothing was set: OpenBLAS's own model table decided (or no OpenBLAS).
    Library,
}

impl KernelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            KernelSource::User => "OPENBLAS_CORETYPE set by the user",
            KernelSource::CpuFeatures => "chosen by tkr-embed from the CPU's features",
            KernelSource::Library => "OpenBLAS's own CPU detection",
        }
    }
}

const SOURCE_LIBRARY: u8 = 0;
const SOURCE_USER: u8 = 1;
const SOURCE_FEATURES: u8 = 2;
static SOURCE: AtomicU8 = AtomicU8::new(SOURCE_LIBRARY);

/// glibc calls the main executable's preinit functions first, with the
/// process's argc, argv and environment.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
#[used]
#[link_section = ".preinit_array"]
static CHOOSE_KERNEL_BEFORE_OPENBLAS_STARTS: extern "C" fn(
    i32,
    *const *const c_char,
    *const *const c_char,
) = choose_kernel;

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
extern "C" fn choose_kernel(_argc: i32, argv: *const *const c_char, envp: *const *const c_char) {
    // SAFETY: glibc passes the NULL-terminated environment array of the
    // process, whose entries are NUL-terminated strings.
    let env: Vec<&CStr> = unsafe { c_array(envp) };
    let has = |prefix: &[u8]| env.iter().any(|e| e.to_bytes().starts_with(prefix));
    if has(b"OPENBLAS_CORETYPE=") {
        let ours = env.iter().any(|e| e.to_bytes() == CHOSEN_MARK.as_bytes());
        SOURCE.store(if ours { SOURCE_FEATURES } else { SOURCE_USER }, Ordering::Relaxed);
        return;
    }
    let under_valgrind = env.iter().any(|e| {
        let e = e.to_bytes();
        e.starts_with(b"LD_PRELOAD=") && e.windows(9).any(|w| w == b"vgpreload")
    });
    if crate::BLAS == "bundled" || under_valgrind {
        return;
    }
    let Some(kernel) = kernel_for_this_cpu() else {
        return;
    };
    let coretype = format!("{CORETYPE_VAR}={kernel}\0");
    let mark = format!("{CHOSEN_MARK}\0");
    let mut new_env: Vec<*const c_char> = env.iter().map(|e| e.as_ptr()).collect();
    new_env.push(coretype.as_ptr().cast());
    new_env.push(mark.as_ptr().cast());
    // OpenBLAS's idle workers busy-wait 2^28 cycles (~0.1 s) after every
    // call. Our own CPU kernels run between matrix products on all cores,
    // and the spinning worker takes a core from them (measured: 15 % slower
    // images on 2 cores). 2^16 cycles still covers back-to-back products.
    let timeout = format!("{THREAD_TIMEOUT_VAR}=16\0");
    if !has(format!("{THREAD_TIMEOUT_VAR}=").as_bytes()) {
        new_env.push(timeout.as_ptr().cast());
    }
    new_env.push(std::ptr::null());
    extern "C" {
        fn execve(
            path: *const c_char,
            argv: *const *const c_char,
            envp: *const *const c_char,
        ) -> i32;
    }
    // SAFETY: all three arguments are NULL-terminated arrays / NUL-terminated
    // strings that outlive the call. On success execve does not return; on
    // failure (no /proc, say) we simply go on with OpenBLAS's own choice.
    unsafe {
        execve(c"/proc/self/exe".as_ptr(), argv, new_env.as_ptr());
    }
}

/// The entries of a NULL-terminated C array of strings.
///
/// # Safety
/// `array` is null or a NULL-terminated array of NUL-terminated strings
/// that live for the rest of the process.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
unsafe fn c_array(array: *const *const c_char) -> Vec<&'static CStr> {
    let mut out = Vec::new();
    if array.is_null() {
        return out;
    }
    let mut i = 0;
    loop {
        let p = *array.add(i);
        if p.is_null() {
            return out;
        }
        out.push(CStr::from_ptr(p));
        i += 1;
    }
}

/// The OpenBLAS kernel this CPU's instruction set allows (x86-64 only).
pub fn kernel_for_this_cpu() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let f = CpuFeatures::detect();
        kernel_for(&f)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The instruction-set facts the kernel choice depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AMD or Hygon (their AVX2 kernel is "Zen").
    pub amd: bool,
    /// AVX-512 F, CD, BW, DQ and VL (what OpenBLAS's SkylakeX kernel uses).
    pub avx512: bool,
    pub avx512_bf16: bool,
    pub avx2_fma: bool,
    pub avx: bool,
    pub sse4_2: bool,
}

impl CpuFeatures {
    /// This CPU, as the OS lets programs use it (AVX state enabled by the kernel).
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> Self {
        use std::arch::is_x86_feature_detected as has;
        // CPUID leaf 0: the vendor string in EBX, EDX, ECX.
        let leaf0 = std::arch::x86_64::__cpuid(0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
        CpuFeatures {
            amd: &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine",
            avx512: has!("avx512f")
                && has!("avx512cd")
                && has!("avx512bw")
                && has!("avx512dq")
                && has!("avx512vl"),
            avx512_bf16: has!("avx512bf16"),
            avx2_fma: has!("avx2") && has!("fma"),
            avx: has!("avx"),
            sse4_2: has!("sse4.2"),
        }
    }
}

/// The newest OpenBLAS kernel these features allow.
pub fn kernel_for(f: &CpuFeatures) -> Option<&'static str> {
    Some(if f.avx512 && f.avx512_bf16 {
        "Cooperlake"
    } else if f.avx512 {
        "SkylakeX"
    } else if f.avx2_fma && f.amd {
        "Zen"
    } else if f.avx2_fma {
        "Haswell"
    } else if f.avx {
        "Sandybridge"
    } else if f.sse4_2 {
        "Nehalem"
    } else {
        return None;
    })
}

/// What the MLX CPU backend's BLAS is actually running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlasKernel {
    /// `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH …";
    /// `None` when the BLAS in the process is not OpenBLAS.
    pub config: Option<String>,
    /// `openblas_get_corename()`, e.g. "Cooperlake".
    pub core: Option<String>,
    pub source: KernelSource,
    /// A kernel well below what the CPU can do (a generic fallback, or no
    /// OpenBLAS at all on an x86-64 machine with AVX2).
    pub slow_fallback: bool,
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// Calls a `const char *f(void)` exported by a loaded library, if any.
fn loaded_string_fn(name: &CStr) -> Option<String> {
    // SAFETY: RTLD_DEFAULT (a null handle on glibc) searches the libraries
    // already loaded; the name is NUL-terminated. The OpenBLAS functions we
    // look up take no arguments and return a static NUL-terminated string.
    unsafe {
        let f = dlsym(std::ptr::null_mut(), name.as_ptr());
        if f.is_null() {
            return None;
        }
        let f: extern "C" fn() -> *const c_char = std::mem::transmute(f);
        let s = f();
        (!s.is_null()).then(|| CStr::from_ptr(s).to_string_lossy().trim().to_owned())
    }
}

/// The BLAS kernel in use in this process.
pub fn blas_kernel() -> BlasKernel {
    let config = loaded_string_fn(c"openblas_get_config");
    let core = loaded_string_fn(c"openblas_get_corename");
    let source = match SOURCE.load(Ordering::Relaxed) {
        SOURCE_USER => KernelSource::User,
        SOURCE_FEATURES => KernelSource::CpuFeatures,
        _ => KernelSource::Library,
    };
    let cpu_has_avx2 = kernel_for_this_cpu().is_some_and(|k| {
        FAST_X86_KERNELS.contains(&k.to_ascii_lowercase().as_str())
    });
    let core_is_fast = core
        .as_deref()
        .is_some_and(|c| FAST_X86_KERNELS.contains(&c.to_ascii_lowercase().as_str()));
    BlasKernel {
        slow_fallback: cpu_has_avx2 && !core_is_fast,
        config,
        core,
        source,
    }
}
