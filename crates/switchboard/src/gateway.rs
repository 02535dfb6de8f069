//! The top-level wiring: the one place that knows every part. Builds the
//! broker, router, apps and their dispatchers from a validated [`Config`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use switchboard_protocol::AppName;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::memory::MemoryBroker;
use crate::broker::Broker;
use crate::capability::sink::Sink;
use crate::capability::timer_shards::Timers;

/// Sinks by name.
pub type Sinks = HashMap<String, Sink>;
use crate::dispatcher::{Dispatcher, LambdaClient};
use crate::ops::config::{BrokerUrl, Config, OnFailure};
use crate::ops::metrics::{AppStats, NodeStats};
use crate::router::TopicRouter;

/// One app: its lambda (if any) and its counters.
pub struct App {
    pub name: AppName,
    pub dispatcher: Option<Dispatcher>,
    pub on_failure: OnFailure,
    pub forward_headers: Vec<String>,
    pub stats: Arc<AppStats>,
    /// The topics its streams may follow; None: any.
    pub topics: Option<crate::stream::topics::TopicPatterns>,
}

/// Everything shared by all connections of this node.
pub struct Gateway {
    pub config: Config,
    pub apps: HashMap<AppName, Arc<App>>,
    pub broker: Arc<dyn Broker>,
    pub router: Arc<TopicRouter>,
    pub node: NodeStats,
    /// Cancelled when the drain starts: connections close their streams.
    pub shutdown: CancellationToken,
    /// The listener and every connection task.
    pub tracker: TaskTracker,
    /// Cancelled once connections are done: dispatchers finish what is queued and stop.
    pub stop_dispatch: CancellationToken,
    /// Dispatcher tasks and their lambda calls.
    pub dispatch_tracker: TaskTracker,
    pub lambda_client: LambdaClient,
    /// The node's timer wheels.
    pub timers: Timers,
    /// Sinks for `buffer` actions, by name.
    pub sinks: Arc<Sinks>,
    /// Cancelled after the dispatchers are done: sinks flush and stop.
    pub stop_sinks: CancellationToken,
    pub sink_tracker: TaskTracker,
    /// Every header some app forwards: a connection keeps only these.
    pub forwarded_headers: Vec<String>,
    /// Connection caps and the edge's counters.
    pub edge: Arc<crate::transport::edge::Edge>,
    draining: AtomicBool,
    node_id: String,
    next_stream: AtomicU64,
}

impl Gateway {
    /// Builds the node; a shared broker is connected first (the node starts
    /// not ready if it cannot be reached yet, and keeps trying).
    pub async fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let router = Arc::new(TopicRouter::default());
        let broker = broker(&config, &router).await?;
        let tracker = TaskTracker::new();
        let dispatch_tracker = TaskTracker::new();
        let stop_dispatch = CancellationToken::new();
        let lambda_client = LambdaClient::new(config.lambda_ca.clone());
        let stop_sinks = CancellationToken::new();
        let sink_tracker = TaskTracker::new();
        let sinks: Arc<Sinks> = Arc::new(
            config
                .sinks
                .iter()
                .map(|c| {
                    let sink = Sink::start(
                        c.clone(),
                        lambda_client.clone(),
                        stop_sinks.clone(),
                        &sink_tracker,
                    );
                    (c.name.clone(), sink)
                })
                .collect(),
        );
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
        let timers = Timers::start(shards);
        let shared = crate::dispatcher::DispatcherParts {
            client: lambda_client.clone(),
            broker: broker.clone(),
            sinks: sinks.clone(),
            max_publish_hops: config.limits.max_publish_hops,
            tracker: dispatch_tracker.clone(),
            stop: stop_dispatch.clone(),
            dev: config.dev,
        };

        let apps = config
            .apps
            .iter()
            .map(|a| {
                let stats = Arc::new(AppStats::default());
                let dispatcher = a
                    .lambda
                    .as_ref()
                    .map(|l| Dispatcher::start(a.name.clone(), l.clone(), stats.clone(), &shared));
                let app = App {
                    name: a.name.clone(),
                    dispatcher,
                    on_failure: a.lambda.as_ref().map(|l| l.on_failure).unwrap_or_default(),
                    forward_headers: a
                        .lambda
                        .as_ref()
                        .map(|l| l.forward_headers.clone())
                        .unwrap_or_default(),
                    stats,
                    topics: a.topics.clone(),
                };
                (a.name.clone(), Arc::new(app))
            })
            .collect();
        let mut forwarded_headers: Vec<String> = config
            .apps
            .iter()
            .filter_map(|a| a.lambda.as_ref())
            .flat_map(|l| l.forward_headers.clone())
            .collect();
        forwarded_headers.sort();
        forwarded_headers.dedup();
        Ok(Arc::new(Self {
            forwarded_headers,
            edge: Arc::new(crate::transport::edge::Edge::new(&config.edge)),
            config,
            apps,
            broker,
            router,
            node: NodeStats::default(),
            shutdown: CancellationToken::new(),
            tracker,
            stop_dispatch,
            dispatch_tracker,
            lambda_client,
            timers,
            sinks,
            stop_sinks,
            sink_tracker,
            draining: AtomicBool::new(false),
            node_id: format!("{:08x}", rand::random::<u32>()),
            next_stream: AtomicU64::new(1),
        }))
    }

    /// A stream id unique across nodes and restarts (random node prefix).
    pub fn next_stream_id(&self) -> String {
        format!(
            "{}-{}",
            self.node_id,
            self.next_stream.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn app(&self, name: &str) -> Option<&Arc<App>> {
        self.apps.get(name)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts the drain: no new streams; every connection closes its streams.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.shutdown.cancel();
    }

    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.broker.is_ready()
    }

    /// Apps sorted by name, for metrics output.
    pub fn apps_sorted(&self) -> Vec<(&str, &AppStats)> {
        let mut v: Vec<_> = self
            .apps
            .values()
            .map(|a| (a.name.as_str(), &*a.stats))
            .collect();
        v.sort_by_key(|(n, _)| *n);
        v
    }
}

/// The broker named by the config: embedded, or a shared one.
async fn broker(config: &Config, router: &Arc<TopicRouter>) -> anyhow::Result<Arc<dyn Broker>> {
    let dedup_window = config.limits.publish_dedup_window;
    Ok(match &config.broker {
        BrokerUrl::Memory => {
            let memory = Arc::new(MemoryBroker::new(
                router.clone(),
                config.history.clone(),
                dedup_window,
            ));
            memory.start_sweeper(std::time::Duration::from_secs(30));
            memory
        }
        #[cfg(feature = "nats")]
        BrokerUrl::Nats(url) => Arc::new(
            crate::broker::nats::NatsBroker::start(
                url,
                config.broker_ca.as_ref(),
                router.clone(),
                config.history.clone(),
                dedup_window,
            )
            .await?,
        ),
        #[cfg(feature = "redis")]
        BrokerUrl::Redis(url) => Arc::new(
            crate::broker::redis::RedisBroker::start(
                url,
                config.broker_ca.as_ref(),
                router.clone(),
                config.history.clone(),
                dedup_window,
            )
            .await?,
        ),
        #[allow(unreachable_patterns)]
        other => anyhow::bail!("broker {other:?} is not in this build"),
    })
}
