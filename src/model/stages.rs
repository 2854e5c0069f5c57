//! Optional per-stage timing of the forward pass, for `cargo bench --bench
//! embed` (`BENCH_PROFILE=1`). MLX evaluates lazily, so a stage's time is only
//! known when its result is forced: with the clock on, every mark evaluates
//! the array it is given and charges the time since the previous mark to the
//! named stage. With the clock off (always, outside the benchmark) a mark does
//! nothing and the graph stays lazy.
use std::{cell::RefCell, time::Instant};

use mlx_rs::Array;

use super::ModelError;

#[derive(Default)]
pub struct StageClock {
    running: RefCell<Option<Running>>,
}

struct Running {
    last: Instant,
    /// Seconds per stage, in order of first appearance.
    totals: Vec<(&'static str, f64)>,
}

impl StageClock {
    /// Starts (or restarts) timing from now.
    pub fn start(&self) {
        *self.running.borrow_mut() = Some(Running {
            last: Instant::now(),
            totals: Vec::new(),
        });
    }

    /// Stops timing and returns seconds per stage.
    pub fn stop(&self) -> Vec<(&'static str, f64)> {
        self.running
            .borrow_mut()
            .take()
            .map_or_else(Vec::new, |r| r.totals)
    }

    pub fn is_running(&self) -> bool {
        self.running.borrow().is_some()
    }

    /// Charges the time since the previous mark to `stage`, after forcing `array`.
    pub fn mark(&self, stage: &'static str, array: &Array) -> Result<(), ModelError> {
        if self.is_running() {
            array.eval()?;
            self.charge(stage);
        }
        Ok(())
    }

    /// Charges the time since the previous mark to `stage` (host-side work).
    pub fn charge(&self, stage: &'static str) {
        if let Some(r) = self.running.borrow_mut().as_mut() {
            let now = Instant::now();
            let secs = (now - r.last).as_secs_f64();
            r.last = now;
            match r.totals.iter_mut().find(|(name, _)| *name == stage) {
                Some((_, total)) => *total += secs,
                None => r.totals.push((stage, secs)),
            }
        }
    }
}
