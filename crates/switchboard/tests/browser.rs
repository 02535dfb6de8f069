//! The browser client (`sdk/js/switchboard.js`): its protocol logic under
//! node's test runner with a fake socket (`sdk/js/test/client.test.mjs`), and
//! end to end in headless Chromium: `sdk/js/test/e2e.mjs` (playwright-core driving Debian's
//! /usr/bin/chromium), which starts the real gateway (this build), the PHP
//! live-comments example under `php -S`, and redis-server when the gateway
//! has a Redis broker. `scripts/test-sdk.sh` installs chromium, php-cli and
//! the node modules.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use test_support::repo_path;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// The script bounds itself at 240 s and cleans up; this is the backstop.
const LIMIT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn live_comments_in_headless_chromium() -> anyhow::Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules = repo_path("sdk/js/test/node_modules/playwright-core");
    anyhow::ensure!(
        Path::new(&chromium).exists() && modules.exists(),
        "the browser test needs {chromium} and {}: run scripts/test-sdk.sh",
        modules.display()
    );
    let out = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new("node")
            .arg(repo_path("sdk/js/test/e2e.mjs"))
            .env("SWITCHBOARD_BIN", BIN)
            .env("CHROMIUM", &chromium)
            // The gateway has a Redis broker (default features): the phase
            // where history outlives the node must run, never be skipped.
            .env("E2E_REQUIRE_REDIS", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("the browser test still running after {LIMIT:?}"))?
    .context("running node (scripts/test-sdk.sh installs what the SDK tests need)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "browser end-to-end test failed:\n{stdout}"
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn js_client_unit_tests() -> anyhow::Result<()> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg("--test")
            .arg(repo_path("sdk/js/test/client.test.mjs"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("node --test still running after 120 s")?
    .context("running node (scripts/test-sdk.sh installs what the SDK tests need)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "JS client unit tests failed:\n{stdout}"
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    Ok(())
}
