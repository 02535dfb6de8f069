//! An app's queue of events waiting for a lambda call: bounded, one
//! consumer (the app's worker). What it adds to a channel: when it is full,
//! the events of connections that are gone (their answers would reach no
//! one) are shed to make room, so that clients that left, or one client
//! reconnecting over and over, cannot fill it and make the events of the
//! clients still here fail with `Overloaded`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Job, Reply};

/// Connections that went away with events still in some dispatcher: a
/// full queue sheds only when this moved since it last looked, so a queue
/// full of live events is not scanned again at each refusal.
static GONE: AtomicU64 = AtomicU64::new(0);

/// Called when a connection with events in dispatchers goes away.
pub fn connection_gone() {
    GONE.fetch_add(1, Ordering::Relaxed);
}

pub struct JobQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    capacity: usize,
}

struct Inner {
    jobs: VecDeque<Job>,
    closed: bool,
    /// [`GONE`] when the queue last shed.
    shed_at: u64,
}

pub enum TryRecv {
    Empty,
    /// Closed, and nothing left.
    Closed,
}

impl Job {
    /// An event whose connection is gone: no one will hear its answer.
    fn orphaned(&self) -> bool {
        match &self.reply {
            Reply::Stream { outbox, .. } => outbox.is_gone(),
            Reply::Detached { .. } => false,
        }
    }
}

impl JobQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                jobs: VecDeque::new(),
                closed: false,
                shed_at: u64::MAX,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    /// Queues `job`; `Ok(n)`: queued after shedding `n` orphaned events.
    /// `Err`: full of live events, or closed.
    pub fn push(&self, job: Job) -> Result<usize, Job> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(job);
        }
        let mut shed = 0;
        if inner.jobs.len() >= self.capacity {
            let gone = GONE.load(Ordering::Relaxed);
            if gone != inner.shed_at {
                inner.shed_at = gone;
                let before = inner.jobs.len();
                // Dropping a job drops its ticket: done outside the lock would
                // be nicer, but a ticket's drop only touches atomics and a Notify.
                inner.jobs.retain(|j| !j.orphaned());
                shed = before - inner.jobs.len();
            }
            if inner.jobs.len() >= self.capacity {
                return Err(job);
            }
        }
        inner.jobs.push_back(job);
        drop(inner);
        self.ready.notify_one();
        Ok(shed)
    }

    /// The next event; `None` once closed and empty.
    pub async fn recv(&self) -> Option<Job> {
        loop {
            match self.try_recv() {
                Ok(j) => return Some(j),
                Err(TryRecv::Closed) => return None,
                // One consumer: a push after the check leaves a permit.
                Err(TryRecv::Empty) => self.ready.notified().await,
            }
        }
    }

    pub fn try_recv(&self) -> Result<Job, TryRecv> {
        let mut inner = self.inner.lock();
        match inner.jobs.pop_front() {
            Some(j) => Ok(j),
            None if inner.closed => Err(TryRecv::Closed),
            None => Err(TryRecv::Empty),
        }
    }

    /// Refuses new events; those queued are still received.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ops::config::SlowConsumer;
    use crate::stream::outbox::Outbox;

    fn job(outbox: &Arc<Outbox>) -> Job {
        Job {
            event: b"{}".to_vec(),
            reply: Reply::Stream {
                outbox: outbox.clone(),
                slot: 0,
            },
            ticket: Some(outbox.ticket()),
        }
    }

    #[test]
    fn a_full_queue_sheds_the_events_of_gone_connections_only() {
        let q = JobQueue::new(4);
        let left = Arc::new(Outbox::new(8, SlowConsumer::Close));
        let here = Arc::new(Outbox::new(8, SlowConsumer::Close));
        for _ in 0..3 {
            assert_eq!(q.push(job(&left)).ok(), Some(0));
        }
        assert_eq!(q.push(job(&here)).ok(), Some(0));
        // Full of live events: refused.
        assert!(q.push(job(&here)).is_err());
        left.close();
        // The three of the connection that left make room, and their tickets end.
        assert_eq!(q.push(job(&here)).ok(), Some(3));
        assert!(!left.jobs_full());
        let mut kept = 0;
        while q.try_recv().is_ok() {
            kept += 1;
        }
        assert_eq!(kept, 2);
        q.close();
        assert!(matches!(q.try_recv(), Err(TryRecv::Closed)));
        assert!(q.push(job(&here)).is_err(), "closed refuses");
    }

    #[test]
    fn tickets_count_a_connections_events_and_wake_it_under_its_limit() {
        let o = Arc::new(Outbox::new(8, SlowConsumer::Close).with_job_limit(2));
        let a = o.ticket();
        assert!(!o.jobs_full());
        let b = o.ticket();
        assert!(o.jobs_full());
        drop(a);
        assert!(!o.jobs_full());
        drop(b);
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_and_ends_when_closed() {
        let q = Arc::new(JobQueue::new(4));
        let o = Arc::new(Outbox::new(8, SlowConsumer::Close));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.recv().await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(q.push(job(&o)).is_ok());
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap()
        );
        q.close();
        assert!(q.recv().await.is_none());
    }
}
