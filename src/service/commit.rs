//! The moment a write becomes final, decided once between a request's
//! deadline and its database write: whichever comes first wins.
//!
//! A front end with a deadline (the HTTP API's `server.timeout_secs`) runs
//! the request inside [`scope`] with a [`CommitGate`]. Every write the
//! service does passes the gate ([`begin`]) on the blocking pool right
//! before it touches the database. When the deadline passes, the front end
//! calls [`CommitGate::expire`]: if no write has begun, none ever will, and
//! "timed out" truly means "nothing changed"; if one has begun, the front end
//! waits for it and answers with its real outcome. Without this, a write
//! still waiting for the database (a checkpoint holding the index lock, the
//! group-commit fsync) was answered 503 and then landed anyway.
//!
//! The gate travels as a task-local value rather than as an argument of
//! every write method: the deadline belongs to the request, and the CLI,
//! which has none, runs the same methods outside any scope (no gate: every
//! write proceeds).
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::{Result, ServiceError};

/// No write has begun and the deadline has not passed.
const OPEN: u8 = 0;
/// A write has begun: the request's answer is the write's outcome.
const BEGUN: u8 = 1;
/// The deadline passed first: no write may begin.
const EXPIRED: u8 = 2;

/// One request's race between its deadline and its write. Cheap to clone
/// (the clones share the state).
#[derive(Debug, Clone, Default)]
pub struct CommitGate(Arc<AtomicU8>);

impl CommitGate {
    /// A write is about to touch the database: `true` if it may (the
    /// deadline has not passed; from now on it never "passes"), `false` if
    /// the request was already answered as timed out.
    fn try_begin(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, BEGUN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == BEGUN,
        }
    }

    /// The deadline passed: `true` if no write had begun (and now none
    /// will: the request may be answered as timed out, having changed
    /// nothing), `false` if one had (the caller must wait for its outcome).
    pub fn expire(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == EXPIRED,
        }
    }
}

tokio::task_local! {
    static GATE: CommitGate;
}

/// Runs `request` with `gate` as the gate of every write it does.
pub async fn scope<F: Future>(gate: CommitGate, request: F) -> F::Output {
    GATE.scope(gate, request).await
}

/// The current request's gate, if it has one. Taken in async code (task
/// locals do not reach the blocking pool) and handed to [`begin`] there.
pub(crate) fn current() -> Option<CommitGate> {
    GATE.try_with(CommitGate::clone).ok()
}

/// Passes the gate right before a write touches the database; fails with
/// [`ServiceError::Cancelled`] (which nobody sees: the request was already
/// answered) when the deadline came first.
pub(crate) fn begin(gate: Option<&CommitGate>) -> Result<()> {
    match gate {
        Some(gate) if !gate.try_begin() => Err(ServiceError::Cancelled),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_deadline_and_write_wins_for_good() {
        let gate = CommitGate::default();
        assert!(begin(Some(&gate)).is_ok());
        assert!(!gate.expire(), "a begun write is waited for");
        assert!(begin(Some(&gate)).is_ok());

        let gate = CommitGate::default();
        assert!(gate.expire());
        assert!(matches!(begin(Some(&gate)), Err(ServiceError::Cancelled)));
        assert!(gate.expire());

        assert!(begin(None).is_ok(), "no deadline: writes always proceed");
    }

    #[test]
    fn the_gate_reaches_code_inside_its_scope_only() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(current().is_none());
            let gate = CommitGate::default();
            let seen = scope(gate.clone(), async { current() }).await.unwrap();
            assert!(seen.expire());
            assert!(!gate.try_begin(), "clones share the state");
        });
    }
}
