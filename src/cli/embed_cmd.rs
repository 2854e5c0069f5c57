//! `tkr-embed embed`: embeddings straight from the model, as JSON.
use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::json;

use crate::{
    config::{ConfigSources, Layer, Source},
    engine::{EmbedRequest, ImageData},
};

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Compute dtype (default: float32 on CPU, bfloat16 on GPU).
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// Quantize the decoder's linear layers.
    #[arg(long, value_enum)]
    quantize: Option<QuantArg>,
    /// Keep weights in bfloat16 and compute in float32, layer by layer
    /// (half the memory of float32 weights; default: when they would not fit).
    #[arg(long, value_enum)]
    weight_storage: Option<WeightStorageArg>,
    /// System-turn instruction (default: model.instruction).
    #[arg(long)]
    instruction: Option<String>,
    /// Text to embed ("" is a valid empty text).
    #[arg(long)]
    text: Option<String>,
    /// Image file to embed (repeat for several images; they precede the text).
    #[arg(long = "image", value_name = "PATH")]
    images: Vec<PathBuf>,
    /// JSON Lines file: each line {"text"?, "images"?: [paths], "instruction"?};
    /// one output line per input line, in order, computed in batches.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["text", "images"])]
    input: Option<PathBuf>,
    /// Print JSON (one object per input) instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DtypeArg {
    Float32,
    Bfloat16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WeightStorageArg {
    Compute,
    Bfloat16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QuantArg {
    None,
    Q8,
    Q4,
}

impl EmbedArgs {
    /// Flags that are configuration values (highest precedence).
    pub fn config_flags(&self, flags: &mut Layer) {
        if let Some(d) = self.dtype {
            let v = match d {
                DtypeArg::Float32 => "float32",
                DtypeArg::Bfloat16 => "bfloat16",
            };
            flags.set("model.dtype", v, Source::Flag("--dtype".into()));
        }
        if let Some(q) = self.quantize {
            let v = match q {
                QuantArg::None => "none",
                QuantArg::Q8 => "q8",
                QuantArg::Q4 => "q4",
            };
            flags.set("model.quantization", v, Source::Flag("--quantize".into()));
        }
        if let Some(w) = self.weight_storage {
            let v = match w {
                WeightStorageArg::Compute => "compute",
                WeightStorageArg::Bfloat16 => "bfloat16",
            };
            flags.set(
                "model.weight_storage",
                v,
                Source::Flag("--weight-storage".into()),
            );
        }
        if let Some(i) = &self.instruction {
            flags.set(
                "model.instruction",
                i.clone(),
                Source::Flag("--instruction".into()),
            );
        }
    }
}

/// One line of an `--input` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    text: Option<String>,
    #[serde(default)]
    images: Vec<PathBuf>,
    instruction: Option<String>,
}

pub fn run(args: EmbedArgs, loaded: &ConfigSources) -> anyhow::Result<()> {
    let requests = match &args.input {
        Some(file) => read_input_file(file)?,
        None => {
            if args.text.is_none() && args.images.is_empty() {
                bail!("nothing to embed: give --text, --image or --input");
            }
            let images = args
                .images
                .iter()
                .map(|p| read_image(p, None))
                .collect::<anyhow::Result<Vec<_>>>()?;
            vec![EmbedRequest {
                text: args.text.clone().unwrap_or_default(),
                images,
                instruction: None,
            }]
        }
    };
    let engine = super::start_engine(loaded)?;
    let model = engine.info().model_id.clone();
    let dim = engine.info().dim;
    let progress = super::progress_bar(requests.len() as u64, "embedding");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Chunks bound memory for big input files; each chunk is queued at once
    // so the engine batches it.
    let chunk = (engine.config().max_batch_size * 4).max(1);
    let mut line = 0;
    for group in requests.chunks(chunk) {
        for result in engine.embed_many(group.to_vec()) {
            line += 1;
            let embedding = result.with_context(|| match &args.input {
                Some(f) => format!("{}: line {line}", f.display()),
                None => "embedding failed".to_owned(),
            })?;
            if args.json {
                let obj = json!({"model": model, "dim": dim, "embedding": embedding});
                writeln!(out, "{obj}")?;
            } else {
                let head: Vec<String> = embedding
                    .iter()
                    .take(6)
                    .map(|x| format!("{x:.6}"))
                    .collect();
                writeln!(out, "[{line}] dim {dim}: [{}, …]", head.join(", "))?;
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    Ok(())
}

fn read_input_file(file: &Path) -> anyhow::Result<Vec<EmbedRequest>> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let base = file.parent().map(Path::to_owned);
    let mut requests = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let where_ = || format!("{}: line {}", file.display(), n + 1);
        let line = line.with_context(where_)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: InputLine = serde_json::from_str(&line).with_context(where_)?;
        if parsed.text.is_none() && parsed.images.is_empty() {
            bail!("{}: needs \"text\" or \"images\"", where_());
        }
        let images = parsed
            .images
            .iter()
            .map(|p| read_image(p, base.as_deref()))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(where_)?;
        requests.push(EmbedRequest {
            text: parsed.text.unwrap_or_default(),
            images,
            instruction: parsed.instruction,
        });
    }
    Ok(requests)
}

/// Reads an image file; a relative path that is not found from the current
/// directory is tried relative to `base` (the input file's folder).
fn read_image(path: &Path, base: Option<&Path>) -> anyhow::Result<ImageData> {
    let resolved = match base {
        Some(b) if path.is_relative() && !path.exists() => b.join(path),
        _ => path.to_owned(),
    };
    let bytes = std::fs::read(&resolved)
        .with_context(|| format!("cannot read image {}", resolved.display()))?;
    Ok(ImageData::Encoded(std::sync::Arc::new(bytes)))
}
