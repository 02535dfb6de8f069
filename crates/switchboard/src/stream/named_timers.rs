//! A stream's named timers and what happens when one comes due: a `timer`
//! event to the lambda, skipped while the previous tick is still in flight.
//! Batch deadlines come due here too.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Duration;

use super::{Connection, Out, Pending};
use crate::capability::timer_shards::{unix_ms, TimerKind, TimerToken};

/// Most named timers one stream may hold.
pub const MAX_TIMERS_PER_STREAM: usize = 32;

struct NamedTimer {
    token: Arc<TimerToken>,
    periodic: bool,
    /// A tick of this timer is queued or in flight.
    busy: bool,
}

#[derive(Default)]
pub(super) struct NamedTimers {
    timers: HashMap<Arc<str>, NamedTimer>,
}

impl NamedTimers {
    /// Dropping the token is the cancel (see `capability::timer_shards`).
    pub fn cancel(&mut self, name: &str) {
        self.timers.remove(name);
    }

    /// The lambda answered this timer's tick.
    pub fn done(&mut self, name: &str) {
        if let Some(t) = self.timers.get_mut(name) {
            t.busy = false;
        }
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }
}

/// Drops the ticks of timer `name` still queued for the lambda: once a timer
/// is cancelled or replaced, a tick that came due before must not reach it.
pub(super) fn drop_queued_ticks(pending: &mut VecDeque<Pending>, name: &str) {
    pending.retain(|p| !matches!(p, Pending::Timer { name: n, .. } if &**n == name));
}

impl Connection {
    pub(super) fn set_timer(
        &mut self,
        slot: u32,
        name: String,
        after: Duration,
        every: Option<Duration>,
    ) -> Result<(), String> {
        let Some(s) = self.streams.get_mut(&slot) else {
            return Ok(());
        };
        let name: Arc<str> = Arc::from(name);
        if !s.timers.timers.contains_key(&name) && s.timers.len() >= MAX_TIMERS_PER_STREAM {
            return Err(format!(
                "a stream holds at most {MAX_TIMERS_PER_STREAM} timers"
            ));
        }
        let token = self
            .gw
            .timers
            .set(
                &self.outbox,
                slot,
                TimerKind::Named(name.clone()),
                after,
                every,
            )
            .map_err(|e| e.to_string())?;
        // Same name replaces: the old token is dropped, so the old timer dies.
        drop_queued_ticks(&mut s.pending, &name);
        s.timers.timers.insert(
            name,
            NamedTimer {
                token,
                periodic: every.is_some(),
                busy: false,
            },
        );
        s.app.stats.timers_set.inc();
        Ok(())
    }

    pub(super) fn on_timer(&mut self, slot: u32, id: u64, _out: &mut [Out]) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        if let Some(sub) = s
            .subs
            .iter_mut()
            .find(|sub| sub.batch_timer.as_ref().is_some_and(|t| t.id == id))
        {
            sub.batch_timer = None;
            if let Some(batch) = sub
                .batch
                .as_mut()
                .map(|b| b.take())
                .filter(|b| !b.is_empty())
            {
                s.pending.push_back(Pending::Batch(batch));
                self.pump(slot);
            }
            return;
        }
        let Some((name, timer)) = s.timers.timers.iter_mut().find(|(_, t)| t.token.id == id) else {
            return; // replaced or cancelled since it was queued
        };
        let name = name.clone();
        if timer.busy {
            s.app.stats.timers_skipped.inc();
            return;
        }
        timer.busy = true;
        if !timer.periodic {
            s.timers.timers.remove(&name);
        }
        s.app.stats.timers_fired.inc();
        s.pending.push_back(Pending::Timer {
            name,
            fired_at_ms: unix_ms(),
        });
        self.pump(slot);
    }
}
