//! Build script for the project-owned `mlx-sys` (Linux).
//!
//! 1. mlx-c sources: taken from the crates.io `mlx-sys` package of the same
//!    version (it ships them in `src/mlx-c`), downloaded by a nested
//!    `cargo metadata` on a throw-away manifest in OUT_DIR. Nothing is vendored
//!    into this repository. Override with `MLX_C_SRC=/path/to/mlx-c`.
//! 2. MLX itself: the prebuilt `libmlx.so` from the PyPI wheel `mlx-cpu`
//!    (installed with pip into OUT_DIR). Override with `MLX_PREFIX=<dir with
//!    include/ lib/ share/cmake/MLX>` or pick another wheel with
//!    `MLX_WHEEL=mlx-cuda-12==0.32.2`.
//! 3. mlx-c is compiled with CMake against that MLX (MLX_C_USE_SYSTEM_MLX=ON)
//!    into a static `libmlxc.a`; bindgen generates the same bindings as the
//!    crates.io crate so that mlx-rs compiles unchanged.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// crates.io `mlx-sys` release whose `src/mlx-c` we compile (= this crate's version).
const UPSTREAM_MLX_SYS: &str = env!("CARGO_PKG_VERSION");
/// MLX release that mlx-c 0.7.0 pins in its CMakeLists (`GIT_TAG v0.32.2`).
/// Linux: the CPU wheel (`MLX_WHEEL=mlx-cuda-12==0.32.2` for NVIDIA).
/// macOS: the Metal wheel, which carries `mlx.metallib` next to `libmlx.dylib`
/// (not testable on our Linux machines; kept deliberately simple).
const DEFAULT_WHEEL_LINUX: &str = "mlx-cpu==0.32.2";
const DEFAULT_WHEEL_MACOS: &str = "mlx-metal==0.32.2";
/// Debian's `libopenblas0-pthread` installs BLAS/LAPACK here. When present it
/// replaces the wheel's bundled netlib reference BLAS (33x faster sgemm).
const DEBIAN_OPENBLAS_DIR: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread";

fn main() {
    for var in [
        "MLX_C_SRC",
        "MLX_PREFIX",
        "MLX_WHEEL",
        "MLX_PYTHON",
        "MLX_SYS_BLAS_DIR",
        "MLX_SYS_NO_OPENBLAS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=half_prelude.h");

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let prelude = manifest_dir.join("half_prelude.h");

    let mlx_c = mlx_c_sources(&out);
    let blas = blas_dir();
    let prefix = mlx_prefix(&out, blas.is_some());
    if let (Some(blas), None) = (&blas, env::var_os("MLX_PREFIX")) {
        swap_blas(&prefix, blas); // only ever touch our private copy in OUT_DIR
    }
    // Lets dependents (and `tkr-embed config show`) say which BLAS MLX uses.
    let blas_name = blas.as_ref().map_or("bundled".to_owned(), |d| d.display().to_string());
    println!("cargo:rustc-env=MLX_SYS_BLAS={blas_name}");
    let lib_dir = prefix.join("lib");
    let include_dir = prefix.join("include");

    // ---- mlx-c (static) against the prebuilt MLX --------------------------
    let dst = cmake::Config::new(&mlx_c)
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("MLX_DIR", prefix.join("share/cmake/MLX"))
        .define("CMAKE_INSTALL_LIBDIR", "lib")
        // mlx-c is a thin wrapper: always optimise it, even in debug profiles.
        .profile("Release")
        .cxxflag(format!(
            "-include {} -I{}",
            prelude.display(),
            include_dir.display()
        ))
        .build();

    println!("cargo:rustc-link-search=native={}", dst.join("lib").display());
    println!("cargo:rustc-link-lib=static=mlxc");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo:rustc-link-lib=dylib=c++");
    } else {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }

    // Visible to direct dependents as DEP_MLX_LIB_DIR / DEP_MLX_INCLUDE /
    // DEP_MLX_MLX_C (e.g. to add an rpath for binaries run outside cargo).
    println!("cargo:lib_dir={}", lib_dir.display());
    println!("cargo:include={}", include_dir.display());
    println!("cargo:mlx_c={}", mlx_c.display());

    // ---- bindings ----------------------------------------------------------
    let mut headers: Vec<PathBuf> = fs::read_dir(mlx_c.join("mlx/c"))
        .expect("mlx-c header directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "h"))
        .collect();
    headers.sort();
    let mut builder = bindgen::Builder::default()
        .rust_target(bindgen::RustTarget::stable(73, 0).unwrap_or_else(|_| panic!("rust target")))
        .clang_arg(format!("-I{}", mlx_c.display()))
        .clang_arg("-include")
        .clang_arg(prelude.display().to_string())
        // size_t-based prototypes of these trip rustc's
        // suspicious_runtime_symbol_definitions lint; nobody needs them.
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    for h in &headers {
        builder = builder.header(h.display().to_string());
    }
    builder
        .generate()
        .expect("bindgen failed")
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// Directory containing mlx-c's CMakeLists.txt and mlx/c/*.h.
fn mlx_c_sources(out: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("MLX_C_SRC") {
        return PathBuf::from(dir);
    }
    // A one-off package, outside any workspace, that depends on the crates.io
    // release. `cargo metadata` downloads and unpacks it into Cargo's registry
    // cache (or finds it through the user's source replacement / vendoring) and
    // tells us where it is.
    let side = out.join("mlx-c-source");
    fs::create_dir_all(side.join("src")).unwrap();
    fs::write(
        side.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mlx-c-source\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[lib]\npath = \"src/lib.rs\"\n\n[dependencies]\n\
             mlx-sys = {{ version = \"={UPSTREAM_MLX_SYS}\", default-features = false }}\n\n\
             [workspace]\n"
        ),
    )
    .unwrap();
    fs::write(side.join("src/lib.rs"), "").unwrap();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(side.join("Cargo.toml"));
    if env::var_os("CARGO_NET_OFFLINE").is_some_and(|v| v == "true") {
        cmd.arg("--offline");
    }
    let output = cmd.output().expect("failed to run cargo metadata");
    if !output.status.success() {
        panic!(
            "cargo metadata for the mlx-c sources failed (set MLX_C_SRC to skip it):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mlx-sys" && p["version"] == UPSTREAM_MLX_SYS)
        .expect("mlx-sys not in cargo metadata output");
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap());
    let dir = manifest.parent().unwrap().join("src/mlx-c");
    assert!(
        dir.join("CMakeLists.txt").is_file(),
        "no mlx-c in {}",
        dir.display()
    );
    dir
}

/// Prefix of an MLX install: include/, lib/libmlx.so, share/cmake/MLX/.
fn mlx_prefix(out: &Path, want_blas_swap: bool) -> PathBuf {
    if let Some(dir) = env::var_os("MLX_PREFIX") {
        return PathBuf::from(dir);
    }
    let default_wheel = if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        DEFAULT_WHEEL_MACOS
    } else {
        DEFAULT_WHEEL_LINUX
    };
    let wheel = env::var("MLX_WHEEL").unwrap_or_else(|_| default_wheel.to_owned());
    // Keyed by the requirement so switching wheels never mixes files.
    let key: String = wheel
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
        .collect();
    let target = out.join(format!("wheel-{key}"));
    let prefix = target.join("mlx");
    let swapped = fs::read_dir(target.join("mlx_cpu.libs"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_symlink()));
    if swapped && !want_blas_swap {
        // BLAS was swapped by an earlier build; start again from the pristine wheel.
        fs::remove_dir_all(&target).unwrap();
    }
    if prefix.join("share/cmake/MLX/MLXConfig.cmake").is_file() {
        return prefix;
    }
    let python = env::var("MLX_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-compile",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .arg(&wheel)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python} -m pip ({e}); set MLX_PREFIX instead"));
    assert!(status.success(), "pip install {wheel} failed; set MLX_PREFIX instead");
    assert!(
        prefix.join("share/cmake/MLX/MLXConfig.cmake").is_file(),
        "{wheel} did not provide mlx/share/cmake/MLX"
    );
    prefix
}

/// Which BLAS/LAPACK directory should replace the wheel's bundled reference
/// BLAS: `MLX_SYS_BLAS_DIR` if set (empty = none), else Debian's OpenBLAS when
/// installed, unless `MLX_SYS_NO_OPENBLAS=1`. Never on macOS (Accelerate).
fn blas_dir() -> Option<PathBuf> {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        return None;
    }
    if let Some(dir) = env::var_os("MLX_SYS_BLAS_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    if env::var("MLX_SYS_NO_OPENBLAS").is_ok_and(|v| v == "1" || v == "true") {
        return None;
    }
    let debian = PathBuf::from(DEBIAN_OPENBLAS_DIR);
    (debian.join("libblas.so.3").is_file() && debian.join("liblapack.so.3").is_file())
        .then_some(debian)
}

/// The mlx-cpu wheel bundles netlib's *reference* BLAS/LAPACK (~4 GFLOP/s sgemm
/// here). The bundled copies next to our private libmlx.so are replaced by
/// symlinks to `dir`'s libblas.so.3 / liblapack.so.3. libmlx.so finds them by
/// file name through its $ORIGIN rpath, so no binary changes.
fn swap_blas(prefix: &Path, dir: &Path) {
    let libs = prefix.parent().unwrap().join("mlx_cpu.libs");
    for entry in fs::read_dir(&libs).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let replacement = if name.starts_with("libblas-") {
            dir.join("libblas.so.3")
        } else if name.starts_with("liblapack-") {
            dir.join("liblapack.so.3")
        } else {
            continue;
        };
        assert!(replacement.is_file(), "{} not found", replacement.display());
        fs::remove_file(entry.path()).unwrap();
        std::os::unix::fs::symlink(&replacement, entry.path()).unwrap();
    }
}
