//! Batching per subscription (lambda delivery): messages gather until
//! `max_messages` or until `max_delay` after the first, then go to the
//! lambda as one `batch` event.

use std::sync::Arc;

use tokio::time::{Duration, Instant};

use switchboard_protocol::lambda::bounds;

use crate::broker::Message;

#[derive(Debug)]
pub struct Batcher {
    max_messages: usize,
    max_delay: Duration,
    messages: Vec<Arc<Message>>,
    /// When the current batch must go, at the latest.
    deadline: Option<Instant>,
}

impl Batcher {
    /// Values past the lambda's bounds (checked where actions are parsed)
    /// are clamped to them, so no input overflows a deadline.
    pub fn new(max_messages: u32, max_delay: Duration) -> Self {
        Self {
            max_messages: max_messages.clamp(1, bounds::MAX_BATCH_MESSAGES) as usize,
            max_delay: max_delay.min(Duration::from_millis(bounds::MAX_BATCH_DELAY_MS)),
            messages: Vec::new(),
            deadline: None,
        }
    }

    /// Adds a message; returns the full batch when it reached `max_messages`.
    pub fn push(&mut self, msg: Arc<Message>, now: Instant) -> Option<Vec<Arc<Message>>> {
        if self.messages.is_empty() {
            self.deadline = Some(now.checked_add(self.max_delay).unwrap_or(now));
        }
        self.messages.push(msg);
        (self.messages.len() >= self.max_messages).then(|| self.take())
    }

    /// The batch, if its delay has passed at `now`.
    pub fn due(&mut self, now: Instant) -> Option<Vec<Arc<Message>>> {
        match self.deadline {
            Some(d) if now >= d && !self.messages.is_empty() => Some(self.take()),
            _ => None,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn take(&mut self) -> Vec<Arc<Message>> {
        self.deadline = None;
        std::mem::take(&mut self.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use switchboard_protocol::Topic;

    fn msg(id: u64) -> Arc<Message> {
        let data = RawValue::from_string(id.to_string()).unwrap();
        Arc::new(Message::new(
            Topic::new("t").unwrap(),
            Arc::from(id.to_string()),
            data,
            Arc::from("e"),
            None,
        ))
    }

    #[test]
    fn flushes_on_size_and_on_delay() {
        let t0 = Instant::now();
        let mut b = Batcher::new(3, Duration::from_millis(100));
        assert!(b.push(msg(1), t0).is_none());
        assert!(b.push(msg(2), t0).is_none());
        assert_eq!(b.push(msg(3), t0).map(|v| v.len()), Some(3));
        assert!(b.deadline().is_none());
        assert!(b.push(msg(4), t0 + Duration::from_millis(10)).is_none());
        assert!(
            b.due(t0 + Duration::from_millis(100)).is_none(),
            "deadline counts from the first message"
        );
        let batch = b.due(t0 + Duration::from_millis(110)).unwrap();
        assert_eq!(
            batch.iter().map(|m| m.id.to_string()).collect::<Vec<_>>(),
            ["4"]
        );
        assert!(b.due(t0 + Duration::from_secs(9)).is_none());
    }
}
