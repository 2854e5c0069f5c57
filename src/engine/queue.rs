//! The model thread's job queue: two bounded lanes, and the model thread
//! always takes from the interactive lane first. Queries and embedding
//! calls wait at most for the batch in progress, however many parts of a
//! big import (video frames, PDF pages, text chunks: the bulk lane) are
//! waiting behind them.
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Which lane a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A caller is waiting for this one answer: queries, embedding calls,
    /// single documents.
    Interactive,
    /// One part of a long ingest, which waits patiently and retries when
    /// its lane is full.
    Bulk,
}

pub(super) enum PushError<T> {
    /// The lane holds its capacity already; the job comes back.
    Full(T),
    Closed,
}

pub(super) struct JobQueue<T> {
    lanes: Mutex<Lanes<T>>,
    arrived: Condvar,
    /// Most jobs waiting in each lane.
    capacity: usize,
}

struct Lanes<T> {
    interactive: VecDeque<T>,
    bulk: VecDeque<T>,
    closed: bool,
}

impl<T> Lanes<T> {
    fn take(&mut self) -> Option<T> {
        self.interactive
            .pop_front()
            .or_else(|| self.bulk.pop_front())
    }
}

impl<T> JobQueue<T> {
    pub(super) fn new(capacity: usize) -> JobQueue<T> {
        JobQueue {
            lanes: Mutex::new(Lanes {
                interactive: VecDeque::new(),
                bulk: VecDeque::new(),
                closed: false,
            }),
            arrived: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes<T>> {
        // A panic while holding this lock leaves the lanes consistent (every
        // operation is a single push or pop), so a poisoned lock is usable.
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, job: T, priority: Priority) -> Result<(), PushError<T>> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(PushError::Closed);
        }
        let lane = match priority {
            Priority::Interactive => &mut lanes.interactive,
            Priority::Bulk => &mut lanes.bulk,
        };
        if lane.len() >= self.capacity {
            return Err(PushError::Full(job));
        }
        lane.push_back(job);
        drop(lanes);
        self.arrived.notify_one();
        Ok(())
    }

    /// The next job, interactive first; waits for one. `None` once the
    /// queue is closed and empty.
    pub(super) fn pop(&self) -> Option<T> {
        let mut lanes = self.lock();
        loop {
            if let Some(job) = lanes.take() {
                return Some(job);
            }
            if lanes.closed {
                return None;
            }
            lanes = self.arrived.wait(lanes).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next job, interactive first, if one arrives before `deadline`.
    pub(super) fn pop_until(&self, deadline: Instant) -> Option<T> {
        let mut lanes = self.lock();
        loop {
            if let Some(job) = lanes.take() {
                return Some(job);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if lanes.closed || left.is_zero() {
                return None;
            }
            lanes = self
                .arrived
                .wait_timeout(lanes, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Refuses new jobs; the ones waiting are still handed out.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn interactive_jobs_overtake_waiting_bulk_jobs() {
        let queue = JobQueue::new(8);
        for i in 0..5 {
            assert!(queue.push(format!("bulk {i}"), Priority::Bulk).is_ok());
        }
        assert!(queue
            .push("query".to_owned(), Priority::Interactive)
            .is_ok());
        assert_eq!(queue.pop().as_deref(), Some("query"));
        assert_eq!(queue.pop().as_deref(), Some("bulk 0"));
    }

    #[test]
    fn each_lane_has_its_own_capacity() {
        let queue = JobQueue::new(2);
        assert!(queue.push(1, Priority::Bulk).is_ok());
        assert!(queue.push(2, Priority::Bulk).is_ok());
        assert!(matches!(
            queue.push(3, Priority::Bulk),
            Err(PushError::Full(3))
        ));
        // A full bulk lane does not refuse a query.
        assert!(queue.push(4, Priority::Interactive).is_ok());
    }

    #[test]
    fn closing_hands_out_what_waits_then_ends() {
        let queue = JobQueue::new(2);
        assert!(queue.push(1, Priority::Bulk).is_ok());
        queue.close();
        assert!(matches!(
            queue.push(2, Priority::Interactive),
            Err(PushError::Closed)
        ));
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn pop_until_gives_up_at_the_deadline() {
        let queue: JobQueue<u8> = JobQueue::new(2);
        let started = Instant::now();
        assert_eq!(queue.pop_until(started + Duration::from_millis(20)), None);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
