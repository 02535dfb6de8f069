//! A tiny HTTP/1.1 client over raw TCP (or TLS, for `https://`): requests,
//! response heads, and bodies in any framing (chunked, Content-Length, until
//! close). Raw on purpose: the tests see exactly the bytes the gateway sends.

use anyhow::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tls::Stream;
use crate::{within, WAIT};

/// Longest response head we accept.
const MAX_HEAD: usize = 64 * 1024;

/// A whole response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `http(s)://host:port/path?query` into (`host:port`, `/path?query`, TLS or not).
pub(crate) fn split_url(url: &str) -> anyhow::Result<(String, String, bool)> {
    let (rest, tls) = crate::tls::after_scheme(url, "http", "https")?;
    Ok(match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned(), tls),
        None => (rest.to_owned(), "/".to_owned(), tls),
    })
}

/// Opens a connection and writes one request.
pub(crate) async fn send_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<Stream> {
    let (authority, path, tls) = split_url(url)?;
    let mut stream = within(WAIT, "connect", crate::tls::connect(&authority, tls)).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    within(WAIT, "writing the request", async {
        stream.write_all(&bytes).await?;
        // TLS: out of rustls's buffer.
        stream.flush().await?;
        Ok(())
    })
    .await?;
    Ok(stream)
}

/// One request, `Connection: close`, whole response read (10 s bound).
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<HttpResponse> {
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let stream = send_request(method, url, &all, body).await?;
    within(WAIT, &format!("the response to {method} {url}"), async {
        let mut reader = BodyReader::read_head(stream).await?;
        let body = reader.read_to_end().await?;
        Ok(HttpResponse {
            status: reader.status,
            headers: reader.headers,
            body,
        })
    })
    .await
}

/// `GET url`.
pub async fn get(url: &str) -> anyhow::Result<HttpResponse> {
    http_request("GET", url, &[], None).await
}

/// `POST {http_url}/v1/publish` with a JSON body; the status and the body as
/// JSON (a body that is not JSON comes back as a JSON string).
pub async fn publish(
    http_url: &str,
    key: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    publish_raw(http_url, key, body.to_string().as_bytes()).await
}

/// Like [`publish`] with any bytes as the body.
pub async fn publish_raw(
    http_url: &str,
    key: Option<&str>,
    body: &[u8],
) -> anyhow::Result<(u16, Value)> {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let url = format!("{}/v1/publish", http_url.trim_end_matches('/'));
    let resp = http_request("POST", &url, &headers, Some(body)).await?;
    let value = resp.json().unwrap_or_else(|_| Value::String(resp.text()));
    Ok((resp.status, value))
}

enum Framing {
    /// `left`: bytes of the current chunk still to read; `crlf`: the CRLF
    /// after a finished chunk is still to be consumed.
    Chunked {
        left: usize,
        crlf: bool,
        finished: bool,
    },
    Length(usize),
    UntilClose,
    Done,
}

/// A response being read: its head, then its body piece by piece. Reading a
/// piece is cancel-safe (state changes only once a whole unit is buffered), so
/// callers may wrap it in a timeout and read on afterwards.
pub(crate) struct BodyReader {
    stream: Stream,
    buf: Vec<u8>,
    framing: Framing,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl BodyReader {
    /// Reads the status line and headers (no timeout here; callers bound it).
    pub async fn read_head(stream: Stream) -> anyhow::Result<Self> {
        let mut reader = Self {
            stream,
            buf: Vec::new(),
            framing: Framing::Done,
            status: 0,
            headers: Vec::new(),
        };
        let end = loop {
            if let Some(i) = find(&reader.buf, b"\r\n\r\n") {
                break i;
            }
            anyhow::ensure!(reader.buf.len() < MAX_HEAD, "response head too long");
            anyhow::ensure!(
                reader.fill().await? > 0,
                "connection closed before the response head ({} bytes read)",
                reader.buf.len()
            );
        };
        let head = String::from_utf8(reader.buf[..end].to_vec()).context("non-UTF-8 head")?;
        reader.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        reader.status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("bad header line {line:?}"))?;
            reader
                .headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let chunked = find_header(&reader.headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = find_header(&reader.headers, "content-length").and_then(|v| v.parse().ok());
        reader.framing = if matches!(reader.status, 100..=199 | 204 | 304) {
            Framing::Done
        } else if chunked {
            Framing::Chunked {
                left: 0,
                crlf: false,
                finished: false,
            }
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        Ok(reader)
    }

    async fn fill(&mut self) -> anyhow::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut tmp)
            .await
            .context("reading response")?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            anyhow::ensure!(
                self.fill().await? > 0,
                "connection closed inside chunk framing"
            );
        }
    }

    /// The next decoded piece of the body; `None` once the body is complete.
    pub async fn next_piece(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            match &mut self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    if self.buf.is_empty() {
                        anyhow::ensure!(self.fill().await? > 0, "body shorter than Content-Length");
                        continue;
                    }
                    let n = (*left).min(self.buf.len());
                    *left -= n;
                    return Ok(Some(self.buf.drain(..n).collect()));
                }
                Framing::UntilClose => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(std::mem::take(&mut self.buf)));
                }
                Framing::Chunked { finished: true, .. } => {
                    // Trailers up to the empty line.
                    while !self.line().await?.is_empty() {}
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Chunked { crlf: true, .. } => {
                    let crlf = self.line().await?;
                    anyhow::ensure!(crlf.is_empty(), "chunk not followed by CRLF");
                    if let Framing::Chunked { crlf, .. } = &mut self.framing {
                        *crlf = false;
                    }
                }
                Framing::Chunked { left: 0, .. } => {
                    let line = self.line().await?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16)
                        .with_context(|| format!("bad chunk size line {line:?}"))?;
                    self.framing = Framing::Chunked {
                        left: size,
                        crlf: false,
                        finished: size == 0,
                    };
                }
                Framing::Chunked { left, crlf, .. } => {
                    if self.buf.is_empty() {
                        anyhow::ensure!(self.fill().await? > 0, "connection closed inside a chunk");
                        continue;
                    }
                    let n = (*left).min(self.buf.len());
                    *left -= n;
                    *crlf = *left == 0;
                    return Ok(Some(self.buf.drain(..n).collect()));
                }
            }
        }
    }

    pub async fn read_to_end(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(piece) = self.next_piece().await? {
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Publishes `datas` on `topic` in batches within the publish limits (1,000
/// messages, 4 MiB); returns the ids.
pub async fn publish_many(
    http_url: &str,
    topic: &str,
    datas: &[Value],
) -> anyhow::Result<Vec<String>> {
    const BATCH_BYTES: usize = 3 << 20;
    let mut ids = Vec::with_capacity(datas.len());
    let mut chunks: Vec<&[Value]> = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, d) in datas.iter().enumerate() {
        let size = d.to_string().len() + topic.len() + 32;
        if i > start && (i - start == 1_000 || bytes + size > BATCH_BYTES) {
            chunks.push(&datas[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < datas.len() {
        chunks.push(&datas[start..]);
    }
    for chunk in chunks {
        let messages: Vec<Value> = chunk
            .iter()
            .map(|d| json!({"topic": topic, "data": d}))
            .collect();
        let (status, body) = publish(http_url, None, &json!({ "messages": messages })).await?;
        anyhow::ensure!(status == 200, "batch publish answered {status}: {body}");
        let got = body["ids"].as_array().context("no ids in a batch answer")?;
        ids.extend(got.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:80/v1/sse/a?x=1").unwrap(),
            ("127.0.0.1:80".into(), "/v1/sse/a?x=1".into(), false)
        );
        assert_eq!(
            split_url("http://h:1").unwrap(),
            ("h:1".into(), "/".into(), false)
        );
        assert_eq!(
            split_url("https://h:1/x").unwrap(),
            ("h:1".into(), "/x".into(), true)
        );
        assert!(split_url("ftp://h").is_err());
    }

    async fn serve_once(raw: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = sock.read(&mut req).await;
            // Dribble the response to exercise partial reads.
            for piece in raw.chunks(3) {
                sock.write_all(piece).await.unwrap();
                sock.flush().await.unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded() {
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        let resp = get(&url).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "hello world");
    }

    #[tokio::test]
    async fn length_bodies_are_read() {
        let url =
            serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\n{\"a\":[1,2]}").await;
        let resp = get(&url).await.unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.json().unwrap(), serde_json::json!({"a": [1, 2]}));
    }
}
