//! `switchboard publish`: one message through a running gateway's publish
//! API, over `http://` or `https://`.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::cli::PublishArgs;
use crate::dispatcher::https::Connector;
use crate::tls::CaFile;

/// Publishes and prints the answer; an error status is an error.
pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let data: Value =
        serde_json::from_str(&args.json).context("JSON argument is not valid JSON")?;
    let mut body = json!({"topic": args.topic, "data": data});
    if let Some(k) = args.dedup_key {
        body["dedup_key"] = json!(k);
    }
    let url = format!("{}/v1/publish", args.url.trim_end_matches('/'));
    let mut req = hyper::Request::post(&url).header("content-type", "application/json");
    if let Some(key) = &args.key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .context("building the request")?;
    let ca = args
        .ca_file
        .as_deref()
        .map(|path| CaFile::load(path, "--ca-file"))
        .transpose()?;
    let client = Client::builder(TokioExecutor::new()).build(Connector::new(ca));
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    println!("{text}");
    Ok(())
}
