//! The dispatcher, one per app: gathers events of many streams into one lambda
//! request (up to `max_batch`, over a short window while calls are in flight),
//! retries with backoff and jitter, and hands each stream its result.
//! A stream never has two events here at once; the stream enforces that.

pub mod circuit;
pub mod client;
pub mod dev;
pub mod https;
pub mod queue;

use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::lambda::{self, EventResult};
use switchboard_protocol::AppName;
use tokio::sync::{Notify, Semaphore};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use client::{CallError, LambdaClient};

use crate::broker::Broker;
use crate::gateway::Sinks;
use crate::ops::config::LambdaConfig;
use crate::ops::metrics::AppStats;
use crate::ops::supervise::{supervise, TaskKind};
use crate::stream::action;
use crate::stream::outbox::{JobTicket, Outbox};
use queue::{JobQueue, TryRecv};

pub type LambdaOutcome = Result<EventResult, CallError>;

/// Where an event's result goes.
pub enum Reply {
    Stream {
        outbox: Arc<Outbox>,
        slot: u32,
    },
    /// The stream is gone (a `close` event): only `publish` and `buffer` actions apply.
    Detached {
        stream_id: String,
    },
}

pub struct Job {
    /// The event, already encoded with the stream's current state.
    pub event: Vec<u8>,
    pub reply: Reply,
    /// Counts the event against its connection's share until its call is over.
    pub ticket: Option<JobTicket>,
}

/// Events waiting for a lambda call, per app.
const QUEUE: usize = 65_536;

#[derive(Clone)]
pub struct Dispatcher {
    queue: Arc<JobQueue>,
    /// Closes the queue once the last handle is gone: the worker then ends.
    _handles: Arc<CloseOnDrop>,
    stats: Arc<AppStats>,
}

struct CloseOnDrop(Arc<JobQueue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Worker {
    app: AppName,
    cfg: LambdaConfig,
    client: LambdaClient,
    broker: Arc<dyn Broker>,
    stats: Arc<AppStats>,
    calls: Arc<Semaphore>,
    /// Signalled as each call ends: a batch gathering behind busy calls
    /// goes out then, not only when the window closes.
    call_ended: Notify,
    circuit: circuit::Circuit,
    sinks: Arc<Sinks>,
    max_publish_hops: u8,
    /// Lambda calls and the publishes of `close` answers: the drain waits on it.
    tracker: TaskTracker,
    /// Print each exchange (`switchboard dev`).
    dev: bool,
}

/// The gateway's parts every app's dispatcher uses (one set, built in
/// `gateway.rs`, lent to each `Dispatcher::start`).
pub struct DispatcherParts {
    pub client: LambdaClient,
    pub broker: Arc<dyn Broker>,
    pub sinks: Arc<Sinks>,
    /// `limits.max_publish_hops`, for the publishes of `close` answers.
    pub max_publish_hops: u8,
    pub tracker: TaskTracker,
    /// Cancelled once connections are done: finish what is queued, then stop.
    pub stop: CancellationToken,
    /// Print each event -> actions exchange.
    pub dev: bool,
}

impl Dispatcher {
    pub fn start(
        app: AppName,
        cfg: LambdaConfig,
        stats: Arc<AppStats>,
        shared: &DispatcherParts,
    ) -> Self {
        let queue = Arc::new(JobQueue::new(QUEUE));
        let calls = Arc::new(Semaphore::new(cfg.max_concurrency));
        let circuit = circuit::Circuit::new(cfg.circuit_failures, cfg.circuit_cooldown);
        let worker = Arc::new(Worker {
            circuit,
            sinks: shared.sinks.clone(),
            max_publish_hops: shared.max_publish_hops,
            tracker: shared.tracker.clone(),
            dev: shared.dev,

            app,
            cfg,
            client: shared.client.clone(),
            broker: shared.broker.clone(),
            stats: stats.clone(),
            calls,
            call_ended: Notify::new(),
        });
        // Its state is shared (queue, worker): a restarted run goes on from it.
        let (jobs, stop) = (queue.clone(), shared.stop.clone());
        shared
            .tracker
            .spawn(supervise(TaskKind::Dispatcher, move || {
                worker.clone().run(jobs.clone(), stop.clone())
            }));
        Self {
            _handles: Arc::new(CloseOnDrop(queue.clone())),
            queue,
            stats,
        }
    }

    /// Queues an event; a queue full of live events fails it at once
    /// (counted, `on_failure` applies).
    pub fn submit(&self, job: Job) {
        match self.queue.push(job) {
            Ok(shed) => {
                self.stats.lambda_queue.add(1 - shed as i64);
                self.stats.lambda_events_shed.add(shed as u64);
            }
            Err(job) => {
                self.stats.lambda_overloaded.inc();
                reply(job.reply, Err(CallError::Overloaded));
            }
        }
    }
}

/// Notifies the worker when dropped (after the permit, declared later).
struct CallEnded<'a>(&'a Notify);

impl Drop for CallEnded<'_> {
    fn drop(&mut self) {
        self.0.notify_waiters();
    }
}

fn reply(to: Reply, outcome: LambdaOutcome) {
    if let Reply::Stream { outbox, slot } = to {
        outbox.push_lambda(slot, outcome);
    }
}

impl Worker {
    async fn run(self: Arc<Self>, rx: Arc<JobQueue>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                job = rx.recv() => job,
                // Drain: refuse new jobs, then finish the queued ones (recv ends with None).
                _ = stop.cancelled(), if !rx.is_closed() => {
                    rx.close();
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            // Gather only while calls are in flight, as Nagle's algorithm
            // does while data is unacknowledged: an idle lambda gets each
            // event at once; behind a busy one, what queued goes out when a
            // call ends, the batch is full, or the window closes, whichever
            // comes first. A steady flow then pays about one round trip.
            // `ended` exists before the permits are read: a call seen busy
            // returns its permit before it notifies, so its end is seen.
            let ended = self.call_ended.notified();
            tokio::pin!(ended);
            let busy = self.calls.available_permits() < self.cfg.max_concurrency;
            let deadline = Instant::now()
                + if busy {
                    self.cfg.batch_window
                } else {
                    Duration::ZERO
                };
            while batch.len() < self.cfg.max_batch {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(TryRecv::Closed) => break,
                    Err(TryRecv::Empty) => {
                        tokio::select! {
                            biased;
                            j = rx.recv() => match j {
                                Some(j) => batch.push(j),
                                None => break,
                            },
                            () = &mut ended => break,
                            () = tokio::time::sleep_until(deadline) => break,
                        }
                    }
                }
            }
            let Ok(permit) = self.calls.clone().acquire_owned().await else {
                break;
            };
            self.stats.lambda_queue.add(-(batch.len() as i64));
            let this = self.clone();
            self.tracker.spawn(async move {
                // Dropped in this order even if the call panics: the permit
                // returns, then a worker gathering behind it is told.
                let _ended = CallEnded(&this.call_ended);
                let _permit = permit;
                this.call(batch).await;
            });
        }
    }

    async fn call(&self, batch: Vec<Job>) {
        let events: Vec<&[u8]> = batch.iter().map(|j| j.event.as_slice()).collect();
        let body = Bytes::from(lambda::request_body(self.app.as_str(), &events));
        let n = batch.len();
        let mut last = CallError::Timeout;
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                self.stats.lambda_retries.inc();
                tokio::time::sleep(backoff(self.cfg.backoff, attempt)).await;
            }
            if !self.circuit.allow() {
                // Open circuit: fail at once instead of hammering a broken lambda.
                self.stats.circuit_rejections.inc();
                last = CallError::CircuitOpen;
                break;
            }
            let started = Instant::now();
            let answer = self.cfg_post(body.clone()).await;
            self.stats.lambda_calls.inc();
            self.stats.lambda_events.add(n as u64);
            self.stats
                .lambda_micros
                .add(started.elapsed().as_micros() as u64);
            let parsed = answer.and_then(|b| {
                lambda::parse_response(&b, n).map_err(|e| CallError::BadAnswer(e.to_string()))
            });
            self.circuit.record(parsed.is_ok());
            self.stats.circuit_open.set(self.circuit.is_open() as i64);
            match parsed {
                Ok(results) => {
                    for (job, result) in batch.into_iter().zip(results) {
                        if self.dev {
                            let mut lines = vec![dev::event_line(self.app.as_str(), &job.event)];
                            lines.extend(dev::result_lines(&result));
                            println!("{}", lines.join("\n"));
                        }
                        self.deliver(job.reply, result);
                    }
                    return;
                }

                Err(e) => {
                    self.stats.lambda_failures.inc();
                    tracing::warn!(app = %self.app, attempt, error = %e, "lambda call failed");
                    last = e;
                }
            }
        }
        self.stats.lambda_gave_up.inc();
        for job in batch {
            if self.dev {
                println!(
                    "{}\n    !! lambda failed: {last}",
                    dev::event_line(self.app.as_str(), &job.event)
                );
            }
            reply(job.reply, Err(last.clone()));
        }
    }

    async fn cfg_post(&self, body: Bytes) -> Result<Bytes, CallError> {
        self.client
            .post(&self.cfg.url, body, self.cfg.timeout)
            .await
    }

    fn deliver(&self, to: Reply, result: EventResult) {
        match to {
            Reply::Stream { outbox, slot } => outbox.push_lambda(slot, Ok(result)),
            Reply::Detached { stream_id } => {
                let node = action::Node {
                    broker: &self.broker,
                    sinks: &self.sinks,
                    max_publish_hops: self.max_publish_hops,
                    tracker: &self.tracker,
                };
                action::apply_detached(&self.app, &self.stats, stream_id, result, &node);
            }
        }
    }
}

/// `base * 2^(attempt-1)`, times a jitter factor in [0.5, 1.5).
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).min(10));
    exp.mul_f64(0.5 + rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter() {
        let b = Duration::from_millis(100);
        for _ in 0..100 {
            let d1 = backoff(b, 1);
            assert!(d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(150));
            let d3 = backoff(b, 3);
            assert!(d3 >= Duration::from_millis(200) && d3 < Duration::from_millis(600));
        }
    }
}
