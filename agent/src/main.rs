//! `tofuflow-agent`: reads config, starts logging, runs until SIGTERM/SIGINT (drain), a second
//! signal exits at once.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let cfg = tofuflow_agent::Config::parse();
    let _telemetry = match tofuflow_proto::telemetry::init("tofuflow-agent", &cfg.log_format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
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
