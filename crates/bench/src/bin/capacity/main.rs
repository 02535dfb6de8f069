//! capacity: the CPU cost of each stream capability, per operation, on this
//! machine, through the switchboard crate's public units (GCRA, dedup,
//! batcher, the timer shards, the direct-delivery and lambda encodings, the
//! lambda HTTP client against a minimal local lambda). docs/capacity.md
//! turns the figures into a capacity model; bench/capacity.sh runs it.
//!
//! Each figure is the median over rounds of the measuring thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) divided by the operations done, so a busy
//! shared machine inflates wall time more than these numbers.

mod local_lambda;
mod measure;
mod rounds;

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use serde_json::json;
use serde_json::value::RawValue;
use switchboard::broker::Message;
use switchboard::capability::batch::Batcher;
use switchboard::capability::dedup::Dedup;
use switchboard::capability::rate_limit::RateLimiter;
use switchboard::capability::sink::{self, Sink, SinkConfig, SinkTarget};
use switchboard::capability::timer_shards::{TimerKind, TimerToken, Timers};
use switchboard::dispatcher::LambdaClient;
use switchboard::ops::config::SlowConsumer;
use switchboard::stream::outbox::{Inbound, Outbox};
use switchboard::stream::{batch_event, message_event};
use switchboard::transport::ws::codec::{write_header, Opcode, MAX_HEADER};
use switchboard_protocol::client::event_head;
use switchboard_protocol::lambda::{self, Event, StreamRef};
use switchboard_protocol::Topic;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use local_lambda::*;
use measure::*;
use rounds::*;

#[derive(Debug, Parser)]
#[command(
    name = "capacity",
    about = "CPU cost per operation of each Switchboard capability (microseconds), as a table or JSON."
)]
struct Args {
    /// Fewer iterations (a smoke run, figures noisier).
    #[arg(long)]
    quick: bool,
    /// Rounds per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Bytes of each message's JSON data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
}

fn data_of(n: usize, payload: usize) -> Box<RawValue> {
    let pad = "x".repeat(payload.saturating_sub(24));
    RawValue::from_string(json!({"n": n, "text": pad}).to_string()).expect("valid JSON")
}

fn message(topic: &Topic, n: usize, payload: usize) -> Arc<Message> {
    Arc::new(Message::new(
        topic.clone(),
        Arc::from((n + 1).to_string()),
        data_of(n, payload),
        Arc::from("e1f2"),
        None,
    ))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scale = if args.quick { 10 } else { 1 };
    let rounds = if args.quick { 3 } else { args.rounds.max(1) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topic = Topic::new("live_video_comment/1234").context("topic")?;
    let mut figures = Vec::new();

    // ---- Per-subscription filters ----------------------------------------
    let n = 2_000_000 / scale as u64;
    figures.push(measure("GCRA rate-limit check", "message", rounds, || {
        let mut l = RateLimiter::new(10.0, 20);
        let mut now = Instant::now();
        for _ in 0..n {
            // Half the messages pass at 20/s offered against 10/s allowed.
            now += Duration::from_millis(50);
            black_box(l.check(black_box(now)));
        }
        n
    }));

    let msgs: Vec<Arc<Message>> = (0..8192)
        .map(|i| message(&topic, i, args.payload))
        .collect();
    let n = 1_000_000 / scale as u64;
    // n checks of message `index(i)`, i = 0..n (a closure of its own type per
    // figure, so the index computation inlines as it was written).
    fn dedup_round(msgs: &[Arc<Message>], n: u64, index: impl Fn(usize) -> usize) -> u64 {
        let mut d = Dedup::new(Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..n as usize {
            black_box(d.check(msgs[index(i)].dedup_hash(), now));
        }
        n
    }
    figures.push(measure(
        "dedup check, new data (hash + insert + evict)",
        "message",
        rounds,
        // 8,192 distinct messages cycle through a 4,096-key memory: always new.
        || dedup_round(&msgs, n, |i| i % msgs.len()),
    ));
    figures.push(measure(
        "dedup check, duplicate (hash + lookup)",
        "message",
        rounds,
        || dedup_round(&msgs, n, |i| i % 16),
    ));

    figures.push(measure(
        "batch push (max_messages 50)",
        "message",
        rounds,
        || {
            let mut b = Batcher::new(50, Duration::from_secs(1));
            let now = Instant::now();
            for i in 0..n as usize {
                if let Some(full) = b.push(msgs[i % msgs.len()].clone(), now) {
                    black_box(full);
                }
            }
            n
        },
    ));

    // ---- Timers: arm + fire through a DelayQueue shard -----------------------
    let timers_n = 200_000 / scale;
    figures.push(measure_async(
        &rt,
        "timer arm + fire (one-shot, DelayQueue shard)",
        "timer",
        rounds,
        || async {
            let timers = Timers::start(1);
            let outbox = Arc::new(Outbox::new(1024, SlowConsumer::Close));
            let mut tokens = Vec::with_capacity(timers_n);
            for i in 0..timers_n {
                let after = Duration::from_millis(1 + (i % 20) as u64);
                tokens.push(arm(&timers, &outbox, after, None).await);
            }
            let fired = drain_timers(&outbox, timers_n).await;
            drop(tokens);
            fired as u64
        },
    ));
    let periodic = 20_000 / scale;
    figures.push(measure_rounds(
        "timer tick (periodic, re-armed)",
        "tick",
        rounds,
        || {
            rt.block_on(async {
                let timers = Timers::start(1);
                let outbox = Arc::new(Outbox::new(1024, SlowConsumer::Close));
                let mut tokens = Vec::with_capacity(periodic);
                for i in 0..periodic {
                    let every = Duration::from_millis(50);
                    let first = Duration::from_millis(1 + (i % 50) as u64);
                    tokens.push(arm(&timers, &outbox, first, Some(every)).await);
                }
                // Arming is counted above; here ticks only: after the first
                // round of fires, ten more intervals.
                drain_timers(&outbox, periodic).await;
                let (c0, w0) = (thread_cpu_ns(), StdInstant::now());
                let fired = drain_timers(&outbox, periodic * 10).await;
                let s = Sample {
                    ops: fired as u64,
                    cpu_ns: thread_cpu_ns() - c0,
                    wall_ns: w0.elapsed().as_nanos() as u64,
                };
                drop(tokens);
                s
            })
        },
    ));

    // ---- Direct delivery: shared tail per message, head per stream -----------
    let n = 500_000 / scale as u64;
    figures.push(measure(
        "direct delivery, per message (shared WS tail + cursor)",
        "message",
        rounds,
        || {
            for i in 0..n as usize {
                let m = Message::new(
                    topic.clone(),
                    Arc::from("1234"),
                    msgs[i % msgs.len()].data.clone(),
                    Arc::from("e1f2"),
                    None,
                );
                black_box(m.ws_tail());
                black_box(m.single_topic_cursor());
            }
            n
        },
    ));
    let shared = message(&topic, 1, args.payload);
    shared.ws_tail();
    let n = 2_000_000 / scale as u64;
    figures.push(measure(
        "direct delivery, per stream (event head + WS frame header)",
        "delivery",
        rounds,
        || {
            for _ in 0..n {
                black_box(direct_frame(&shared));
            }
            n
        },
    ));

    // ---- Lambda events: encode, request body, answer parse --------------------
    let state = RawValue::from_string(r#"{"video":"1234","count":17}"#.into())?;
    let n = 500_000 / scale as u64;
    figures.push(measure(
        "lambda event encode (message event + request body)",
        "event",
        rounds,
        || {
            for i in 0..n as usize {
                let m = &msgs[i % msgs.len()];
                let ev = message_event(stream_ref(&state), m);
                black_box(lambda::request_body("live_comments", &[&ev]));
            }
            n
        },
    ));
    figures.push(measure(
        "lambda event encode (timer event)",
        "event",
        rounds,
        || {
            for i in 0..n {
                let ev = Event::Timer {
                    stream: StreamRef {
                        id: "a1b2c3d4-17",
                        state: Some(&state),
                    },
                    name: "heartbeat",
                    fired_at_ms: 1_700_000_000_000 + i,
                }
                .to_vec();
                black_box(ev);
            }
            n
        },
    ));
    let batch: Vec<Arc<Message>> = msgs[..50].to_vec();
    let n_batches = 20_000 / scale as u64;
    figures.push(measure(
        "lambda event encode (batch event of 50), per message",
        "message",
        rounds,
        || {
            for _ in 0..n_batches {
                let ev = batch_event(stream_ref(&state), &batch);
                black_box(lambda::request_body("live_comments", &[&ev]));
            }
            n_batches * 50
        },
    ));
    let answer = answer_body(1);
    figures.push(measure(
        "lambda answer parse (one push action)",
        "event",
        rounds,
        || {
            for _ in 0..n {
                black_box(lambda::parse_response(&answer, 1).expect("valid answer"));
            }
            n
        },
    ));

    // ---- Sinks: a `buffer` record, encoded, appended, written to a file -------
    // Under the sink queue's 65,536 bound: a faster producer than the file gets drops.
    let records = 50_000 / scale;
    let dir = std::env::temp_dir().join(format!("switchboard-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let record_data = data_of(0, args.payload);
    figures.push(measure_rounds(
        "sink record (encode + append + JSON-lines file write)",
        "record",
        rounds,
        || {
            let path = dir.join("sink.jsonl");
            let _ = std::fs::remove_file(&path);
            // File writes run on tokio's blocking threads: count the whole process.
            let (c0, w0) = (process_cpu_ns(), StdInstant::now());
            let written = rt.block_on(sink_round(path, records, &record_data));
            Sample {
                ops: written,
                cpu_ns: process_cpu_ns() - c0,
                wall_ns: w0.elapsed().as_nanos() as u64,
            }
        },
    ));
    let _ = std::fs::remove_dir_all(&dir);

    // ---- Lambda round trips through a minimal local lambda -------------------
    let server = MinimalLambda::start()?;
    let client = LambdaClient::default();
    let url: hyper::Uri = server.url().parse()?;
    let trips = 4_000 / scale as u64;
    let cases: [(&'static str, &'static str, usize, usize, usize); 4] = [
        // name, unit, events per request, messages per event, requests in flight
        ("lambda round trip, 1 event/request", "event", 1, 1, 1),
        (
            "lambda round trip, 1 event/request, 16 in flight",
            "event",
            1,
            1,
            16,
        ),
        (
            "lambda round trip, 50 events/request (dispatcher batch)",
            "event",
            50,
            1,
            1,
        ),
        (
            "lambda round trip, 1 batch event of 50 messages",
            "message",
            1,
            50,
            1,
        ),
    ];
    for (name, unit, events, per_event, in_flight) in cases {
        server.answer_events(events);
        let requests = (trips / (events * per_event).max(1) as u64 * 4).max(50);
        let fig = measure_async(&rt, name, unit, rounds, || {
            let client = client.clone();
            let url = url.clone();
            let msgs = &msgs;
            let state = &state;
            async move {
                let mut left = requests;
                let mut tasks = tokio::task::JoinSet::new();
                let mut next = 0usize;
                let one = |next: &mut usize| {
                    let evs: Vec<Vec<u8>> = (0..events)
                        .map(|e| {
                            let i = *next + e * per_event;
                            if per_event == 1 {
                                message_event(stream_ref(state), &msgs[i % msgs.len()])
                            } else {
                                let b: Vec<Arc<Message>> = (0..per_event)
                                    .map(|k| msgs[(i + k) % msgs.len()].clone())
                                    .collect();
                                batch_event(stream_ref(state), &b)
                            }
                        })
                        .collect();
                    *next += events * per_event;
                    let refs: Vec<&[u8]> = evs.iter().map(Vec::as_slice).collect();
                    Bytes::from(lambda::request_body("live_comments", &refs))
                };
                while left > 0 || !tasks.is_empty() {
                    while left > 0 && tasks.len() < in_flight {
                        left -= 1;
                        let body = one(&mut next);
                        let client = client.clone();
                        let url = url.clone();
                        tasks.spawn(async move {
                            let answer = client
                                .post(&url, body, Duration::from_secs(10))
                                .await
                                .expect("the minimal lambda answers");
                            lambda::parse_response(&answer, events)
                                .expect("valid answer")
                                .len()
                        });
                    }
                    if let Some(done) = tasks.join_next().await {
                        black_box(done.expect("round trip task"));
                    }
                }
                requests * (events * per_event) as u64
            }
        });
        figures.push(fig);
    }

    if args.json {
        let rows: Vec<_> = figures
            .iter()
            .map(|f| json!({"operation": f.name, "per": f.unit, "cpu_us": f.cpu_us, "wall_us": f.wall_us}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<62} {:>9} {:>12} {:>12} {:>14}",
            "operation", "per", "cpu µs/op", "wall µs/op", "ops/core-s"
        );
        for f in &figures {
            println!(
                "{:<62} {:>9} {:>12.3} {:>12.3} {:>14.0}",
                f.name,
                f.unit,
                f.cpu_us,
                f.wall_us,
                1e6 / f.cpu_us.max(1e-6)
            );
        }
    }
    Ok(())
}
