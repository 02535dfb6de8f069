//! The embedded broker's unit tests: ids, dedup, per-topic bounds, the
//! node total and its index.

use super::*;
use serde_json::value::RawValue;

fn policy(limits: HistoryLimits) -> HistoryPolicy {
    HistoryPolicy::new(limits, Vec::new(), usize::MAX, 1 << 30)
}

fn publication(topic: &str, data: &str, key: Option<&str>) -> Publication {
    Publication {
        topic: Topic::new(topic).unwrap(),
        data: RawValue::from_string(data.into()).unwrap(),
        dedup_key: key.map(Into::into),
        hop: 0,
    }
}

#[tokio::test]
async fn ids_are_per_topic_sequences_and_dedup_answers_first_id() {
    let b = MemoryBroker::new(
        Arc::new(TopicRouter::default()),
        HistoryPolicy::default(),
        Duration::from_secs(120),
    );
    let ids = b
        .publish(vec![
            publication("a", "1", None),
            publication("a", "2", Some("k")),
            publication("b", "3", None),
            publication("a", "4", Some("k")),
        ])
        .await
        .unwrap();
    let ids: Vec<&str> = ids.iter().map(|i| &**i).collect();
    assert_eq!(ids, ["1", "2", "1", "2"]);
    assert_eq!(&*b.position(&Topic::new("a").unwrap()).await.unwrap(), "2");
    assert_eq!(&*b.position(&Topic::new("zz").unwrap()).await.unwrap(), "0");
}

#[tokio::test(start_paused = true)]
async fn sweep_frees_old_history_but_keeps_the_sequence() {
    let limits = HistoryLimits {
        max_messages: 100,
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(60),
    };
    let b = MemoryBroker::new(
        Arc::new(TopicRouter::default()),
        policy(limits),
        Duration::from_secs(10),
    );
    b.publish(vec![
        publication("a", "1", Some("k")),
        publication("a", "2", None),
    ])
    .await
    .unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    b.sweep();
    let t = Topic::new("a").unwrap();
    {
        let log = b.log(&t);
        let l = log.lock();
        assert!(l.history.is_empty() && l.dedup.is_empty());
        assert_eq!(l.history_bytes, 0);
    }
    let ids = b
        .publish(vec![publication("a", "3", Some("k"))])
        .await
        .unwrap();
    assert_eq!(&*ids[0], "3", "ids continue; the dedup key expired");
    assert!(b.history(&t, "1").await.unwrap().truncated, "2 aged out");
}

#[tokio::test]
async fn history_after_a_position() {
    let limits = HistoryLimits {
        max_messages: 3,
        max_bytes: 1000,
        max_age: Duration::from_secs(60),
    };
    let b = broker_with(policy(limits));
    let t = Topic::new("a").unwrap();
    let h = b.history(&t, "0").await.unwrap();
    assert!(
        h.messages.is_empty() && !h.truncated,
        "empty topic, from the start"
    );
    for i in 1..=5 {
        b.publish(vec![publication("a", &i.to_string(), None)])
            .await
            .unwrap();
    }
    // Retained: 3, 4, 5.
    let ids = |h: &History| {
        h.messages
            .iter()
            .map(|m| m.id.to_string())
            .collect::<Vec<_>>()
    };
    let h = b.history(&t, "3").await.unwrap();
    assert_eq!(
        (ids(&h), h.truncated),
        (vec!["4".to_string(), "5".into()], false)
    );
    let h = b.history(&t, "2").await.unwrap();
    assert_eq!(
        (ids(&h).len(), h.truncated),
        (3, false),
        "2 is just before the oldest kept"
    );
    let h = b.history(&t, "1").await.unwrap();
    assert_eq!((ids(&h).len(), h.truncated), (3, true), "2 was dropped");
    let h = b.history(&t, "5").await.unwrap();
    assert_eq!((ids(&h).len(), h.truncated), (0, false));
    assert!(
        b.history(&t, "9").await.unwrap().truncated,
        "a future position is another store's"
    );
    assert!(b.history(&t, "x").await.unwrap().truncated);
}

#[tokio::test]
async fn history_is_bounded_by_count_and_bytes() {
    let limits = HistoryLimits {
        max_messages: 3,
        max_bytes: 10,
        max_age: Duration::from_secs(60),
    };
    let b = broker_with(policy(limits));
    for _ in 0..5 {
        b.publish(vec![publication("a", "1", None)]).await.unwrap();
    }
    let log = b.log(&Topic::new("a").unwrap());
    assert_eq!(log.lock().history.len(), 3);
    b.publish(vec![publication("a", "\"12345678\"", None)])
        .await
        .unwrap();
    let l = log.lock();
    assert!(l.history_bytes <= 10);
    assert_eq!(l.history.len(), 1);
}

fn broker_with(policy: HistoryPolicy) -> MemoryBroker {
    MemoryBroker::new(
        Arc::new(TopicRouter::default()),
        policy,
        Duration::from_secs(1),
    )
}

/// Every retained message's cost, summed over the topics.
fn retained_cost(b: &MemoryBroker) -> usize {
    b.topics
        .read()
        .values()
        .map(|l| l.lock().history.iter().map(|(_, m)| cost(m)).sum::<usize>())
        .sum()
}

/// The index files each topic with history once, under its oldest message.
fn assert_index_consistent(b: &MemoryBroker) {
    let index = b.node.by_oldest.lock();
    let mut filed = 0;
    for l in b.topics.read().values() {
        let l = l.lock();
        match l.history.front() {
            Some((t, _)) => {
                filed += 1;
                assert_eq!(l.indexed, Some(*t));
                assert!(index.contains_key(&(*t, l.uid)));
            }
            None => assert_eq!(l.indexed, None),
        }
    }
    assert_eq!(index.len(), filed);
}

fn unbounded_topics() -> HistoryLimits {
    HistoryLimits {
        max_messages: usize::MAX,
        max_bytes: usize::MAX,
        max_age: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn the_node_total_drops_the_oldest_topics_history_first() {
    let data = format!("\"{}\"", "x".repeat(1000));
    let one = cost(&Message::new(
        Topic::new("t00").unwrap(),
        Arc::from("1"),
        RawValue::from_string(data.clone()).unwrap(),
        Arc::from("e"),
        None,
    ));
    // Room for 25 messages of the node.
    let b = broker_with(HistoryPolicy::new(
        unbounded_topics(),
        Vec::new(),
        one * 25,
        1 << 30,
    ));
    for topic in 0..10 {
        for _ in 0..5 {
            let t = format!("t{topic:02}");
            b.publish(vec![publication(&t, &data, None)]).await.unwrap();
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(b.history_bytes() <= one * 25);
        }
    }
    assert_eq!(b.history_bytes(), retained_cost(&b));
    assert_eq!(b.history_bytes(), one * 25, "the newest 25 messages");
    assert_index_consistent(&b);
    let from_start = |t: &str| {
        let b = &b;
        let t = Topic::new(t).unwrap();
        async move { b.history(&t, "0").await.unwrap() }
    };
    for old in ["t00", "t04"] {
        let h = from_start(old).await;
        assert!(h.truncated && h.messages.is_empty(), "{old} was dropped");
        assert_eq!(
            &*b.position(&Topic::new(old).unwrap()).await.unwrap(),
            "5",
            "its ids go on"
        );
    }
    for new in ["t05", "t09"] {
        let h = from_start(new).await;
        assert!(!h.truncated && h.messages.len() == 5, "{new} replays whole");
    }
    // A new message on an old topic drops the oldest of the node, not its own.
    b.publish(vec![publication("t00", &data, None)])
        .await
        .unwrap();
    assert_eq!(from_start("t00").await.messages.len(), 1);
    let h = from_start("t05").await;
    assert!(h.truncated && h.messages.len() == 4);
    assert_index_consistent(&b);
}

#[tokio::test(start_paused = true)]
async fn aged_out_history_leaves_the_node_total_and_the_index() {
    let b = broker_with(HistoryPolicy::new(
        HistoryLimits {
            max_age: Duration::from_secs(60),
            ..unbounded_topics()
        },
        Vec::new(),
        usize::MAX,
        1 << 30,
    ));
    for t in ["a", "b", "c"] {
        b.publish(vec![publication(t, "[1,2,3]", Some("k"))])
            .await
            .unwrap();
    }
    assert!(b.history_bytes() > 0);
    tokio::time::advance(Duration::from_secs(61)).await;
    b.sweep();
    assert_eq!(b.history_bytes(), 0);
    assert!(b.node.by_oldest.lock().is_empty());
    assert_index_consistent(&b);
}

#[tokio::test]
async fn prefixes_bound_their_topics_and_the_default_the_rest() {
    let small = HistoryLimits {
        max_messages: 2,
        ..HistoryLimits::default()
    };
    let b = broker_with(HistoryPolicy::new(
        HistoryLimits::default(),
        vec![("scores/".into(), small)],
        usize::MAX,
        1 << 30,
    ));
    for _ in 0..5 {
        b.publish(vec![
            publication("scores/1", "1", None),
            publication("news", "1", None),
        ])
        .await
        .unwrap();
    }
    let len = |t: &str| b.log(&Topic::new(t).unwrap()).lock().history.len();
    assert_eq!((len("scores/1"), len("news")), (2, 5));
    assert_eq!(b.history_bytes(), retained_cost(&b));
}

proptest::proptest! {
    /// With no per-topic bound in the way, what the node keeps is always the
    /// newest messages it was given, within its total, whatever the topics.
    #[test]
    fn the_node_keeps_its_newest_messages_within_the_total(
        sizes in proptest::collection::vec((0usize..6, 1usize..400), 1..120),
        total in 2_000usize..20_000,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let b = broker_with(HistoryPolicy::new(unbounded_topics(), Vec::new(), total, 1 << 30));
            let mut sent = Vec::new();
            for (topic, len) in &sizes {
                let t = format!("t{topic}");
                let data = format!("\"{}\"", "y".repeat(*len));
                let id = b.publish(vec![publication(&t, &data, None)]).await.unwrap();
                sent.push((t, id[0].to_string()));
                tokio::time::advance(Duration::from_millis(1)).await;
                assert!(b.history_bytes() <= total);
                assert_eq!(b.history_bytes(), retained_cost(&b));
            }
            assert_index_consistent(&b);
            // Retained = a suffix of the publish order.
            let retained = |(t, id): &(String, String)| {
                let log = b.log(&Topic::new(t).unwrap());
                let l = log.lock();
                l.history.iter().any(|(_, m)| &*m.id == id)
            };
            let kept: Vec<bool> = sent.iter().map(retained).collect();
            let first = kept.iter().position(|k| *k).unwrap_or(kept.len());
            assert!(kept[first..].iter().all(|k| *k), "{kept:?}");
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_keep_the_total_and_the_index_exact() {
    let b = Arc::new(broker_with(HistoryPolicy::new(
        unbounded_topics(),
        Vec::new(),
        64 * 1024,
        1 << 30,
    )));
    let data = format!("\"{}\"", "z".repeat(700));
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (b, data) = (b.clone(), data.clone());
            tokio::spawn(async move {
                for i in 0..400 {
                    let t = format!("w{w}/t{}", i % 13);
                    b.publish(vec![publication(&t, &data, None)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(b.history_bytes() <= 64 * 1024);
    assert_eq!(b.history_bytes(), retained_cost(&b));
    assert_index_consistent(&b);
}
