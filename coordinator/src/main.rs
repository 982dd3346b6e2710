//! `tofuflow-coordinator`: reads config, starts logging, runs until SIGINT/SIGTERM.

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
    let shutdown = tofuflow_proto::telemetry::stop_on_signals("stopping");
    if let Err(e) = tofuflow_coordinator::run(cfg, shutdown).await {
        tracing::error!(error = %e, "coordinator failed");
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
