//! The publish API (`POST /v1/publish`): ids, bodies it refuses, its key
//! and dedup.

use super::*;

#[tokio::test]
async fn publish_answers_ids_for_single_and_batch() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.http_url();

    let (status, body) = publish(&url, None, &json!({"topic": "t", "data": {"a": 1}})).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    let (status, body) = publish(&url, None, &json!({"topic": "t", "data": "two"})).await?;
    assert_eq!((status, &body), (200, &json!({"id": "2"})));

    let batch = json!({"messages": [
        {"topic": "t", "data": 3},
        {"topic": "u", "data": "x"},
        {"topic": "t", "data": [4]},
    ]});
    let (status, body) = publish(&url, None, &batch).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ids": ["3", "1", "4"]}));
    Ok(())
}

#[tokio::test]
async fn null_is_valid_data() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "t").await?;

    let (status, body) = publish(
        &gateway.http_url(),
        None,
        &json!({"topic": "t", "data": null}),
    )
    .await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert!(frame["data"].is_null(), "{frame}");
    assert!(
        frame.get("data").is_some(),
        "data is present, as null: {frame}"
    );
    Ok(())
}

#[tokio::test]
async fn publish_rejects_bad_bodies_with_400() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.http_url();

    for raw in [&b"not json"[..], b"", b"[1,2]", b"{\"data\":1}"] {
        let (status, body) = publish_raw(&url, None, raw).await?;
        assert_eq!(status, 400, "{:?} -> {body}", String::from_utf8_lossy(raw));
        assert_error_body(&body);
    }
    for topic in [
        json!("has space"),
        json!(""),
        json!("x".repeat(257)),
        json!(7),
    ] {
        let (status, body) = publish(&url, None, &json!({"topic": topic, "data": 1})).await?;
        assert_eq!(status, 400, "{topic} -> {body}");
        assert_error_body(&body);
    }

    let (status, body) = publish(&url, None, &json!({"messages": []})).await?;
    assert_eq!(status, 400, "empty batch -> {body}");
    assert_error_body(&body);

    // One bad message rejects the whole batch: nothing of it is published.
    let batch = json!({"messages": [
        {"topic": "fine", "data": 1},
        {"topic": "not fine", "data": 2},
    ]});
    let (status, body) = publish(&url, None, &batch).await?;
    assert_eq!(status, 400, "{body}");
    assert_error_body(&body);
    let (status, body) = publish(&url, None, &json!({"topic": "fine", "data": 1})).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    Ok(())
}

/// docs/fuzzing.md, finding 1: data that strict JSON readers cannot read
/// (here a number outside f64's range) is refused, whole batch included.
#[tokio::test]
async fn publish_refuses_numbers_outside_f64_with_400() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.http_url();
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "fine").await?;

    for raw in [
        &br#"{"topic":"fine","data":{"n":1e999}}"#[..],
        br#"{"messages":[{"topic":"fine","data":1},{"topic":"fine","data":[-1e999]}]}"#,
    ] {
        let (status, body) = publish_raw(&url, None, raw).await?;
        assert_eq!(status, 400, "{:?} -> {body}", String::from_utf8_lossy(raw));
        assert_eq!(body["error"]["code"], "bad_data", "{body}");
        assert_error_body(&body);
    }
    // Nothing was published; in-range numbers go through byte for byte.
    let (status, body) =
        publish_raw(&url, None, br#"{"topic":"fine","data":[1e308,1e-999]}"#).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(frame["data"], json!([1e308, 0.0]), "{frame}");
    Ok(())
}

#[tokio::test]
async fn publish_rejects_too_large_with_413() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.http_url();

    let big = json!({"topic": "t", "data": "x".repeat(64 * 1024)});
    let (status, body) = publish(&url, None, &big).await?;
    assert_eq!(status, 413, "{body}");
    assert_error_body(&body);

    let messages: Vec<Value> = (0..1001)
        .map(|n| json!({"topic": "t", "data": n}))
        .collect();
    let (status, body) = publish(&url, None, &json!({ "messages": messages })).await?;
    assert_eq!(status, 413, "a batch of 1001 -> {body}");
    assert_error_body(&body);

    // Just under the limit is fine, and the rejected ones took no ids.
    let fits = json!({"topic": "t", "data": "x".repeat(60 * 1024)});
    let (status, body) = publish(&url, None, &fits).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    Ok(())
}

#[tokio::test]
async fn publish_needs_the_key_when_one_is_configured() -> anyhow::Result<()> {
    let gateway = Gateway::start(BIN, &["--publish-key", "s3cret"]).await?;
    let url = gateway.http_url();
    let msg = json!({"topic": "t", "data": 1});

    let (status, body) = publish(&url, None, &msg).await?;
    assert_eq!(status, 401, "{body}");
    assert_error_body(&body);
    let (status, body) = publish(&url, Some("wrong"), &msg).await?;
    assert_eq!(status, 403, "{body}");
    assert_error_body(&body);
    let (status, body) = publish(&url, Some("s3cret"), &msg).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    Ok(())
}

#[tokio::test]
async fn a_repeated_dedup_key_is_not_published_again() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.http_url();
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "t").await?;

    let first = json!({"topic": "t", "data": "first", "dedup_key": "k1"});
    let (status, body) = publish(&url, None, &first).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    let repeat = json!({"topic": "t", "data": "repeat", "dedup_key": "k1"});
    let (status, body) = publish(&url, None, &repeat).await?;
    assert_eq!((status, &body), (200, &json!({"id": "1"})));
    let other = json!({"topic": "t", "data": "other", "dedup_key": "k2"});
    let (status, body) = publish(&url, None, &other).await?;
    assert_eq!((status, &body), (200, &json!({"id": "2"})));

    // The subscriber sees the first and the other, never the repeat.
    for data in ["first", "other"] {
        let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
        assert_eq!(frame["data"], data, "{frame}");
    }
    Ok(())
}
