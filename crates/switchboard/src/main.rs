//! The `switchboard` binary: parse and validate config, bind, run, drain.

use clap::Parser;
use switchboard::cli::{Cli, Command, LambdaCommand};
use switchboard::ops::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Dev(mut args) => {
            args.dev = true;
            serve(args).await
        }

        Command::Publish(args) => switchboard::ops::publish_cmd::run(args).await,
        Command::Lambda {
            command:
                LambdaCommand::Check {
                    url,
                    app,
                    timeout_ms,
                },
        } => {
            match switchboard::ops::lambda_check::run(
                &url,
                &app,
                std::time::Duration::from_millis(timeout_ms),
            )
            .await
            {
                Ok(0) => Ok(()),
                Ok(_) => return std::process::ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve(args: switchboard::cli::ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log)?)
        .with_writer(std::io::stderr)
        .init();
    let running = switchboard::start(config).await?;
    // Scripts and tests read this line to learn the bound port.
    println!("switchboard listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, apps = running.gateway.apps.len(), "serving");
    shutdown_signal().await;
    tracing::info!("draining");
    if !running.drain().await {
        tracing::warn!("drain timeout reached; exiting anyway");
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
