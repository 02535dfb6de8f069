//! Resume: replays each followed topic after the cursor's position, through
//! the same path as live messages, with `gap` first where history no longer
//! reaches back or the cursor cannot be used.

use switchboard_protocol::Topic;

use super::{Connection, Out, Resume};

impl Connection {
    /// Resume: for each followed topic in the cursor, the messages after its
    /// position, through the live path; `gap` first for topics whose history
    /// no longer reaches back (or a cursor that cannot be used).
    pub(super) async fn replay(&mut self, slot: u32, out: &mut Vec<Out>) {
        let Some(s) = self.streams.get_mut(&slot) else {
            return;
        };
        let Some(resume) = s.resume.take() else {
            return;
        };
        let topics: Vec<Topic> = s.subs.iter().map(|sub| sub.topic.clone()).collect();
        let mut gaps = Vec::new();
        let mut replays = Vec::new();
        for topic in topics {
            let cursor = match &resume {
                Resume::Invalid => {
                    gaps.push(topic);
                    continue;
                }
                Resume::From(c) => c,
            };
            // A topic the cursor does not name starts live.
            let Some(after) = cursor.position(topic.as_str()) else {
                continue;
            };
            if cursor.epoch != self.gw.broker.epoch() {
                gaps.push(topic);
                continue;
            }
            let history = match self.gw.broker.history(&topic, after).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "history unavailable for resume");
                    gaps.push(topic);
                    continue;
                }
            };
            if history.truncated {
                gaps.push(topic.clone());
            }
            // What history still holds is replayed, after a gap too: the
            // subscription must take it again (not as already seen).
            if !history.truncated || !history.messages.is_empty() {
                if let Some(sub) = self
                    .streams
                    .get_mut(&slot)
                    .and_then(|s| s.subs.iter_mut().find(|x| x.topic == topic))
                {
                    sub.resume_from(after);
                }
            }
            replays.push(history.messages);
        }
        if !gaps.is_empty() {
            if let Some(s) = self.streams.get(&slot) {
                out.push(Out::Gap {
                    stream: s.name.clone(),
                    topics: gaps.iter().map(|t| t.as_str().to_owned()).collect(),
                });
            }
        }
        for msg in replays.into_iter().flatten() {
            self.on_message(slot, msg, out);
        }
    }
}
