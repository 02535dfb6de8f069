//! The `switchboard` binary: parse and validate config, bind, run, drain.

use anyhow::Context;
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
                    lambda_ca_file,
                },
        } => {
            match switchboard::ops::lambda_check::run(
                &url,
                &app,
                std::time::Duration::from_millis(timeout_ms),
                lambda_ca_file.as_deref(),
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
    // Registered before the ready line: a signal sent as soon as a script
    // sees that line must drain, not kill the process by default action.
    let shutdown = shutdown_signal()?;
    let running = switchboard::start(config).await?;
    // Scripts and tests read this line to learn the bound port.
    let scheme = if running.gateway.config.edge.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("switchboard listening on {scheme}://{}", running.addr);
    if let Some(at) = running.metrics_addr {
        println!("switchboard metrics on http://{at}/metrics");
    }
    tracing::info!(
        addr = %running.addr,
        apps = running.gateway.apps.len(),
        broker = ?running.gateway.config.broker,
        "serving"
    );
    shutdown.await;
    tracing::info!("draining");
    if !running.drain().await {
        tracing::warn!("drain timeout reached; exiting anyway");
    }
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the future ends at the
/// first of either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
