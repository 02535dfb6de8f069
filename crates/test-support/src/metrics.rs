//! `/metrics` as numbers: fetch and parse the Prometheus text, wait for a
//! per-app sample.

use std::collections::HashMap;
use std::time::Duration;

use crate::get;

/// `GET /metrics`, parsed: sample name (with its labels, as printed) to value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(HashMap<String, f64>);

impl Metrics {
    pub async fn fetch(http_url: &str) -> anyhow::Result<Self> {
        let resp = get(&format!("{}/metrics", http_url.trim_end_matches('/'))).await?;
        anyhow::ensure!(resp.status == 200, "GET /metrics answered {}", resp.status);
        Ok(Self::parse(&resp.text()))
    }

    /// Prometheus text: `name{labels} value` lines; comments skipped.
    pub fn parse(text: &str) -> Self {
        let map = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.trim().to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        Self(map)
    }

    /// A node-wide sample (`switchboard_published`); 0 if absent.
    pub fn node(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// A per-app sample: `switchboard_app_<name>{app="<app>"}`; 0 if absent.
    pub fn app(&self, name: &str, app: &str) -> f64 {
        self.0
            .get(&format!("switchboard_app_{name}{{app=\"{app}\"}}"))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether the sample exists at all (a metric the gateway must expose).
    pub fn has(&self, sample: &str) -> bool {
        self.0.contains_key(sample)
    }
}

/// Polls `/metrics` until the per-app sample `name` satisfies `pred`; returns it.
pub async fn wait_app_metric(
    http_url: &str,
    name: &str,
    app: &str,
    limit: Duration,
    pred: impl Fn(f64) -> bool,
) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let v = Metrics::fetch(http_url).await?.app(name, app);
        if pred(v) {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("switchboard_app_{name}{{app={app:?}}} is {v} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
