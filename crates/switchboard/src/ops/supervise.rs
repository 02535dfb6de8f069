//! Supervision of the node's shared long-lived tasks (timer shards,
//! dispatcher workers, sinks, broker connections and followers, sweepers):
//! a panic in one is logged, counted in `switchboard_task_restarts{task=..}`
//! and the task started again, with whatever state it keeps in a [`Kept`].

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

use crate::ops::metrics::TASK_RESTARTS;

/// The kinds of supervised task: the bounded label set of the restart metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Timer,
    Dispatcher,
    Sink,
    Sweeper,
    BrokerConnection,
    BrokerFollower,
}

impl TaskKind {
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Timer,
        TaskKind::Dispatcher,
        TaskKind::Sink,
        TaskKind::Sweeper,
        TaskKind::BrokerConnection,
        TaskKind::BrokerFollower,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Timer => "timer",
            TaskKind::Dispatcher => "dispatcher",
            TaskKind::Sink => "sink",
            TaskKind::Sweeper => "sweeper",
            TaskKind::BrokerConnection => "broker_connection",
            TaskKind::BrokerFollower => "broker_follower",
        }
    }
}

/// First pause before a restart; it doubles while the task keeps panicking
/// soon after each start, up to [`MAX_PAUSE`], so a task that panics at
/// once cannot spin a core.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// A run this long counts as healthy: the next panic pauses [`FIRST_PAUSE`] again.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Runs `task()` until a run returns (or is cancelled: the runtime is going
/// away). A run that panics is logged, counted and replaced by a fresh
/// `task()`. Spawn the returned future where the task belongs (a
/// `TaskTracker` for what the drain waits on, else `tokio::spawn`).
pub async fn supervise<F, Fut>(kind: TaskKind, mut task: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = FIRST_PAUSE;
    loop {
        let started = Instant::now();
        let mut run = AbortOnDrop(tokio::spawn(task()));
        let panic = match (&mut run.0).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(_) => return,
        };
        TASK_RESTARTS.inc(kind);
        tracing::error!(
            task = kind.as_str(),
            panic = panic_text(&*panic),
            "shared task panicked; restarting it"
        );
        if started.elapsed() >= HEALTHY_RUN {
            pause = FIRST_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Aborts the run if the supervisor itself is dropped: no orphan task.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

/// State a supervised task keeps across restarts (its queue, its channel's
/// receiver). Each run holds it for its whole life; a panic lets go of it
/// as the run unwinds (tokio's mutex does not poison), and the next run
/// takes it up as the panic left it.
pub struct Kept<S>(Arc<Mutex<S>>);

impl<S> Clone for Kept<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: Send + 'static> Kept<S> {
    pub fn new(state: S) -> Self {
        Self(Arc::new(Mutex::new(state)))
    }

    /// Takes the state for one run.
    pub async fn hold(&self) -> OwnedMutexGuard<S> {
        self.0.clone().lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::sync::mpsc;

    /// A task that panics on a poisoned input, restarted with its channel
    /// and its count: later inputs are still handled, nothing is lost.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_with_its_state_and_counted() {
        let (tx, rx) = mpsc::channel::<u32>(16);
        let (done_tx, mut done_rx) = mpsc::channel::<(u32, u32)>(16);
        let kept = Kept::new((rx, 0u32));
        let runs = Arc::new(AtomicU32::new(0));
        let before = TASK_RESTARTS.get(TaskKind::Sweeper);
        let supervisor = tokio::spawn(supervise(TaskKind::Sweeper, {
            let runs = runs.clone();
            move || {
                let kept = kept.clone();
                let done_tx = done_tx.clone();
                runs.fetch_add(1, Ordering::Relaxed);
                async move {
                    let mut state = kept.hold().await;
                    let (rx, seen) = &mut *state;
                    while let Some(n) = rx.recv().await {
                        *seen += 1;
                        assert_ne!(n, 0, "poisoned input");
                        let _ = done_tx.send((n, *seen)).await;
                    }
                }
            }
        }));
        for n in [1, 0, 2, 0, 3] {
            tx.send(n).await.unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(done_rx.recv().await.unwrap());
        }
        assert_eq!(got, [(1, 1), (2, 3), (3, 5)], "state kept across panics");
        assert_eq!(runs.load(Ordering::Relaxed), 3, "two restarts");
        assert_eq!(TASK_RESTARTS.get(TaskKind::Sweeper) - before, 2);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("a run that returns ends supervision")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_back_off_while_a_task_keeps_panicking() {
        let runs = Arc::new(AtomicU32::new(0));
        let supervisor = tokio::spawn(supervise(TaskKind::BrokerFollower, {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::Relaxed);
                async { panic!("always") }
            }
        }));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let n = runs.load(Ordering::Relaxed);
        // 10+20+40+..+640 ms, then one a second: about 11 runs in 5 s.
        assert!((5..=20).contains(&n), "{n} runs in 5 s");
        supervisor.abort();
    }
}
