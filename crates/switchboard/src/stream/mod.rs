//! Streams: each client connection's task owns its streams (subscriptions,
//! state, cursor positions, queued lambda events) in a [`Connection`], which
//! knows no framing: it turns client frames, topic messages and lambda
//! answers into [`Out`]s that a transport encodes.

pub mod action;
mod bounds;
mod named_timers;
pub mod outbox;
mod replay;
mod subscription;
pub mod topics;

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use switchboard_protocol::client::{ClientFrame, ErrorCode};
use switchboard_protocol::lambda::{Action, BatchMessage, Deliver, Event, EventResult, StreamRef};
use switchboard_protocol::{cursor, AppName, CloseReason, StreamName, Topic};

use crate::broker::Message;
use crate::dispatcher::{Job, LambdaOutcome, Reply};
use crate::gateway::{App, Gateway};
use crate::ops::config::OnFailure;
use crate::router::Subscriber;
use action::Cause;
use outbox::{Inbound, Outbox};
use subscription::{Subscription, Verdict};

use crate::capability::timer_shards::TimerKind;
use tokio::time::Duration;

/// Lambda events queued per stream before it counts as a slow consumer.
const MAX_PENDING_EVENTS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
        }
    }
}

/// The body of an event frame.
pub enum Body {
    /// A topic message delivered as published: its encodings are shared.
    Topic(Arc<Message>),
    /// A push's data.
    Data(Box<RawValue>),
}

/// An event frame's `id`; cheap to clone (pushes answering a message share it).
#[derive(Clone)]
pub enum CursorText {
    /// A single-topic stream's cursor: the message's shared one.
    Shared(Arc<Message>),
    Owned(Arc<str>),
}

impl CursorText {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Shared(m) => m.single_topic_cursor(),
            Self::Owned(s) => s,
        }
    }
}

/// What a connection tells its client, before framing.
pub enum Out {
    Opened {
        stream: StreamName,
    },
    Rejected {
        stream: StreamName,
        code: u16,
        reason: String,
    },
    Event {
        stream: StreamName,
        cursor: Option<CursorText>,
        event: Option<String>,
        body: Body,
    },
    Closed {
        stream: StreamName,
        code: u16,
        reason: String,
    },
    Gap {
        stream: StreamName,
        topics: Vec<String>,
    },
    Error {
        stream: Option<String>,
        code: ErrorCode,
        message: String,
    },
    Pong,
}

/// A resume request, kept from `open` until the stream is open.
enum Resume {
    Invalid,
    From(cursor::Cursor),
}

enum Pending {
    Open { params: Map<String, Value> },
    Message(Arc<Message>),
    Batch(Vec<Arc<Message>>),
    ClientMessage(Box<RawValue>),
    Timer { name: Arc<str>, fired_at_ms: u64 },
}

enum Phase {
    Opening,
    Open,
}

pub struct Stream {
    name: StreamName,
    id: String,
    app: Arc<App>,
    phase: Phase,
    state: Option<Box<RawValue>>,
    subs: Vec<Subscription>,
    pending: VecDeque<Pending>,
    in_flight: Option<Pending>,
    resume: Option<Resume>,
    timers: named_timers::NamedTimers,
    /// Bytes of its `send` data waiting for or in a lambda call (see `bounds`).
    send_bytes: usize,
}

impl Stream {
    /// Who an action of this stream is for, as `publish` and `buffer` take it.
    fn origin(&self) -> action::Origin<'_> {
        action::Origin {
            app: &self.app.name,
            stats: &self.app.stats,
            stream_id: &self.id,
        }
    }
}

/// How a client stream ends, as the client and the lambda see it.
pub struct Ending {
    pub reason: CloseReason,
    pub code: u16,
    pub text: String,
}

impl Ending {
    pub fn of(reason: CloseReason) -> Self {
        Self {
            reason,
            code: reason.code(),
            text: reason.as_str().to_owned(),
        }
    }
}

/// The lambda's `message` event for topic message `m` (public so that the
/// capacity benchmark measures this very encoding).
pub fn message_event(stream: StreamRef<'_>, m: &Message) -> Vec<u8> {
    Event::Message {
        stream,
        topic: m.topic.as_str(),
        id: &m.id,
        data: &m.data,
    }
    .to_vec()
}

/// The lambda's `batch` event for the messages a subscription gathered.
pub fn batch_event(stream: StreamRef<'_>, msgs: &[Arc<Message>]) -> Vec<u8> {
    Event::Batch {
        stream,
        messages: msgs
            .iter()
            .map(|m| BatchMessage {
                topic: m.topic.as_str(),
                id: &m.id,
                data: &m.data,
            })
            .collect(),
    }
    .to_vec()
}

/// The streams of one client connection.
pub struct Connection {
    gw: Arc<Gateway>,
    pub outbox: Arc<Outbox>,
    transport: Transport,
    headers: Map<String, Value>,
    remote_addr: String,
    /// Boxed: the map's table stays small (a connection mostly holds one stream).
    streams: HashMap<u32, Box<Stream>>,
    next_slot: u32,
    inbox: VecDeque<Inbound>,
    /// Bytes of `send` data of all its streams waiting for lambdas.
    send_bytes: usize,
    opens: crate::capability::rate_limit::RateLimiter,
}

impl Connection {
    /// `headers`: the request's headers, lowercased; each app forwards its allowlist.
    pub fn new(
        gw: Arc<Gateway>,
        transport: Transport,
        headers: Map<String, Value>,
        remote_addr: String,
    ) -> Self {
        let outbox = Arc::new(
            Outbox::new(
                gw.config.limits.outbound_queue,
                gw.config.limits.slow_consumer,
            )
            .with_job_limit(gw.config.limits.max_lambda_jobs_per_connection),
        );
        Self {
            send_bytes: 0,
            opens: bounds::open_rate(gw.config.limits.max_opens_per_second),
            gw,
            outbox,
            transport,
            headers,
            remote_addr,
            streams: HashMap::new(),
            next_slot: 0,
            inbox: VecDeque::new(),
        }
    }

    /// The slot of the stream the client calls `name`. A scan, not a second
    /// map: a connection holds few streams, and an idle one's memory counts.
    fn slot_of(&self, name: &StreamName) -> Option<u32> {
        self.streams
            .iter()
            .find_map(|(slot, s)| (s.name == *name).then_some(*slot))
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Handles one client frame.
    pub async fn on_frame(&mut self, frame: ClientFrame, out: &mut Vec<Out>) {
        match frame {
            ClientFrame::Ping => out.push(Out::Pong),
            ClientFrame::Open {
                stream,
                app,
                params,
                resume,
            } => self.open(stream, app, params, resume, out).await,
            ClientFrame::Send { stream, data } => match self.slot_of(&stream) {
                Some(slot) => self.client_message(slot, data, out).await,
                None => out.push(unknown_stream(&stream)),
            },
            ClientFrame::Close { stream } => match self.slot_of(&stream) {
                Some(slot) => self.close_stream(slot, Ending::of(CloseReason::Client), out),
                None => out.push(unknown_stream(&stream)),
            },
        }
    }

    /// Opens a stream (a WebSocket `open`, the `?app=` shortcut, or an SSE request).
    pub async fn open(
        &mut self,
        name: StreamName,
        app: AppName,
        params: Map<String, Value>,
        resume: Option<String>,
        out: &mut Vec<Out>,
    ) {
        if !self.open_allowed() {
            if let Some(app) = self.gw.app(app.as_str()) {
                app.stats.streams_rejected.inc();
            }
            out.push(Out::Rejected {
                stream: name,
                code: 429,
                reason: bounds::OPEN_RATE.into(),
            });
            return;
        }
        if self.slot_of(&name).is_some() {
            out.push(Out::Error {
                stream: Some(name.as_str().to_owned()),
                code: ErrorCode::StreamExists,
                message: format!("stream {name} is already open on this connection"),
            });
            return;
        }
        if self.streams.len() >= self.gw.config.limits.max_streams_per_connection {
            // PROTOCOL v1.1: an open over a count limit is `rejected` 400,
            // the reason naming the limit.
            out.push(Out::Rejected {
                stream: name,
                code: 400,
                reason: "too_many_streams".into(),
            });
            return;
        }
        let Some(app) = self.gw.app(app.as_str()).cloned() else {
            out.push(Out::Rejected {
                stream: name,
                code: 404,
                reason: format!("unknown app {app}"),
            });
            return;
        };
        if self.gw.is_draining() {
            app.stats.streams_rejected.inc();
            out.push(Out::Rejected {
                stream: name,
                code: 503,
                reason: "gateway is draining".into(),
            });
            return;
        }
        let streams = &self.streams;
        let slot = bounds::next_free_slot(&mut self.next_slot, |s| streams.contains_key(&s));
        let stream = Stream {
            name: name.clone(),
            id: self.gw.next_stream_id(),
            app: app.clone(),
            phase: Phase::Opening,
            state: None,
            subs: Vec::new(),
            pending: VecDeque::new(),
            in_flight: None,
            timers: named_timers::NamedTimers::default(),
            send_bytes: 0,
            resume: resume.map(|r| match cursor::Cursor::parse(&r) {
                Ok(c) => Resume::From(c),
                Err(_) => Resume::Invalid,
            }),
        };
        self.streams.insert(slot, Box::new(stream));
        if app.dispatcher.is_some() {
            if let Some(s) = self.streams.get_mut(&slot) {
                s.pending.push_back(Pending::Open { params });
            }
            self.pump(slot);
            return;
        }
        // A direct app: `params.topic`, comma-separated, subscribes the stream.
        let limit = self.gw.config.limits.max_topics_per_stream;
        let checked = direct_topics(&params)
            .map_err(|reason| (400, reason))
            .and_then(|t| match bounds::refuse_topics(&app, limit, &t) {
                Some(refusal) => Err(refusal),
                None => Ok(t),
            });
        let topics = match checked {
            Ok(t) => t,
            Err((code, reason)) => {
                self.forget(slot);
                app.stats.streams_rejected.inc();
                out.push(Out::Rejected {
                    stream: name,
                    code,
                    reason,
                });
                return;
            }
        };
        for topic in topics {
            self.subscribe(slot, topic, Deliver::Direct, Default::default())
                .await;
        }
        self.mark_open(slot, out);
        self.replay(slot, out).await;
    }

    fn mark_open(&mut self, slot: u32, out: &mut Vec<Out>) {
        if let Some(s) = self.streams.get_mut(&slot) {
            s.phase = Phase::Open;
            s.app.stats.streams_opened.inc();
            s.app.stats.streams.add(1);
            out.push(Out::Opened {
                stream: s.name.clone(),
            });
        }
    }

    async fn client_message(&mut self, slot: u32, data: Box<RawValue>, out: &mut Vec<Out>) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        s.app.stats.events_in.inc();
        if s.app.dispatcher.is_none() {
            // No lambda to hear it: say so rather than drop it silently.
            out.push(Out::Error {
                stream: Some(s.name.as_str().to_owned()),
                code: ErrorCode::BadFrame,
                message: format!(
                    "app {} has no lambda; \"send\" is not available",
                    s.app.name
                ),
            });
            return;
        }
        // No count bound here: the bytes are bounded per connection, and
        // past the bound the client is no longer read (see `bounds`).
        let len = data.get().len();
        s.pending.push_back(Pending::ClientMessage(data));
        self.charge_send(slot, len);
        self.pump(slot);
    }

    /// Handles everything the router and the dispatcher queued for this connection.
    pub async fn on_inbox(&mut self, out: &mut Vec<Out>) {
        let taken = self.outbox.take(&mut self.inbox);
        // drop_oldest: the lost messages were the oldest queued, so the gap goes first.
        for (slot, topic, count) in taken.dropped {
            if let Some(s) = self.streams.get(&slot) {
                s.app.stats.drops_slow_consumer.add(count);
                out.push(Out::Gap {
                    stream: s.name.clone(),
                    topics: vec![topic.as_str().to_owned()],
                });
            }
        }
        let mut inbox = std::mem::take(&mut self.inbox);
        while let Some(item) = inbox.pop_front() {
            match item {
                Inbound::Message { slot, msg } => self.on_message(slot, msg, out),
                Inbound::Timer { slot, id } => self.on_timer(slot, id, out),
                Inbound::Gap { slot, topic } => {
                    if let Some(s) = self.streams.get(&slot) {
                        out.push(Out::Gap {
                            stream: s.name.clone(),
                            topics: vec![topic.as_str().to_owned()],
                        });
                    }
                }
                Inbound::Lambda { slot, outcome } => self.on_lambda(slot, outcome, out).await,
            }
        }
        self.inbox = inbox;
        if taken.overflowed {
            self.close_slow_consumer(out);
        }
    }

    /// Messages were refused for this connection (policy `close`): every
    /// stream on it missed some, so each ends with `slow_consumer`, counted.
    pub fn close_slow_consumer(&mut self, out: &mut Vec<Out>) {
        for s in self.streams.values() {
            s.app.stats.slow_consumer_closes.inc();
        }
        self.close_all(CloseReason::SlowConsumer, out);
    }

    fn on_message(&mut self, slot: u32, msg: Arc<Message>, out: &mut Vec<Out>) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        let Some(i) = s.subs.iter().position(|sub| sub.topic == msg.topic) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let stats = &s.app.stats;
        match s.subs[i].admit(&msg, now) {
            Verdict::Seen => return,
            Verdict::DedupDrop => {
                stats.dedup_drops.inc();
                return skipped(s, i, &msg);
            }
            Verdict::RateDrop => {
                stats.rate_limit_drops.inc();
                return skipped(s, i, &msg);
            }
            Verdict::Deliver => {}
        }
        stats.events_in.inc();
        if s.subs[i].deliver == Deliver::Direct {
            stats.direct_deliveries.inc();
            return deliver_raw(s, i, msg, out);
        }
        if s.pending.len() >= MAX_PENDING_EVENTS {
            stats.slow_consumer_closes.inc();
            return self.close_stream(slot, Ending::of(CloseReason::SlowConsumer), out);
        }
        let sub = &mut s.subs[i];
        match &mut sub.batch {
            None => s.pending.push_back(Pending::Message(msg)),
            Some(b) => {
                if let Some(full) = b.push(msg, now) {
                    sub.batch_timer = None;
                    s.pending.push_back(Pending::Batch(full));
                } else if sub.batch_timer.is_none() {
                    let delay = b
                        .deadline()
                        .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                    let kind = TimerKind::BatchDue(sub.topic.clone());
                    match self.gw.timers.set(&self.outbox, slot, kind, delay, None) {
                        Ok(t) => sub.batch_timer = Some(t),
                        // No timer: send what is gathered now rather than hold it forever.
                        Err(_) => s.pending.push_back(Pending::Batch(b.take())),
                    }
                }
            }
        }
        self.pump(slot);
    }

    /// Sends the stream's next queued event to its lambda if none is in flight.
    fn pump(&mut self, slot: u32) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        if s.in_flight.is_some() {
            return;
        }
        let Some(next) = s.pending.pop_front() else {
            return;
        };
        let Some(dispatcher) = s.app.dispatcher.as_ref() else {
            return;
        };
        let stream = StreamRef {
            id: &s.id,
            state: s.state.as_deref(),
        };
        let event = match &next {
            Pending::Open { params } => Event::Open {
                stream,
                transport: self.transport.as_str(),
                params,
                headers: &forwarded(&self.headers, &s.app.forward_headers),
                remote_addr: &self.remote_addr,
            }
            .to_vec(),
            Pending::Message(m) => message_event(stream, m),
            Pending::Batch(msgs) => batch_event(stream, msgs),
            Pending::ClientMessage(data) => Event::ClientMessage { stream, data }.to_vec(),
            Pending::Timer { name, fired_at_ms } => Event::Timer {
                stream,
                name,
                fired_at_ms: *fired_at_ms,
            }
            .to_vec(),
        };
        if matches!(next, Pending::Batch(_)) {
            s.app.stats.batches.inc();
        }
        s.in_flight = Some(next);
        dispatcher.submit(Job {
            event,
            reply: Reply::Stream {
                outbox: self.outbox.clone(),
                slot,
            },
            ticket: Some(self.outbox.ticket()),
        });
    }

    async fn on_lambda(&mut self, slot: u32, outcome: LambdaOutcome, out: &mut Vec<Out>) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        let Some(done) = s.in_flight.take() else {
            return;
        };
        match (done, outcome) {
            (Pending::Open { .. }, Ok(result)) => self.open_answered(slot, result, out).await,
            (Pending::Open { .. }, Err(e)) => {
                tracing::warn!(app = %s.app.name, error = %e, "open failed: lambda call failed");
                s.app.stats.streams_rejected.inc();
                let name = s.name.clone();
                self.forget(slot);
                out.push(Out::Rejected {
                    stream: name,
                    code: 502,
                    reason: "lambda unavailable".into(),
                });
                return;
            }
            (Pending::Message(msg), outcome) => {
                if self
                    .messages_answered(slot, vec![msg], outcome, out)
                    .await
                    .is_break()
                {
                    return;
                }
            }
            (Pending::Batch(msgs), outcome) => {
                if self
                    .messages_answered(slot, msgs, outcome, out)
                    .await
                    .is_break()
                {
                    return;
                }
            }
            (Pending::Timer { name, .. }, outcome) => {
                s.timers.done(&name);
                if self.answered(slot, outcome, out).await.is_break() {
                    return;
                }
            }
            (Pending::ClientMessage(data), outcome) => {
                self.release_send(slot, data.get().len());
                if self.answered(slot, outcome, out).await.is_break() {
                    return;
                }
            }
        }
        self.pump(slot);
    }

    /// The answer to a `message` or `batch` event: the cursor moves past the
    /// messages, and pushes carry it. On failure, `on_failure` decides.
    async fn messages_answered(
        &mut self,
        slot: u32,
        msgs: Vec<Arc<Message>>,
        outcome: LambdaOutcome,
        out: &mut Vec<Out>,
    ) -> ControlFlow<()> {
        let Some(s) = self.streams.get_mut(&slot) else {
            return ControlFlow::Break(());
        };
        let policy = s.app.on_failure;
        let mut cursor = None;
        let hop = msgs.iter().map(|m| m.hop).max().unwrap_or(0);
        for msg in msgs {
            let Some(i) = s.subs.iter().position(|sub| sub.topic == msg.topic) else {
                continue;
            };
            match (&outcome, policy) {
                (Ok(_), _) => cursor = Some(advance(s, i, &msg)),
                (Err(_), OnFailure::DeliverRaw) => deliver_raw(s, i, msg, out),
                (Err(_), OnFailure::Drop | OnFailure::Close) => {
                    s.app.stats.drops_lambda_failure.inc();
                    advance(s, i, &msg);
                }
            }
        }
        match outcome {
            Ok(result) => self.apply(slot, result, Cause { cursor, hop }, out).await,
            Err(_) if policy == OnFailure::Close => {
                self.close_stream(slot, Ending::of(CloseReason::Error), out);
                ControlFlow::Break(())
            }
            Err(_) => ControlFlow::Continue(()),
        }
    }

    /// The answer to an event without messages (client message, timer).
    async fn answered(
        &mut self,
        slot: u32,
        outcome: LambdaOutcome,
        out: &mut Vec<Out>,
    ) -> ControlFlow<()> {
        let Some(s) = self.streams.get(&slot) else {
            return ControlFlow::Break(());
        };
        match outcome {
            Ok(result) => self.apply(slot, result, Cause::default(), out).await,
            Err(_) => {
                s.app.stats.drops_lambda_failure.inc();
                if s.app.on_failure == OnFailure::Close {
                    self.close_stream(slot, Ending::of(CloseReason::Error), out);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
    }

    async fn open_answered(&mut self, slot: u32, result: EventResult, out: &mut Vec<Out>) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        let mut accepted = false;
        let mut rejection = None;
        let mut actions = Vec::with_capacity(result.len());
        for a in result {
            match a {
                Ok(Action::Accept {}) => accepted = true,
                Ok(Action::Reject { code, reason }) => {
                    rejection.get_or_insert((code, reason));
                }
                Ok(other) => actions.push(Ok(other)),
                Err(e) => actions.push(Err(e)),
            }
        }
        if rejection.is_some() || !accepted {
            let (code, reason) = rejection.unwrap_or((403, "not accepted".into()));
            s.app.stats.streams_rejected.inc();
            let name = s.name.clone();
            self.forget(slot);
            out.push(Out::Rejected {
                stream: name,
                code,
                reason,
            });
            return;
        }
        // Subscriptions and state take effect before `opened`; pushes,
        // publishes and a close follow it, in the order given.
        let (setup, after): (Vec<_>, Vec<_>) = actions.into_iter().partition(|a| {
            matches!(
                a,
                Ok(Action::Subscribe { .. } | Action::Unsubscribe { .. } | Action::SetState { .. })
            )
        });
        let limit = self.gw.config.limits.max_topics_per_stream;
        if bounds::peak_topics(&setup, |t| bounds::allows(&s.app, t)) > limit {
            s.app.stats.invalid_actions.inc();
            s.app.stats.streams_rejected.inc();
            tracing::warn!(app = %s.app.name, stream = %s.id, limit, "open answer subscribes too many topics");
            let name = s.name.clone();
            self.forget(slot);
            out.push(Out::Rejected {
                stream: name,
                code: 400,
                reason: bounds::TOO_MANY_TOPICS.into(),
            });
            return;
        }
        if self
            .apply(slot, setup, Cause::default(), out)
            .await
            .is_break()
        {
            return;
        }
        self.mark_open(slot, out);
        if self
            .apply(slot, after, Cause::default(), out)
            .await
            .is_break()
        {
            return;
        }
        self.replay(slot, out).await;
        self.pump(slot);
    }

    /// Applies one event's actions in order. Break: the stream closed.
    async fn apply(
        &mut self,
        slot: u32,
        actions: EventResult,
        cause: Cause,
        out: &mut Vec<Out>,
    ) -> std::ops::ControlFlow<()> {
        for a in actions {
            let flow = match a {
                Ok(a) => action::apply(self, slot, a, &cause, out).await,
                Err(e) => {
                    self.invalid_action(slot, &e.to_string());
                    std::ops::ControlFlow::Continue(())
                }
            };
            if flow.is_break() {
                return flow;
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    fn invalid_action(&self, slot: u32, why: &str) {
        if let Some(s) = self.streams.get(&slot) {
            s.origin().invalid(why);
        }
    }

    /// Subscribes a stream to a topic (or changes its delivery mode).
    async fn subscribe(
        &mut self,
        slot: u32,
        topic: Topic,
        deliver: Deliver,
        options: subscription::Options,
    ) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        if let Some(sub) = s.subs.iter_mut().find(|sub| sub.topic == topic) {
            sub.configure(deliver, options);
            return;
        }
        let first = self.gw.router.add(
            &topic,
            Subscriber {
                conn: self.outbox.clone(),
                slot,
            },
        );
        if first {
            if let Err(e) = self.gw.broker.watch(&topic).await {
                tracing::warn!(topic = %topic, error = %e, "broker did not confirm interest");
            }
        }
        let position = self
            .gw
            .broker
            .position(&topic)
            .await
            .unwrap_or_else(|_| Arc::from("0"));
        if let Some(s) = self.streams.get_mut(&slot) {
            s.app.stats.subscriptions.add(1);
            // Exact: most streams follow one or two topics, and a
            // subscription is a few hundred bytes.
            s.subs.reserve_exact(1);
            s.subs
                .push(Subscription::new(topic, deliver, position, options));
        }
    }

    fn unsubscribe(&mut self, slot: u32, topic: &Topic) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        let Some(i) = s.subs.iter().position(|sub| &sub.topic == topic) else {
            return;
        };
        s.subs.remove(i);
        s.app.stats.subscriptions.add(-1);
        if self.gw.router.remove(topic, &self.outbox, slot) {
            self.gw.broker.unwatch(topic);
        }
    }

    /// Ends a stream: leaves its topics, tells the client, gives the lambda `close`.
    pub fn close_stream(&mut self, slot: u32, ending: Ending, out: &mut Vec<Out>) {
        let Some(s) = self.streams.get(&slot) else {
            return;
        };
        let was_open = matches!(s.phase, Phase::Open);
        let name = s.name.clone();
        if was_open {
            if let Some(d) = &s.app.dispatcher {
                let event = Event::Close {
                    stream: StreamRef {
                        id: &s.id,
                        state: s.state.as_deref(),
                    },
                    reason: ending.reason,
                };
                d.submit(Job {
                    event: event.to_vec(),
                    reply: Reply::Detached {
                        stream_id: s.id.clone(),
                    },
                    ticket: Some(self.outbox.ticket()),
                });
            }
            s.app.stats.streams.add(-1);
        }
        self.forget(slot);
        out.push(Out::Closed {
            stream: name,
            code: ending.code,
            reason: ending.text,
        });
    }

    /// Closes every stream (connection gone or drain).
    pub fn close_all(&mut self, reason: CloseReason, out: &mut Vec<Out>) {
        let slots: Vec<u32> = self.streams.keys().copied().collect();
        for slot in slots {
            self.close_stream(slot, Ending::of(reason), out);
        }
    }

    /// Drops a stream's bookkeeping and router entries, without telling anyone.
    fn forget(&mut self, slot: u32) {
        let Some(s) = self.streams.remove(&slot) else {
            return;
        };
        self.send_bytes = self.send_bytes.saturating_sub(s.send_bytes);
        for sub in &s.subs {
            s.app.stats.subscriptions.add(-1);
            if self.gw.router.remove(&sub.topic, &self.outbox, slot) {
                self.gw.broker.unwatch(&sub.topic);
            }
        }
    }

    /// Each stream's current cursor, for keepalive pings.
    pub fn cursors(&self) -> Map<String, Value> {
        self.streams
            .values()
            .map(|s| {
                (
                    s.name.as_str().to_owned(),
                    Value::String(cursor_of(s, &self.gw)),
                )
            })
            .collect()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The transport normally closes streams itself; this is the backstop
        // that keeps the router from holding a dead connection.
        let mut out = Vec::new();
        self.close_all(CloseReason::Client, &mut out);
        self.outbox.close();
    }
}

fn unknown_stream(name: &StreamName) -> Out {
    Out::Error {
        stream: Some(name.as_str().to_owned()),
        code: ErrorCode::UnknownStream,
        message: format!("no open stream named {name} on this connection"),
    }
}

/// Moves the stream past `msg` in its topic and returns its new cursor.
fn advance(s: &mut Stream, i: usize, msg: &Arc<Message>) -> CursorText {
    s.subs[i].position = msg.id.clone();
    if s.subs.len() == 1 {
        return CursorText::Shared(msg.clone());
    }

    let mut c = msg
        .single_topic_cursor()
        .split('~')
        .next()
        .unwrap_or_default()
        .to_owned();
    for sub in &s.subs {
        cursor::push_entry(&mut c, sub.topic.as_str(), &sub.position);
    }
    CursorText::Owned(Arc::from(c))
}

/// A message the stream skips on purpose: the cursor moves past it, unless
/// earlier messages still wait for the lambda (the cursor must not pass them).
fn skipped(s: &mut Stream, i: usize, msg: &Arc<Message>) {
    if s.in_flight.is_none() && s.pending.is_empty() {
        s.subs[i].position = msg.id.clone();
    }
}

fn deliver_raw(s: &mut Stream, i: usize, msg: Arc<Message>, out: &mut Vec<Out>) {
    let cursor = advance(s, i, &msg);
    s.app.stats.events_out.inc();
    out.push(Out::Event {
        stream: s.name.clone(),
        cursor: Some(cursor),
        event: None,
        body: Body::Topic(msg),
    });
}

fn cursor_of(s: &Stream, gw: &Gateway) -> String {
    let mut c = gw.broker.epoch().to_owned();
    for sub in &s.subs {
        cursor::push_entry(&mut c, sub.topic.as_str(), &sub.position);
    }
    c
}

fn forwarded(headers: &Map<String, Value>, allow: &[String]) -> Map<String, Value> {
    allow
        .iter()
        .filter_map(|h| headers.get(h).map(|v| (h.clone(), v.clone())))
        .collect()
}

/// Topics named by a direct app's `topic` param.
fn direct_topics(params: &Map<String, Value>) -> Result<Vec<Topic>, String> {
    let Some(v) = params.get("topic") else {
        return Ok(Vec::new());
    };
    let Some(text) = v.as_str() else {
        return Err("param \"topic\" must be a string".into());
    };
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| Topic::new(t).map_err(|e| e.to_string()))
        .collect()
}
