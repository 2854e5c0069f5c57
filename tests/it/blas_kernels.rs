//! The BLAS kernel under MLX: chosen from the CPU's features before OpenBLAS
//! starts, reported, overridable, and numerically equal to the reference
//! fixtures with every kernel this CPU can run.
use std::process::Command;

use mlx_sys::blas_kernel::{kernel_for, CpuFeatures};
use serde_json::Value;

use crate::model_parity::{fixture_dir, floats, max_abs_diff, reference};

fn tkr(args: &[&str], coretype: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tkr-embed"));
    cmd.args(args)
        .env_remove("TKR_LOG")
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("TKR_OPENBLAS_CORETYPE_CHOSEN");
    if let Some(kernel) = coretype {
        cmd.env("OPENBLAS_CORETYPE", kernel);
    }
    cmd.output().unwrap()
}

fn blas_report(coretype: Option<&str>) -> Value {
    let out = tkr(&["config", "show", "--json"], coretype);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runtime"]["blas"].clone()
}

/// CI installs OpenBLAS; a build without it cannot test kernel selection.
fn openblas_in_use() -> bool {
    let report = blas_report(None);
    let ours = report["openblas_config"].is_string();
    if !ours {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build against OpenBLAS (libopenblas0-pthread): {report}"
        );
        eprintln!("not OpenBLAS ({report}); kernel checks do not apply");
    }
    ours
}

#[test]
fn feature_rule_picks_the_newest_kernel_the_instruction_set_allows() {
    let cpu = |avx512, bf16, avx2, amd| CpuFeatures {
        amd,
        avx512,
        avx512_bf16: bf16,
        avx2_fma: avx2,
        avx: avx2,
        sse4_2: true,
    };
    // Sapphire/Emerald Rapids, Zen 4: AVX-512 with BF16.
    assert_eq!(
        kernel_for(&cpu(true, true, true, false)),
        Some("Cooperlake")
    );
    assert_eq!(kernel_for(&cpu(true, true, true, true)), Some("Cooperlake"));
    // Skylake-SP, Ice Lake.
    assert_eq!(kernel_for(&cpu(true, false, true, false)), Some("SkylakeX"));
    // Haswell .. Alder Lake; Zen 1-3.
    assert_eq!(kernel_for(&cpu(false, false, true, false)), Some("Haswell"));
    assert_eq!(kernel_for(&cpu(false, false, true, true)), Some("Zen"));
    assert_eq!(
        kernel_for(&CpuFeatures {
            avx: true,
            sse4_2: true,
            ..CpuFeatures::default()
        }),
        Some("Sandybridge")
    );
    assert_eq!(kernel_for(&CpuFeatures::default()), None);
}

#[test]
fn kernel_is_chosen_from_cpu_features_and_a_user_choice_wins() {
    if !openblas_in_use() {
        return;
    }
    let want = mlx_sys::blas_kernel::kernel_for_this_cpu().expect("an x86-64 CPU from 2008 on");
    let report = blas_report(None);
    assert_eq!(report["kernel"], want, "{report}");
    assert_eq!(
        report["kernel_chosen_by"],
        "chosen by tkr-embed from the CPU's features"
    );
    assert_eq!(report["slow_fallback"], false);
    assert!(report["warning"].is_null());

    // The user's OPENBLAS_CORETYPE is honoured; a generic one is flagged.
    let report = blas_report(Some("Prescott"));
    assert_eq!(report["kernel"], "Prescott");
    assert_eq!(
        report["kernel_chosen_by"],
        "OPENBLAS_CORETYPE set by the user"
    );
    assert_eq!(report["slow_fallback"], true);
    assert!(report["warning"].as_str().unwrap().contains("Prescott"));
    let text = tkr(&["config", "show"], Some("Prescott"));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("# WARNING:") && text.contains(want), "{text}");
}

/// Every reference case, embedded by the binary with each kernel this CPU
/// can run, within the fixtures' float32 tolerance.
#[test]
fn every_kernel_this_cpu_runs_matches_the_reference() {
    if !openblas_in_use() {
        return;
    }
    let f = CpuFeatures::detect();
    let kernels: Vec<&str> = [
        ("Cooperlake", f.avx512 && f.avx512_bf16),
        ("SkylakeX", f.avx512),
        ("Haswell", f.avx2_fma),
        ("Zen", f.avx2_fma),
        ("Sandybridge", f.avx),
        ("Nehalem", f.sse4_2),
        ("Prescott", true),
    ]
    .into_iter()
    .filter_map(|(k, ok)| ok.then_some(k))
    .collect();

    // One JSON line per reference row (batch cases give one line per row).
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    let mut want = Vec::new();
    for c in reference()["cases"].as_array().unwrap() {
        let images: Vec<String> = c["images"].as_array().map_or(Vec::new(), |a| {
            a.iter()
                .map(|n| {
                    let path = fixture_dir().join(format!("images/{}.png", n.as_str().unwrap()));
                    path.display().to_string()
                })
                .collect()
        });
        let rows = c["embedding_fp32"].as_array().unwrap();
        for (r, embedding) in rows.iter().enumerate() {
            let text = c["texts"].as_array().map_or("", |t| t[r].as_str().unwrap());
            let row_images: Vec<&String> = if rows.len() == 1 {
                images.iter().collect()
            } else {
                images.get(r).into_iter().collect()
            };
            lines.push(serde_json::json!({
                "text": text,
                "images": row_images,
                "instruction": c["instruction"],
            }));
            want.push((c["id"].as_str().unwrap().to_owned(), floats(embedding)));
        }
    }
    let input = dir.path().join("cases.jsonl");
    let body: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&input, body.join("\n")).unwrap();

    let model = fixture_dir().join("model");
    for kernel in kernels {
        let out = tkr(
            &[
                "--model",
                &model.display().to_string(),
                "embed",
                "--input",
                &input.display().to_string(),
                "--json",
            ],
            Some(kernel),
        );
        assert!(
            out.status.success(),
            "{kernel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        let mut worst = 0.0f32;
        for (g, (id, w)) in got.iter().zip(&want) {
            let d = max_abs_diff(&floats(&g["embedding"]), w);
            assert!(d <= 1e-5, "kernel {kernel}, case {id}: max |d| {d}");
            worst = worst.max(d);
        }
        eprintln!("kernel {kernel}: {} rows, max |d| {worst:.2e}", want.len());
        assert_eq!(blas_report(Some(kernel))["kernel"], kernel);
    }
}
