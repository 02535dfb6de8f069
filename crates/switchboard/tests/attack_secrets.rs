//! Secrets against the real gateway: publish and admin keys, a Redis
//! password (redis-server with requirepass) and a NATS password
//! (nats-server --user/--pass) never show in anything the gateway prints,
//! through a broker outage, at debug level, or in the errors of bad
//! configs; `dev` output masks cookies, authorization and key headers and
//! tokens (real PHP lambda); `/metrics` on its own listener and behind the
//! admin key.

use serde_json::json;
use test_support::brokers::{NatsServer, RedisServer};
use test_support::write_config;
use test_support::{
    eventually, get, http_request, php_script, publish, Gateway, PhpServer, SseClient, TempDir,
    WAIT,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

const PUBLISH_KEY: &str = "pk-Zq8NwXpublish";
const ADMIN_KEY: &str = "ak-7yTuadmin";
const BROKER_PASSWORD: &str = "bp-Hs3kbroker";

/// Fails naming the first line of `lines` that holds one of `secrets`.
fn assert_no_secret(lines: &[String], secrets: &[&str]) {
    for line in lines {
        for s in secrets {
            assert!(!line.contains(s), "a secret in the output: {line}");
        }
    }
}

fn all_output(gw: &Gateway) -> Vec<String> {
    let mut lines = gw.stdout_lines();
    lines.extend(gw.stderr_lines());
    lines
}

/// A gateway on `broker` with both keys (the publish key from a file, the
/// admin key from the environment), logging at debug level.
async fn keyed_gateway(dir: &TempDir, broker: &str) -> anyhow::Result<Gateway> {
    let key_file = dir.path().join("publish.key");
    std::fs::write(&key_file, format!("{PUBLISH_KEY}\n"))?;
    let args = [
        "--broker",
        broker,
        "--publish-key-file",
        key_file.to_str().expect("UTF-8 path"),
        "--log",
        "debug",
    ];
    Gateway::start_with_env(BIN, &args, &[("SWITCHBOARD_ADMIN_KEY", ADMIN_KEY)]).await
}

/// Uses every key once (right and wrong), moves a message through the
/// broker, takes the broker away and back, and drains.
async fn exercise(
    gw: &mut Gateway,
    restart: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    gw.wait_ready(WAIT).await?;
    let mut sse = SseClient::connect(&gw.url("/v1/sse/pubsub?topic=news"), &[]).await?;
    let msg = json!({"topic": "news", "data": {"n": 1}});
    assert_eq!(
        publish(&gw.http_url(), Some(PUBLISH_KEY), &msg).await?.0,
        200
    );
    assert_eq!(publish(&gw.http_url(), Some("wrong"), &msg).await?.0, 403);
    assert_eq!(sse.next_event(WAIT).await?.json()?["n"], 1);
    let admin = |key: &'static str| {
        let url = gw.url("/v1/admin/apps");
        async move {
            let auth = format!("Bearer {key}");
            http_request("GET", &url, &[("Authorization", &auth)], None).await
        }
    };
    assert_eq!(admin(ADMIN_KEY).await?.status, 200);
    assert_eq!(admin("wrong").await?.status, 403);
    // The broker goes away and comes back: errors and reconnects are logged.
    restart.await?;
    gw.wait_ready(WAIT).await?;
    assert_eq!(
        publish(&gw.http_url(), Some(PUBLISH_KEY), &msg).await?.0,
        200
    );
    gw.signal("TERM")?;
    gw.wait_exit(WAIT).await?;
    Ok(())
}

#[tokio::test]
async fn keys_and_a_redis_password_never_show_in_the_output() -> anyhow::Result<()> {
    let mut redis = RedisServer::start_with_password(BROKER_PASSWORD).await?;
    let dir = TempDir::new("sb-attack-secrets")?;
    assert!(redis.url().contains(BROKER_PASSWORD));
    let mut gw = keyed_gateway(&dir, &redis.url()).await?;
    exercise(&mut gw, redis.restart()).await?;
    let out = all_output(&gw);
    assert!(
        out.iter().any(|l| l.contains("redis://***@127.0.0.1")),
        "the broker is named, redacted: {out:?}"
    );
    assert_no_secret(&out, &[PUBLISH_KEY, ADMIN_KEY, BROKER_PASSWORD]);
    Ok(())
}

#[tokio::test]
async fn keys_and_a_nats_password_never_show_in_the_output() -> anyhow::Result<()> {
    let mut nats = NatsServer::start_with_user("sbuser", BROKER_PASSWORD).await?;
    let dir = TempDir::new("sb-attack-secrets")?;
    let mut gw = keyed_gateway(&dir, &nats.url()).await?;
    exercise(&mut gw, nats.restart()).await?;
    let out = all_output(&gw);
    assert!(
        out.iter().any(|l| l.contains("nats://***@127.0.0.1")),
        "the broker is named, redacted: {out:?}"
    );
    assert_no_secret(&out, &[PUBLISH_KEY, ADMIN_KEY, BROKER_PASSWORD]);
    Ok(())
}

/// Runs `serve` with `args` and `env`, expecting it to refuse to start.
fn refused(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Vec<String>> {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("serve").args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.envs(env.iter().copied()).output()?;
    anyhow::ensure!(
        out.status.code() == Some(2),
        "serve {args:?} did not refuse: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().map(str::to_owned).collect())
}

#[tokio::test]
async fn bad_configs_stop_serve_without_showing_secrets() -> anyhow::Result<()> {
    let dir = TempDir::new("sb-attack-secrets")?;
    let pw = BROKER_PASSWORD;
    let no_host = format!("redis://:{pw}@");
    let other = format!("kafka://user:{pw}@127.0.0.1:9092");
    let nats_no_host = format!("nats://user:{pw}@/");
    let secrets = [PUBLISH_KEY, ADMIN_KEY, BROKER_PASSWORD];
    for broker in [&no_host, &other, &nats_no_host] {
        let out = refused(&["--broker", broker], &[])?;
        assert!(out.iter().any(|l| l.contains("***")), "{out:?}");
        assert_no_secret(&out, &secrets);
        let out = refused(&[], &[("SWITCHBOARD_BROKER", broker)])?;
        assert_no_secret(&out, &secrets);
    }
    // A file whose bad line holds a key: the error names the line, not its text.
    for file in [
        format!("publish_key = [\"{PUBLISH_KEY}\"]\n"),
        format!("admin_key = \"{ADMIN_KEY}\" trailing\n"),
        format!("broker = \"redis://:{pw}@127.0.0.1:1\"\nunknown_key = 1\n"),
        format!("admin_key = \"{ADMIN_KEY}\"\nmetrics_auth = \"sometimes\"\n"),
    ] {
        let path = write_config(&dir, &file)?;
        let out = refused(&["--config", path.to_str().expect("UTF-8 path")], &[])?;
        assert!(out.iter().any(|l| l.contains("line")), "{out:?}");
        assert_no_secret(&out, &secrets);
    }
    // A lambda or sink URL with a token in it, refused for its shape: the
    // error names the URL with the token masked.
    for file in [
        format!("[apps.chat]\nlambda = \"ftp://bot:{pw}@127.0.0.1/x\"\n"),
        format!("[apps.chat]\nlambda = \"http://bot:{pw}@127.0.0.1 /x\"\n"),
        format!("[sinks.log]\nkind = \"http\"\nurl = \"ftp://bot:{pw}@127.0.0.1/x\"\n"),
    ] {
        let path = write_config(&dir, &file)?;
        let out = refused(&["--config", path.to_str().expect("UTF-8 path")], &[])?;
        assert!(out.iter().any(|l| l.contains("***")), "{out:?}");
        assert_no_secret(&out, &secrets);
    }
    // A key given twice, a key file that is not there, a public listener
    // without a publish key, metrics behind an admin key that is not set.
    let missing = dir.path().join("missing.key");
    let missing = missing.to_str().expect("UTF-8 path");
    for args in [
        &["--publish-key", PUBLISH_KEY, "--publish-key-file", missing][..],
        &["--admin-key-file", missing, "--publish-key", PUBLISH_KEY][..],
        &["--listen", "0.0.0.0:0", "--admin-key", ADMIN_KEY][..],
        &["--metrics-auth", "admin_key", "--publish-key", PUBLISH_KEY][..],
        &[
            "--metrics-listen",
            "localhost:9090",
            "--admin-key",
            ADMIN_KEY,
        ][..],
    ] {
        let out = refused(args, &[])?;
        assert_no_secret(&out, &secrets);
    }
    // --help shows which variables are read, not what they hold.
    let help = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .env("SWITCHBOARD_PUBLISH_KEY", PUBLISH_KEY)
        .env("SWITCHBOARD_ADMIN_KEY", ADMIN_KEY)
        .env("SWITCHBOARD_BROKER", format!("redis://:{pw}@127.0.0.1:1"))
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("SWITCHBOARD_PUBLISH_KEY"), "{help}");
    assert_no_secret(&[help], &secrets);
    Ok(())
}

#[tokio::test]
async fn dev_output_masks_credentials() -> anyhow::Result<()> {
    let php = PhpServer::start(&php_script("live_comments.php")).await?;
    let dir = TempDir::new("sb-attack-secrets")?;
    let config = format!(
        "[apps.live_comments]\nlambda = \"{}\"\n\
         forward_headers = [\"authorization\", \"cookie\", \"x-api-key\", \"proxy-authorization\", \"user-agent\"]\n",
        php.url()
    );
    let path = write_config(&dir, &config)?;
    let args = ["--config", path.to_str().expect("UTF-8 path"), "--dev"];
    let gw = Gateway::start(BIN, &args).await?;
    let url = gw.url("/v1/sse/live_comments?video=1234&token=tk-9PxQtoken");
    let sse = SseClient::connect(
        &url,
        &[
            ("Cookie", "session=ck-4RmVcookie"),
            ("Authorization", "Bearer az-2WnLauth"),
            ("X-Api-Key", "xk-8JdEkey"),
            ("Proxy-Authorization", "Basic pa-5TgHproxy"),
            ("User-Agent", "attack-secrets"),
        ],
    )
    .await?;
    assert_eq!(sse.status(), 200, "the lambda accepted the open");
    let open = eventually(WAIT, "the open event in dev output", || {
        gw.stdout_lines()
            .into_iter()
            .find(|l| l.contains("[live_comments] open stream="))
    })
    .await?;
    for shown in [
        r#""cookie":"***""#,
        r#""authorization":"***""#,
        r#""x-api-key":"***""#,
        r#""proxy-authorization":"***""#,
        r#""token":"***""#,
        r#""user-agent":"attack-secrets""#,
        r#""video":"1234""#,
    ] {
        assert!(open.contains(shown), "{shown} in {open}");
    }
    drop(sse);
    let secrets = [
        "tk-9PxQtoken",
        "ck-4RmVcookie",
        "az-2WnLauth",
        "xk-8JdEkey",
        "pa-5TgHproxy",
    ];
    // The close event is printed too, later.
    eventually(WAIT, "the close event in dev output", || {
        gw.stdout_lines()
            .iter()
            .any(|l| l.contains("[live_comments] close stream="))
            .then_some(())
    })
    .await?;
    assert_no_secret(&all_output(&gw), &secrets);
    Ok(())
}

/// The metrics listener's address, from the line `serve` prints.
async fn metrics_url(gw: &Gateway) -> anyhow::Result<String> {
    eventually(WAIT, "the metrics line on stdout", || {
        gw.stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("switchboard metrics on ").map(str::to_owned))
    })
    .await
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() -> anyhow::Result<()> {
    let gw =
        Gateway::start_with_env(BIN, &[], &[("SWITCHBOARD_METRICS_LISTEN", "127.0.0.1:0")]).await?;
    let url = metrics_url(&gw).await?;
    assert!(
        url.ends_with("/metrics") && !url.contains(&gw.addr().to_string()),
        "{url}"
    );
    let resp = get(&url).await?;
    assert_eq!(resp.status, 200);
    assert!(
        resp.text().contains("switchboard_connections "),
        "{}",
        resp.text()
    );
    assert_eq!(
        get(&gw.url("/metrics")).await?.status,
        404,
        "not on the main listener"
    );
    assert_eq!(get(&gw.url("/healthz")).await?.status, 200);
    let base = url.trim_end_matches("/metrics");
    assert_eq!(get(&format!("{base}/healthz")).await?.status, 404);
    let (status, _) = publish(base, None, &json!({"topic":"t","data":1})).await?;
    assert_eq!(status, 404, "the metrics listener publishes nothing");
    let post = http_request("POST", &url, &[], Some(b"{}")).await?;
    assert_eq!(post.status, 405);
    Ok(())
}

#[tokio::test]
async fn metrics_can_need_the_admin_key() -> anyhow::Result<()> {
    let check = |url: String| async move {
        let with = |key: &'static str| {
            let url = url.clone();
            async move {
                let auth = format!("Bearer {key}");
                http_request("GET", &url, &[("Authorization", &auth)], None).await
            }
        };
        assert_eq!(get(&url).await?.status, 401, "no key");
        assert_eq!(with("wrong").await?.status, 403);
        let ok = with(ADMIN_KEY).await?;
        assert_eq!(ok.status, 200);
        assert!(ok.text().contains("switchboard_published "));
        anyhow::Ok(())
    };
    // On the main listener, set by the flag.
    let gw = Gateway::start(
        BIN,
        &["--admin-key", ADMIN_KEY, "--metrics-auth", "admin_key"],
    )
    .await?;
    check(gw.url("/metrics")).await?;
    // On its own listener, set in the file.
    let dir = TempDir::new("sb-attack-secrets")?;
    let file = format!(
        "admin_key = \"{ADMIN_KEY}\"\nmetrics_listen = \"127.0.0.1:0\"\nmetrics_auth = \"admin_key\"\n"
    );
    let path = write_config(&dir, &file)?;
    let gw = Gateway::start(BIN, &["--config", path.to_str().expect("UTF-8 path")]).await?;
    check(metrics_url(&gw).await?).await?;
    // The default stays open on the main listener.
    let gw = Gateway::start(BIN, &[]).await?;
    assert_eq!(get(&gw.url("/metrics")).await?.status, 200);
    Ok(())
}
