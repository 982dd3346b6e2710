//! `tofuflow-agent`: reads config, starts logging, runs until SIGTERM/SIGINT (drain), a second
//! signal exits at once.

use clap::Parser;

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
    let shutdown = tofuflow_proto::telemetry::stop_on_signals("draining");
    if let Err(e) = tofuflow_agent::run(cfg, shutdown).await {
        tracing::error!(error = %e, "agent failed");
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
