//! `switchboard lambda check URL`: sends a scripted series of events to a
//! lambda and validates every answer against the protocol, with diagnostics
//! that say which event, which action and what is wrong.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use switchboard_protocol::lambda::{self, Action, Event, StreamRef};
use switchboard_protocol::CloseReason;
use tokio::time::Duration;

use crate::dispatcher::LambdaClient;

/// Runs the script; returns the number of problems found (0: all valid).
/// An `https://` lambda is verified against `ca_file`, else the system's roots.
pub async fn run(
    url: &str,
    app: &str,
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<usize> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("lambda URL {url:?}: {e}"))?;
    let ca = ca_file
        .map(|path| crate::tls::CaFile::load(path, "--lambda-ca-file"))
        .transpose()?;
    let client = LambdaClient::new(ca);
    let params: Map<String, Value> = [
        ("video".to_owned(), json!("1234")),
        ("topic".to_owned(), json!("check")),
    ]
    .into_iter()
    .collect();
    let headers: Map<String, Value> =
        [("user-agent".to_owned(), json!("switchboard-lambda-check"))]
            .into_iter()
            .collect();
    let state = RawValue::from_string(r#"{"check":true}"#.into())?;
    let data = RawValue::from_string(r#"{"text":"hello from lambda check"}"#.into())?;
    let s = |st| StreamRef {
        id: "check-1",
        state: st,
    };
    let script: Vec<(&str, Vec<u8>)> = vec![
        (
            "open",
            Event::Open {
                stream: s(None),
                transport: "ws",
                params: &params,
                headers: &headers,
                remote_addr: "127.0.0.1",
            }
            .to_vec(),
        ),
        (
            "message",
            Event::Message {
                stream: s(Some(&state)),
                topic: "check/1",
                id: "1",
                data: &data,
            }
            .to_vec(),
        ),
        (
            "client_message",
            Event::ClientMessage {
                stream: s(Some(&state)),
                data: &data,
            }
            .to_vec(),
        ),
        (
            "close",
            Event::Close {
                stream: s(Some(&state)),
                reason: CloseReason::Client,
            }
            .to_vec(),
        ),
    ];
    let mut problems = 0;
    for (name, event) in &script {
        problems += check_one(&client, &uri, app, timeout, name, &[event.as_slice()]).await;
    }
    // One request carrying every event, as the gateway batches them.
    let all: Vec<&[u8]> = script.iter().map(|(_, e)| e.as_slice()).collect();
    problems += check_one(&client, &uri, app, timeout, "batch of 4 events", &all).await;
    if problems == 0 {
        println!("ok: every answer is valid");
    } else {
        println!("{problems} problem(s) found");
    }
    Ok(problems)
}

async fn check_one(
    client: &LambdaClient,
    uri: &hyper::Uri,
    app: &str,
    timeout: Duration,
    name: &str,
    events: &[&[u8]],
) -> usize {
    let body = Bytes::from(lambda::request_body(app, events));
    let answer = match client.post(uri, body, timeout).await {
        Ok(a) => a,
        Err(e) => {
            println!("FAIL {name}: {e}");
            return 1;
        }
    };
    let results = match lambda::parse_response(&answer, events.len()) {
        Ok(r) => r,
        Err(e) => {
            println!(
                "FAIL {name}: {e}; got: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            );
            return 1;
        }
    };
    let mut problems = 0;
    for (i, result) in results.iter().enumerate() {
        for (j, a) in result.iter().enumerate() {
            match a {
                Err(e) => {
                    println!("FAIL {name}: results[{i}].actions[{j}]: {e}");
                    problems += 1;
                }
                Ok(Action::Accept {} | Action::Reject { .. })
                    if !name.starts_with("open") && events.len() == 1 =>
                {
                    println!("WARN {name}: results[{i}].actions[{j}]: accept/reject only apply to open events");
                }
                Ok(_) => {}
            }
        }
    }
    if problems == 0 {
        println!("ok   {name}: {} result(s)", results.len());
    }
    problems
}
