//! `tofuflow-agent`: reads config, starts logging, runs until SIGTERM/SIGINT (drain), a second
//! signal exits at once. `tofuflow-agent check` prints the host's isolation features;
//! `tofuflow-agent __sandbox` is the sandbox helper the agent starts for each tofu command (its
//! spec arrives on standard input, never on the command line).

use clap::Parser;

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__sandbox") {
        tofuflow_agent::sandbox::helper::main();
    }
    let check = args.get(1).map(String::as_str) == Some("check");
    if check {
        args.remove(1);
    }
    let cfg = tofuflow_agent::Config::parse_from(args);
    if check {
        std::process::exit(tofuflow_agent::check(&cfg));
    }
    // Detect the sandbox before any thread exists.
    let sandbox = match tofuflow_agent::prepare(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let _telemetry = match tofuflow_proto::telemetry::init_with_writer(
            "tofuflow-agent",
            &cfg.log_format,
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(|| {
                tofuflow_agent::mask::MaskingWriter
            }),
        ) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        };
        let shutdown = tofuflow_proto::telemetry::stop_on_signals("draining");
        if let Err(e) = tofuflow_agent::run(cfg, sandbox, shutdown).await {
            tracing::error!(error = %e, "agent failed");
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    });
}
