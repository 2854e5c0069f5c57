//! An rpath to MLX's shared library (found by `mlx-sys`), so the fuzz
//! targets run without LD_LIBRARY_PATH (same as the main crate's build.rs).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
