//! `tofuflow-coordinator`: reads config, starts logging, runs until SIGINT/SIGTERM.

use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let cfg = match tofuflow_coordinator::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = match tofuflow_proto::telemetry::init("tofuflow-coordinator", &cfg.log_format)
    {
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
        tracing::info!("signal received: stopping (send again to exit at once)");
        sd.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    if let Err(e) = tofuflow_coordinator::run(cfg, shutdown).await {
        tracing::error!(error = %e, "coordinator failed");
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
