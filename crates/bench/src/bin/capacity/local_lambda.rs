//! A minimal local lambda for the lambda-client round: it answers every
//! request with empty results, counting the events.

use super::*;

/// A lambda's answer: one push per event.
pub(super) fn answer_body(events: usize) -> Vec<u8> {
    let one = json!({"actions": [{"type": "push", "event": "comment",
        "data": {"text": "hello", "by": "php", "count": 18}}]});
    json!({ "results": vec![one; events] })
        .to_string()
        .into_bytes()
}

/// The smallest lambda: canned answers over HTTP/1.1 keep-alive, one OS
/// thread per connection, outside the measured thread.
pub(super) struct MinimalLambda {
    pub(super) port: u16,
    pub(super) events: Arc<AtomicUsize>,
}

impl MinimalLambda {
    pub(super) fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let events = Arc::new(AtomicUsize::new(1));
        let shared = events.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let events = shared.clone();
                std::thread::spawn(move || serve(conn, &events));
            }
        });
        Ok(Self { port, events })
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// How many results each answer holds from now on.
    pub(super) fn answer_events(&self, n: usize) {
        self.events.store(n, Ordering::SeqCst);
    }
}

pub(super) fn serve(mut conn: TcpStream, events: &AtomicUsize) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; 64];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut tmp = [0u8; 64 * 1024];
            match conn.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut tmp = [0u8; 64 * 1024];
            match conn.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_end + len);
        let n = events.load(Ordering::SeqCst).min(63);
        let body = answers[n].get_or_insert_with(|| answer_body(n));
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}
