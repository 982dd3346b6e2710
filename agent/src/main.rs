//! `tofuflow-agent`: reads config, starts logging, runs until SIGTERM/SIGINT (drain), a second
//! signal exits at once.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let cfg = tofuflow_agent::Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOFUFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        b.json().init();
    } else {
        b.with_ansi(false).init();
    }
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: draining (send again to exit at once)");
        sd.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    if let Err(e) = tofuflow_agent::run(cfg, shutdown).await {
        tracing::error!(error = %e, "agent failed");
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
