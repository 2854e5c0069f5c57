//! The model thread: loads the model, then forms batches from the queue and
//! runs them until the queue closes.
use std::{
    sync::{atomic::Ordering, mpsc, Arc},
    thread,
    time::Instant,
};

use super::{queue::JobQueue, EngineConfig, EngineError, EngineInfo, EngineStats, Job};
use crate::model::{runtime, Embedder, Preparer, QuantSpec, WeightStorage};

type Ready = Result<(Arc<Preparer>, EngineInfo), EngineError>;

/// How long the worker waits for more inputs before starting a batch: far
/// below the time of any forward pass, long enough for a burst of
/// submissions to land in one batch.
const BATCH_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

pub(super) fn spawn(
    config: EngineConfig,
    jobs: Arc<JobQueue<Job>>,
    ready: mpsc::Sender<Ready>,
    stats: Arc<EngineStats>,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("tkr-model".into())
        .spawn(move || {
            let embedder = match load(&config) {
                Ok((embedder, info)) => {
                    let _ = ready.send(Ok((embedder.preparer(), info)));
                    embedder
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            serve(&embedder, &jobs, &config, &stats);
        })
        .expect("spawn the model thread")
}

fn load(config: &EngineConfig) -> Result<(Embedder, EngineInfo), EngineError> {
    let device = runtime::select_device(config.gpu)?;
    let started = Instant::now();
    let embedder = Embedder::load(&config.model_dir, config.load.clone())?;
    let quantization = match config.load.quant {
        QuantSpec::None => "none".to_owned(),
        QuantSpec::Bits { bits, group_size } => format!("q{bits} (group {group_size})"),
    };
    let info = EngineInfo {
        model_id: config.model_id.clone(),
        dim: embedder.dim(),
        dtype: match config.load.weights {
            WeightStorage::Compute => config.load.compute.as_str().to_owned(),
            WeightStorage::Bfloat16 => {
                format!("{} (bfloat16 weights)", config.load.compute.as_str())
            }
        },
        quantization,
        device,
    };
    tracing::info!(
        model = %info.model_id, dim = info.dim, dtype = %info.dtype,
        quantization = %info.quantization, device = %info.device,
        "model loaded in {:.1}s", started.elapsed().as_secs_f64()
    );
    tracing::info!("blas: {}", runtime::blas_summary());
    if let Some(warning) = runtime::blas_warning() {
        tracing::warn!("SLOW MATRIX PRODUCTS: {warning}");
    }
    Ok((embedder, info))
}

fn serve(embedder: &Embedder, jobs: &JobQueue<Job>, config: &EngineConfig, stats: &EngineStats) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.pop() {
                Some(job) => {
                    stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    job
                }
                None => return, // queue closed: the engine was dropped
            },
        };
        let mut batch = vec![first];
        let mut cost = batch[0].input.cost();
        // Take whatever else is waiting or arrives within BATCH_LINGER, within
        // the size and token budget: a caller submitting many inputs at once
        // (`embed --input`, an import) races the worker, which would
        // otherwise start on the first input alone.
        // Interactive requests are taken first, bulk ingest parts fill the
        // rest of the batch.
        let deadline = Instant::now() + BATCH_LINGER;
        while batch.len() < config.max_batch_size {
            let Some(job) = jobs.pop_until(deadline) else {
                break;
            };
            stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
            if cost + job.input.cost() > config.max_batch_tokens {
                carried = Some(job);
                break;
            }
            cost += job.input.cost();
            batch.push(job);
        }
        // Requests whose caller has gone away are not computed.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        run_batch(embedder, batch, stats);
    }
}

fn run_batch(embedder: &Embedder, batch: Vec<Job>, stats: &EngineStats) {
    stats.record_batch(batch.len());
    let started = Instant::now();
    let inputs_in_batch = batch.len();
    // Split the jobs instead of copying their inputs (pixel buffers are large).
    let (inputs, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.input, j.reply)).unzip();
    let result = embedder.embed_batch(&inputs);
    tracing::debug!(
        "batch of {inputs_in_batch} inputs ({} tokens and patches) in {:.3}s",
        inputs.iter().map(|i| i.cost()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(embeddings) => {
            for (reply, embedding) in replies.into_iter().zip(embeddings) {
                let _ = reply.send(Ok(embedding));
            }
        }
        Err(e) if inputs.len() == 1 => {
            let reply = replies.into_iter().next().expect("one job");
            let _ = reply.send(Err(e));
        }
        Err(e) => {
            // One bad input must not fail its neighbours: retry one by one.
            tracing::warn!("batch of {} failed ({e}); retrying singly", inputs.len());
            for (input, reply) in inputs.iter().zip(replies) {
                let result = embedder
                    .embed_batch(std::slice::from_ref(input))
                    .map(|mut v| v.remove(0));
                let _ = reply.send(result);
            }
        }
    }
}
