//! Rounds that need more set-up than a closure: a file sink, the timer
//! shards, a direct frame, a lambda event's stream reference.

use super::*;

/// Appends `n` records to a fresh file sink, then drains it; the records written.
pub(super) async fn sink_round(path: std::path::PathBuf, n: usize, data: &RawValue) -> u64 {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cfg = SinkConfig {
        name: "bench".into(),
        target: SinkTarget::File {
            path,
            max_bytes: u64::MAX,
            keep: 1,
        },
        batch_size: 500,
        flush_interval: Duration::from_secs(1),
        max_buffer: 100_000,
        max_buffer_bytes: 1 << 30,
    };
    let sink = Sink::start(cfg, LambdaClient::default(), stop.clone(), &tracker);
    for i in 0..n {
        let rec = sink::record("live_comments", "a1b2c3d4-17", 1_700_000_000_000, data);
        sink.append(Bytes::from(rec));
        if i % 1_000 == 999 {
            // The sink's queue is bounded; let its task (on this thread) take them.
            tokio::task::yield_now().await;
        }
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    let dropped = sink.stats.records_dropped.get();
    assert_eq!(dropped, 0, "the benchmark must not overflow the sink");
    sink.stats.records_written.get()
}

/// Arms one timer; while the shard's bounded queue is full, lets the shard
/// run (it shares this thread) and tries again.
pub(super) async fn arm(
    timers: &Timers,
    outbox: &Arc<Outbox>,
    after: Duration,
    every: Option<Duration>,
) -> Arc<TimerToken> {
    loop {
        match timers.set(outbox, 0, TimerKind::Named(Arc::from("t")), after, every) {
            Ok(token) => return token,
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// Takes fires from `outbox` until `n` timer items came in.
pub(super) async fn drain_timers(outbox: &Outbox, n: usize) -> usize {
    let mut q = VecDeque::new();
    let mut fired = 0;
    while fired < n {
        outbox.ready().await;
        outbox.take(&mut q);
        fired += q
            .drain(..)
            .filter(|i| matches!(i, Inbound::Timer { .. }))
            .count();
    }
    fired
}

/// The WS frame of a direct delivery to one stream, as transport::ws builds
/// it: a per-stream head (with the frame header right-aligned before it) and
/// the message's shared tail.
pub(super) fn direct_frame(msg: &Message) -> (Bytes, Bytes) {
    let mut head = Vec::with_capacity(96);
    head.resize(MAX_HEADER, 0);
    event_head(&mut head, "c1", Some(msg.single_topic_cursor()), None);
    let tail = msg.ws_tail().clone();
    let payload = head.len() - MAX_HEADER + tail.len();
    let mut header = [0u8; MAX_HEADER];
    let n = write_header(Opcode::Text, payload, &mut header);
    head[MAX_HEADER - n..MAX_HEADER].copy_from_slice(&header[..n]);
    (Bytes::from(head).slice(MAX_HEADER - n..), tail)
}

/// The stream a measured lambda event belongs to.
pub(super) fn stream_ref(state: &RawValue) -> StreamRef<'_> {
    StreamRef {
        id: "a1b2c3d4-17",
        state: Some(state),
    }
}
