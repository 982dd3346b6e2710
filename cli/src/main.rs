//! `tofuflow`: the user command line. Talks only gRPC to the coordinator.
//!
//! Exit codes: 0 success (or a run that ended well / waits for approval), 1 usage or connection
//! error, 2 a run that ended unsuccessfully (failed, cancelled, rejected, interrupted, expired),
//! 3 an audit log that does not verify (`tofuflow audit verify`).
//!
//! This file parses the global flags, connects and dispatches; each command group lives in
//! `commands/` with its subcommands and one handler per command.

mod bundle;
mod commands;
mod output;

use clap::{Parser, Subcommand, ValueEnum};
use commands::{Client, Ctx};
use std::process::ExitCode;
use tofuflow_proto::v1::user_service_client::UserServiceClient;

#[derive(Parser)]
#[command(
    name = "tofuflow",
    version,
    about = "Run OpenTofu across a fleet: submit, approve, watch and inspect runs"
)]
struct Cli {
    /// gRPC URL of the coordinator.
    #[arg(
        long,
        global = true,
        env = "TOFUFLOW_COORDINATOR",
        default_value = "http://127.0.0.1:7700"
    )]
    coordinator: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    /// Your user token (when the coordinator has a --users-file; it then decides who you are).
    #[arg(long, global = true, env = "TOFUFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Who you are, recorded on every action (default: $USER; ignored when tokens are in use).
    #[arg(long, global = true, env = "TOFUFLOW_USER")]
    user: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Submit, inspect and act on runs.
    #[command(subcommand)]
    Run(commands::run::RunCmd),
    /// Inspect agents.
    #[command(subcommand)]
    Agent(commands::agent::AgentCmd),
    /// Inspect, pull, roll back and lock the state the coordinator keeps per workspace.
    #[command(subcommand)]
    State(commands::state::StateCmd),
    /// See and empty the dead-letter queue: task messages no agent could use (admin).
    #[command(subcommand)]
    DeadLetter(commands::dead_letter::DeadLetterCmd),
    /// List, export and verify the audit log: who did what, hash-chained (admin).
    #[command(subcommand)]
    Audit(commands::audit::AuditCmd),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Connects to the coordinator, then hands the command to its group; returns the exit code.
async fn run(cli: Cli) -> Result<u8, String> {
    // Verifying an exported file needs no coordinator.
    if let Cmd::Audit(commands::audit::AuditCmd::Verify { file: Some(f) }) = &cli.cmd {
        return commands::audit::verify_file(f, cli.output == Format::Json);
    }
    let mut ctx = Ctx {
        client: client(&cli.coordinator, cli.token.as_deref()).await?,
        json: cli.output == Format::Json,
        who: actor(&cli.user),
        url: cli.coordinator,
    };
    match cli.cmd {
        Cmd::Run(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Agent(cmd) => cmd.execute(&mut ctx).await,
        Cmd::State(cmd) => cmd.execute(&mut ctx).await,
        Cmd::DeadLetter(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Audit(cmd) => cmd.execute(&mut ctx).await,
    }
}

/// Opens the gRPC channel (with the user's token, if any).
async fn client(url: &str, token: Option<&str>) -> Result<Client, String> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad coordinator URL {url:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot reach the coordinator at {url}: is it running? (start it with `tofuflow-coordinator`, or point --coordinator / TOFUFLOW_COORDINATOR at it): {e}"))?;
    Ok(
        UserServiceClient::with_interceptor(ch, tofuflow_proto::auth::Bearer::new(token)?)
            .max_decoding_message_size(tofuflow_proto::MAX_MESSAGE_BYTES),
    )
}

/// Who acts: `--user`/`TOFUFLOW_USER`, else `$USER`, else `$LOGNAME`, else "unknown".
fn actor(cli_user: &Option<String>) -> String {
    cli_user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
