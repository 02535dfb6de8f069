use super::*;

fn args() -> ServeArgs {
    ServeArgs::default()
}

#[test]
fn broker_urls_parse() {
    assert!(matches!(BrokerUrl::parse("memory"), Ok(BrokerUrl::Memory)));
    let bad = ["", "memory2", "nats://", "kafka://h:1", "redis://u:p@/0"];
    for bad in bad {
        assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
    }
    let nats = BrokerUrl::parse("nats://127.0.0.1:4222");
    let redis = BrokerUrl::parse("redis://u:p@10.0.0.1:6379/2");
    assert_eq!(nats.is_ok(), cfg!(feature = "nats"));
    assert_eq!(redis.is_ok(), cfg!(feature = "redis"));
}

#[test]
fn bare_start_runs_pubsub_on_loopback() {
    let c = Config::from_parts(RawConfig::default(), &args()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.apps.len(), 1);
    assert_eq!(c.apps[0].name.as_str(), "pubsub");
    assert!(c.apps[0].lambda.is_none());
}

#[test]
fn flags_win_over_file() {
    let raw: RawConfig = toml::from_str(
        "listen = \"127.0.0.1:9000\"\n[apps.a]\nlambda = \"http://127.0.0.1:1/x\"\nmax_batch = 7\non_failure = \"close\"\n",
    )
    .unwrap();
    let mut a = args();
    a.listen = Some("127.0.0.1:9001".into());
    let c = Config::from_parts(raw, &a).unwrap();
    assert_eq!(c.listen.port(), 9001);
    let l = c.apps[0].lambda.as_ref().unwrap();
    assert_eq!(l.max_batch, 7);
    assert_eq!(l.on_failure, OnFailure::Close);
}

#[test]
fn an_app_flag_replaces_only_the_lambda_url_of_the_files_app() {
    let raw: RawConfig = toml::from_str(
        "[apps.a]\nlambda = \"http://127.0.0.1:1/x\"\nmax_batch = 7\n\
         [apps.b]\nlambda = \"http://127.0.0.1:1/z\"\ntopics = [\"b/*\"]\n",
    )
    .unwrap();
    let mut a = args();
    a.apps = vec!["a=http://127.0.0.1:2/y".into(), "b=direct".into()];
    let c = Config::from_parts(raw, &a).unwrap();
    let app_a = c.apps.iter().find(|x| x.name.as_str() == "a").unwrap();
    let l = app_a.lambda.as_ref().unwrap();
    assert_eq!(l.max_batch, 7);
    assert!(l.url.to_string().contains(":2/y"), "{:?}", l.url);
    let app_b = c.apps.iter().find(|x| x.name.as_str() == "b").unwrap();
    assert!(app_b.lambda.is_none());
    assert!(app_b.topics.is_some(), "the file's topics stay");
}

#[test]
fn a_direct_app_beside_a_lambda_app_needs_topics() {
    let lambda = "[apps.l]\nlambda = \"http://127.0.0.1:1/x\"\n";
    let open = format!("{lambda}[apps.d]\nlambda = \"direct\"\n");
    let err = Config::from_parts(toml::from_str(&open).unwrap(), &args()).unwrap_err();
    assert!(format!("{err:#}").contains("needs `topics`"), "{err:#}");
    let bound = format!("{open}topics = [\"news\", \"scores/*\"]\n");
    let c = Config::from_parts(toml::from_str(&bound).unwrap(), &args()).unwrap();
    let d = c.apps.iter().find(|a| a.name.as_str() == "d").unwrap();
    assert!(d.topics.as_ref().is_some_and(|t| t.allows("scores/1")));
    let bad = format!("{open}topics = [\"sc*res\"]\n");
    assert!(Config::from_parts(toml::from_str(&bad).unwrap(), &args()).is_err());
    // Direct apps alone may stay open; so does the bare install.
    let alone = "[apps.d]\nlambda = \"direct\"\n[apps.e]\nlambda = \"direct\"\n";
    assert!(Config::from_parts(toml::from_str(alone).unwrap(), &args()).is_ok());
    let l = Config::from_parts(RawConfig::default(), &args())
        .unwrap()
        .limits;
    assert_eq!(
        (
            l.max_topics_per_stream,
            l.max_queued_send_bytes,
            l.max_opens_per_second
        ),
        (128, 1 << 20, 50)
    );
    assert_eq!(l.max_lambda_jobs_per_connection, 256);
    assert_eq!(l.max_publish_hops, 8);
    let hops = "[limits]\nmax_publish_hops = 0\n";
    assert!(Config::from_parts(toml::from_str(hops).unwrap(), &args()).is_err());
}

#[test]
fn file_errors_name_the_place_but_not_the_line() {
    let dir = std::env::temp_dir().join(format!("sb-config-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    for (text, at) in [
        (
            "listen = \"127.0.0.1:0\"\npublish_key = [\"s3cret\"]\n",
            "line 2, column 15",
        ),
        ("admin_key = \"s3cret\" extra\n", "line 1, column 22"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", read_file(&path).unwrap_err());
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains(at), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refusals() {
    assert!(toml::from_str::<RawConfig>("nope = 1").is_err());
    let mut a = args();
    a.listen = Some("0.0.0.0:8080".into());
    assert!(Config::from_parts(RawConfig::default(), &a).is_err());
    a.allow_anonymous_publish = true;
    assert!(Config::from_parts(RawConfig::default(), &a).is_ok());
    let mut a = args();
    a.apps = vec!["Bad=direct".into()];
    assert!(Config::from_parts(RawConfig::default(), &a).is_err());
    a.apps = vec!["ok=ftp://x".into()];
    assert!(Config::from_parts(RawConfig::default(), &a).is_err());
    a.apps = vec!["ok".into()];
    assert!(Config::from_parts(RawConfig::default(), &a).is_err());
}

#[test]
fn the_test_only_echo_endpoint_needs_a_loopback_listener() {
    let mut a = args();
    a.ws_echo = true;
    assert!(
        Config::from_parts(RawConfig::default(), &a)
            .unwrap()
            .ws_echo
    );
    a.listen = Some("0.0.0.0:8080".into());
    a.allow_anonymous_publish = true;
    let err = Config::from_parts(RawConfig::default(), &a).unwrap_err();
    assert!(format!("{err:#}").contains("--ws-echo"), "{err:#}");
    assert!(
        !Config::from_parts(RawConfig::default(), &args())
            .unwrap()
            .ws_echo
    );
}
