//! Embedding throughput on the "bench" Qwen2-VL configuration (265 M
//! parameters, `benches/data/config.json`) with random weights — speed does
//! not depend on weight values. Same cases as the transformers figures in
//! `benches/data/README.md` (`benches/peer/transformers_embed.sh` measures the
//! peer on the same machine).
//!
//! Run: `cargo bench --bench embed`. Options (after `--`, or as environment):
//! - `--profile` (`BENCH_PROFILE=1`): one extra run per case with every stage
//!   evaluated on its own, printed as a table of seconds per stage, plus the
//!   share of the machine's GEMM peak that the decoder and the vision tower
//!   reach (model FLOPs / stage time vs a 2048³ matmul in this process).
//! - `--cases text8,img448,img1024x768,fused448` (`BENCH_CASES`): a subset.
//! - `BENCH_DTYPE=bfloat16`: bf16 compute; `BENCH_WEIGHTS=bfloat16`: bf16
//!   weights with float32 compute; `BENCH_MLX_ONLY=1`: everything in MLX
//!   (no CPU kernels, no ragged batches), for comparison.
//!
//! Peak RSS per case is the process's high-water mark, reset before the case
//! (`/proc/self/clear_refs`); it includes the loaded model.
use std::{collections::HashMap, path::Path, time::Instant};

use mlx_rs::{random, Array};
use tkr_embed::model::{
    config::Qwen2VlConfig, preprocess, weights::expected_shapes, ComputeType, Embedder,
    LoadOptions, PreparedInput, WeightStorage,
};

const INSTRUCTION: &str = "You are a helpful assistant.";
const ALL_CASES: &[&str] = &["text8", "img448", "img1024x768", "fused448"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let profile = args.iter().any(|a| a == "--profile")
        || std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1");
    let cases: Vec<String> = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("BENCH_CASES").ok())
        .map_or_else(
            || ALL_CASES.iter().map(|s| s.to_string()).collect(),
            |list| list.split(',').map(str::to_owned).collect(),
        );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("benches/data");
    let model = tempfile::tempdir().unwrap();
    write_random_model(
        &data,
        &root.join("tests/fixtures/qwen2vl-tiny/model"),
        model.path(),
    );
    let compute = match std::env::var("BENCH_DTYPE").as_deref() {
        Ok("bfloat16") => ComputeType::Bfloat16,
        _ => ComputeType::Float32,
    };
    let weights = match std::env::var("BENCH_WEIGHTS").as_deref() {
        Ok("bfloat16") => WeightStorage::Bfloat16,
        _ => WeightStorage::Compute,
    };
    let cpu_kernels = !std::env::var("BENCH_MLX_ONLY").is_ok_and(|v| v == "1");
    let e = Embedder::load(
        model.path(),
        LoadOptions {
            compute,
            weights,
            cpu_kernels,
            ..Default::default()
        },
    )
    .unwrap();
    let cfg = e.config().clone();
    println!(
        "{} / device {} / {} / {} compute, {} weights, {}",
        cpu_model(),
        tkr_embed::model::runtime::default_device(),
        tkr_embed::model::runtime::blas_summary(),
        compute.as_str(),
        weights.as_str(),
        if cpu_kernels {
            "CPU kernels"
        } else {
            "MLX only"
        },
    );
    if let Some(warning) = tkr_embed::model::runtime::blas_warning() {
        println!("WARNING: {warning}");
    }
    let peak = profile.then(gemm_peak_gflops);
    if let Some(peak) = peak {
        println!("GEMM peak (f32 2048³, this process): {peak:.1} GFLOP/s");
    }

    let inputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("inputs.json")).unwrap()).unwrap();
    let texts: Vec<String> = inputs["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let caption = inputs["caption"].as_str().unwrap().to_owned();
    let image_bytes = |name: &str| std::fs::read(data.join(name)).unwrap();
    let img448 = image_bytes("img448.png");
    let img1024 = image_bytes("img1024x768.png");

    // End to end: decoding, preprocessing and tokenization are inside the
    // timed closure.
    let prepare = |text: &str, image: Option<&[u8]>| -> PreparedInput {
        let images = image
            .map(|bytes| {
                let rgb = preprocess::decode_image(bytes, u64::MAX).unwrap();
                preprocess::preprocess_image(&rgb, 200_704, 1_003_520).unwrap()
            })
            .into_iter()
            .collect();
        e.prepare(INSTRUCTION, text, images).unwrap()
    };
    for case in &cases {
        let (label, items, batch): (&str, usize, Box<dyn Fn() -> Vec<PreparedInput>>) =
            match case.as_str() {
                "text8" => (
                    "8 texts in one batch",
                    texts.len(),
                    Box::new(|| texts.iter().map(|t| prepare(t, None)).collect()),
                ),
                "img448" => (
                    "one 448x448 image",
                    1,
                    Box::new(|| vec![prepare("", Some(&img448))]),
                ),
                "img1024x768" => (
                    "one 1024x768 image",
                    1,
                    Box::new(|| vec![prepare("", Some(&img1024))]),
                ),
                "fused448" => (
                    "448x448 image + caption",
                    1,
                    Box::new(|| vec![prepare(&caption, Some(&img448))]),
                ),
                other => panic!("unknown case {other} (cases: {})", ALL_CASES.join(",")),
            };
        reset_peak_rss();
        report(label, items, || {
            e.embed_batch(&batch()).unwrap();
        });
        if let Some(peak) = peak {
            e.start_stage_timing();
            let prepared = batch();
            e.embed_batch(&prepared).unwrap();
            print_stages(&e.stop_stage_timing(), &cfg, &prepared, peak);
        }
    }
}

/// Median of 5 runs after a warm-up, and the peak RSS since the last reset.
fn report(name: &str, items: usize, mut run: impl FnMut()) {
    run();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[2];
    let rss = peak_rss_mib().map_or("?".to_owned(), |m| format!("{m:.0} MiB"));
    println!(
        "{name:<28} {median:7.3} s  {:7.3} items/s  peak RSS {rss}",
        items as f64 / median
    );
}

fn print_stages(stages: &[(&str, f64)], cfg: &Qwen2VlConfig, batch: &[PreparedInput], peak: f64) {
    let total: f64 = stages.iter().map(|(_, s)| s).sum();
    for (name, secs) in stages {
        println!(
            "    {name:<40} {:8.1} ms {:5.1} %",
            secs * 1e3,
            100.0 * secs / total
        );
    }
    println!(
        "    {:<40} {:8.1} ms",
        "total (stages evaluated one by one)",
        total * 1e3
    );
    let time_of = |prefix: &str| -> f64 {
        stages
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, s)| s)
            .sum()
    };
    let flops = model_flops(cfg, batch);
    for (part, gflop, secs) in [
        ("decoder", flops.decoder / 1e9, time_of("decoder")),
        ("vision tower", flops.vision / 1e9, time_of("vision")),
    ] {
        if secs > 0.0 && gflop > 0.0 {
            let rate = gflop / secs;
            println!(
                "    {part}: {gflop:.1} GFLOP in {:.1} ms = {rate:.1} GFLOP/s = {:.0} % of GEMM peak",
                secs * 1e3,
                100.0 * rate / peak
            );
        }
    }
}

struct Flops {
    decoder: f64,
    vision: f64,
}

/// Multiply-adds × 2 of the linear layers and attention products (softmax,
/// norms and elementwise work not counted), for the padded batch as run.
fn model_flops(cfg: &Qwen2VlConfig, batch: &[PreparedInput]) -> Flops {
    let t = &cfg.text;
    let (h, hd) = (t.hidden_size as f64, t.head_dim() as f64);
    let (nh, nkv, inter) = (
        t.num_attention_heads as f64,
        t.num_key_value_heads as f64,
        t.intermediate_size as f64,
    );
    let len = batch.iter().map(|i| i.ids.len()).max().unwrap_or(0) as f64;
    let tokens = batch.len() as f64 * len;
    let per_token = h * nh * hd + 2.0 * h * nkv * hd + nh * hd * h + 3.0 * h * inter;
    let layers = t.num_hidden_layers as f64;
    let decoder =
        layers * (2.0 * tokens * per_token + 4.0 * batch.len() as f64 * nh * len * len * hd);

    let v = &cfg.vision;
    let (ed, mlp) = (v.embed_dim as f64, v.mlp_hidden() as f64);
    let window = (v.spatial_merge_size * v.spatial_merge_size) as f64;
    let vision = batch
        .iter()
        .flat_map(|i| &i.images)
        .map(|img| {
            let n = (img.pixel_values.len() / v.patch_dim()) as f64;
            let block = 2.0 * n * (3.0 * ed * ed + ed * ed + 2.0 * ed * mlp) + 4.0 * n * n * ed;
            let merged = ed * window;
            2.0 * n * v.patch_dim() as f64 * ed
                + v.depth as f64 * block
                + 2.0 * (n / window) * (merged * merged + merged * v.hidden_size as f64)
        })
        .sum();
    Flops { decoder, vision }
}

/// f32 GEMM speed of this process's BLAS (same as `cargo bench --bench matmul`, 2048³).
fn gemm_peak_gflops() -> f64 {
    let n = 2048;
    let a = random::normal::<f32>(&[n, n], None, None, None).unwrap();
    let b = random::normal::<f32>(&[n, n], None, None, None).unwrap();
    let run = || mlx_rs::ops::matmul(&a, &b).unwrap().eval().unwrap();
    run();
    let t = Instant::now();
    for _ in 0..4 {
        run();
    }
    4.0 * 2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9
}

/// The CPU's model name (`lscpu`'s "Model name"), for the record.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (Linux ≥ 4.0); harmless elsewhere.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A checkpoint of the bench config's shapes with N(0, 0.02) weights (norm
/// weights 1), plus the tiny fixture's tokenizer.
fn write_random_model(data: &Path, tokenizer_dir: &Path, out: &Path) {
    let config_text = std::fs::read_to_string(data.join("config.json")).unwrap();
    std::fs::write(out.join("config.json"), &config_text).unwrap();
    std::fs::copy(
        tokenizer_dir.join("tokenizer.json"),
        out.join("tokenizer.json"),
    )
    .unwrap();
    let cfg = Qwen2VlConfig::from_json(&config_text).unwrap();
    let mut tensors = HashMap::new();
    for (name, shape) in expected_shapes(&cfg) {
        let array = if name.contains("norm") && name.ends_with("weight") {
            mlx_rs::ops::ones::<f32>(&shape).unwrap()
        } else {
            random::normal::<f32>(&shape, 0.0, 0.02, None).unwrap()
        };
        tensors.insert(name, array.as_dtype(mlx_rs::Dtype::Bfloat16).unwrap());
    }
    Array::save_safetensors(&tensors, None, out.join("model.safetensors")).unwrap();
}
