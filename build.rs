//! Adds an rpath to MLX's shared library (found by our `mlx-sys` build) so the
//! `tkr-embed` binary, tests and examples run outside `cargo run`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
