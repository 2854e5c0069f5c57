//! f32 matmul throughput through mlx-rs (which BLAS MLX links matters ~30x on
//! Linux CPU). Run: `cargo bench --bench matmul`. Prints GFLOP/s per size.
use std::time::Instant;

use mlx_rs::{ops, random, Array};

fn main() {
    println!(
        "device {} / blas {}",
        tkr_embed::model::runtime::default_device(),
        tkr_embed::model::runtime::blas()
    );
    for n in [256, 512, 1024, 2048] {
        let a = random::normal::<f32>(&[n, n], None, None, None).unwrap();
        let b = random::normal::<f32>(&[n, n], None, None, None).unwrap();
        let run = |a: &Array, b: &Array| ops::matmul(a, b).unwrap().eval().unwrap();
        run(&a, &b); // warm-up
        let flops = 2.0 * (n as f64).powi(3);
        let iters = ((2e10 / flops) as usize).clamp(2, 200);
        let start = Instant::now();
        for _ in 0..iters {
            run(&a, &b);
        }
        let secs = start.elapsed().as_secs_f64() / iters as f64;
        println!(
            "matmul f32 {n}x{n}: {:8.2} ms  {:7.1} GFLOP/s",
            secs * 1e3,
            flops / secs / 1e9
        );
    }
}
