//! A Server-Sent Events client over raw HTTP/1.1: status, headers, then events
//! decoded from the chunked body; comment lines are counted, not returned.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::http::{find_header, send_request, BodyReader};
use crate::{within, WAIT};

/// One dispatched event. `id` and `event` are what this event's own lines set
/// (not the last-event-id carried over from earlier events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.data)
            .with_context(|| format!("SSE data is not JSON: {:?}", self.data))
    }
}

/// An open `GET` on an SSE endpoint.
pub struct SseClient {
    body: BodyReader,
    /// Decoded body bytes not yet split into lines.
    pending: Vec<u8>,
    /// Fields of the event being assembled.
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    /// A dispatched event not yet returned.
    ready: Option<SseEvent>,
    comments: Vec<String>,
    ended: bool,
}

impl SseClient {
    /// `GET url` (`http://127.0.0.1:PORT/v1/sse/app?...`) with `Accept:
    /// text/event-stream` and `headers`; returns once the response head is in,
    /// whatever the status (10 s bound).
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::connect_within(url, headers, WAIT).await
    }

    /// Like [`SseClient::connect`], waiting up to `limit` for the head (an
    /// open that calls a failing lambda may be retried first).
    pub async fn connect_within(
        url: &str,
        headers: &[(&str, &str)],
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let stream = send_request("GET", url, &all, None).await?;
        let body = within(limit, &format!("the SSE response head of {url}"), async {
            BodyReader::read_head(stream).await
        })
        .await?;
        Ok(Self {
            body,
            pending: Vec::new(),
            id: None,
            event: None,
            data: None,
            ready: None,
            comments: Vec::new(),
            ended: false,
        })
    }

    pub fn status(&self) -> u16 {
        self.body.status
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.body.headers
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.body.headers, name)
    }

    /// The whole body (for a non-200 answer), bounded by `limit`.
    pub async fn body_bytes(&mut self, limit: Duration) -> anyhow::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.pending);
        let rest = within(limit, "the response body", self.body.read_to_end()).await?;
        out.extend_from_slice(&rest);
        self.ended = true;
        Ok(out)
    }

    /// The whole body parsed as JSON (e.g. a 404's error body).
    pub async fn body_json(&mut self, limit: Duration) -> anyhow::Result<Value> {
        let bytes = self.body_bytes(limit).await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "body is not JSON: {:?}",
                String::from_utf8_lossy(&bytes).into_owned()
            )
        })
    }

    /// Comment lines seen so far, without the leading `:` (e.g. `" ping c"`).
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// The next event; an error if none arrives within `limit` or the
    /// response ends first.
    pub async fn next_event(&mut self, limit: Duration) -> anyhow::Result<SseEvent> {
        self.next_event_or_end(limit)
            .await?
            .context("SSE response ended before the next event")
    }

    /// The next event, or `None` if the response ended cleanly first.
    pub async fn next_event_or_end(&mut self, limit: Duration) -> anyhow::Result<Option<SseEvent>> {
        within(limit, "the next SSE event", self.read_event()).await
    }

    /// Reads until a comment line arrives; returns its text (after the `:`).
    pub async fn next_comment(&mut self, limit: Duration) -> anyhow::Result<String> {
        let seen = self.comments.len();
        within(limit, "an SSE comment line", async {
            while self.comments.len() == seen {
                if !self.process_line().await? {
                    anyhow::bail!("SSE response ended before a comment line");
                }
            }
            Ok(self.comments[seen].clone())
        })
        .await
    }

    async fn read_event(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(event) = self.ready.take() {
                return Ok(Some(event));
            }
            if !self.process_line().await? {
                return Ok(None);
            }
        }
    }
}

// Line handling lives apart from the public API above.
impl SseClient {
    /// Handles one line of the event stream; `false` once the body has ended.
    async fn process_line(&mut self) -> anyhow::Result<bool> {
        let line = loop {
            if let Some(line) = self.split_line()? {
                break line;
            }
            if self.ended {
                return Ok(false);
            }
            match self.body.next_piece().await? {
                Some(piece) => self.pending.extend_from_slice(&piece),
                None => self.ended = true,
            }
        };
        self.apply_line(&line);
        Ok(true)
    }

    /// A complete line from `pending` (ended by `\n`, `\r\n` or `\r`).
    fn split_line(&mut self) -> anyhow::Result<Option<String>> {
        let Some(i) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') else {
            return Ok(None);
        };
        // A trailing `\r` may be the first half of `\r\n`: wait for more.
        if self.pending[i] == b'\r' && i + 1 == self.pending.len() && !self.ended {
            return Ok(None);
        }
        let skip = if self.pending[i] == b'\r' && self.pending.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        let line: Vec<u8> = self.pending.drain(..i + skip).take(i).collect();
        String::from_utf8(line)
            .map(Some)
            .context("SSE line is not UTF-8")
    }

    fn apply_line(&mut self, line: &str) {
        if line.is_empty() {
            // Dispatch: an event with no data line is dropped (as browsers do).
            let id = self.id.take();
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                self.ready = Some(SseEvent { id, event, data });
            }
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.comments.push(comment.to_owned());
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// Asserts the gateway's end of an SSE response: `event: closed` with
/// `code`, then the end of the response.
pub async fn expect_sse_closed(sse: &mut SseClient, code: u16) -> anyhow::Result<()> {
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event.as_deref(), Some("closed"), "{event:?}");
    assert_eq!(event.json()?["code"], code, "{event:?}");
    assert_eq!(
        sse.next_event_or_end(WAIT).await?,
        None,
        "the response ends"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn events_comments_and_end_are_decoded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = sock.read(&mut req).await;
            let body = "id: e~t~1\r\ndata: {\"a\":1}\r\n\r\n: ping e~t~1\n\nevent: comment\ndata: x\ndata: y\n\nid: ignored-no-data\n\nevent: closed\ndata: {\"code\":4001}\n\n";
            let mut raw = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            // Chunks split mid-line and mid-CRLF.
            for piece in body.as_bytes().chunks(7) {
                raw.push_str(&format!("{:x}\r\n", piece.len()));
                raw.push_str(std::str::from_utf8(piece).unwrap());
                raw.push_str("\r\n");
            }
            raw.push_str("0\r\n\r\n");
            for piece in raw.as_bytes().chunks(5) {
                sock.write_all(piece).await.unwrap();
            }
        });
        let mut sse = SseClient::connect(&format!("http://{addr}/v1/sse/x"), &[])
            .await
            .unwrap();
        assert_eq!(sse.status(), 200);
        assert_eq!(sse.header("content-type"), Some("text/event-stream"));
        let first = sse.next_event(WAIT).await.unwrap();
        assert_eq!(first.id.as_deref(), Some("e~t~1"));
        assert_eq!(first.json().unwrap(), serde_json::json!({"a": 1}));
        let second = sse.next_event(WAIT).await.unwrap();
        assert_eq!(second.event.as_deref(), Some("comment"));
        assert_eq!(second.id, None);
        assert_eq!(second.data, "x\ny");
        assert_eq!(sse.comments(), [" ping e~t~1".to_owned()]);
        let closed = sse.next_event(WAIT).await.unwrap();
        assert_eq!(closed.event.as_deref(), Some("closed"));
        assert_eq!(closed.id, None);
        assert_eq!(sse.next_event_or_end(WAIT).await.unwrap(), None);
    }
}
