//! `tofuflow`: the user command line. Talks only gRPC to the coordinator.
//!
//! Exit codes: 0 success (or a run that ended well / waits for approval), 1 usage or connection
//! error, 2 a run that ended unsuccessfully (failed, cancelled, rejected, interrupted, expired),
//! 3 an audit log that does not verify (`tofuflow audit verify`).
//!
//! This file parses the global flags, connects and dispatches; each command group lives in
//! `commands/` with its subcommands and one handler per command.

mod args;
mod bundle;
mod commands;
mod config;
mod output;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use commands::{Client, Ctx};
use config::{Config, Origin};
use std::process::ExitCode;
use tofuflow_proto::v1::user_service_client::UserServiceClient;

#[derive(Parser)]
#[command(
    name = "tofuflow",
    version,
    about = "Run OpenTofu across a fleet: submit, approve, watch and inspect runs"
)]
struct Cli {
    /// gRPC URL of the coordinator: http://HOST:PORT, or https://HOST:PORT when it serves TLS
    /// [default: the one `tofuflow login` saved, else http://127.0.0.1:7700]. Several
    /// coordinators: comma-separate them or repeat the flag; each command uses the first that
    /// accepts a connection.
    #[arg(
        long,
        global = true,
        env = "TOFUFLOW_COORDINATOR",
        value_delimiter = ','
    )]
    coordinator: Vec<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate, for an https://
    /// --coordinator. Default: the system roots.
    #[arg(long, global = true, env = "TOFUFLOW_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    /// Your API token [default: the one `tofuflow login` saved]; it decides who you are and
    /// what you may do.
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

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Check a token (--token, else read from standard input) and save it with the
    /// coordinator's URL in your config file; prints who you are and your roles.
    Login,
    /// Remove the saved token from your config file.
    Logout,
    /// Show who the coordinator takes you for, your token's expiry and your roles.
    Whoami,
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCmd),
    /// Grant, revoke and list roles on workspace globs (admin).
    #[command(subcommand)]
    Role(commands::role::RoleCmd),
    /// Set, delete and list workspace rules: four-eyes, allowed sources, digests and pools.
    #[command(subcommand)]
    Rule(commands::rule::RuleCmd),
    /// Workflow files: validate offline, run (modules packed and uploaded), list, show,
    /// approve as a whole, cancel, retry.
    #[command(subcommand)]
    Workflow(commands::workflow::WorkflowCmd),
    /// A workflow run's rollouts: status (every target's wave, state and bundle), pause,
    /// resume, abort, retry-failed.
    #[command(subcommand)]
    Rollout(commands::rollout::RolloutCmd),
    /// Set, list, show and delete identity configurations: the audience of tasks' OIDC ID
    /// tokens and the AWS, Google or Azure roles they are exchanged for (admin to change).
    #[command(subcommand)]
    Identity(commands::identity::IdentityCmd),
    /// Named credential sets (variables and files) that tasks of matching workspaces receive
    /// (admin).
    #[command(subcommand)]
    Connection(commands::connection::ConnectionCmd),
    /// Outgoing webhook notifications of run events: create, list, show deliveries, test,
    /// redeliver (admin).
    #[command(subcommand)]
    Webhook(commands::webhook::WebhookCmd),
    /// Environments with a TTL (`run submit --ttl`): list what expires when, extend a deadline.
    #[command(subcommand)]
    Env(commands::env::EnvCmd),
    /// Drift checks: plan a workspace's last applied configuration now.
    #[command(subcommand)]
    Drift(commands::drift::DriftCmd),
    /// Workspaces: last run, last apply, drift status, TTL.
    #[command(subcommand)]
    Workspace(commands::workspace::WorkspaceCmd),
    /// Cron schedules of drift checks (admin to add and remove).
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCmd),
    /// Plan policies in Rego attached to workspace globs: add, list, show, remove (admin);
    /// `policy test` evaluates them against a plan JSON locally, like `conftest test`.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCmd),
    /// Set and list the workspaces each pool serves.
    #[command(subcommand)]
    Pool(commands::pool::PoolCmd),
    /// Submit, inspect and act on runs.
    #[command(subcommand)]
    Run(commands::run::RunCmd),
    /// Inspect and revoke agents; create the join tokens they register with.
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
    let matches = Cli::command().get_matches();
    let origin = |id: &str| match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Origin::Flag,
        Some(ValueSource::EnvVariable) => Origin::Env,
        _ => Origin::Default,
    };
    let (coordinator_from, token_from) = (origin("coordinator"), origin("token"));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, coordinator_from, token_from).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs a command that needs no coordinator, if `cmd` is one.
fn offline(cmd: &Cmd, json: bool) -> Option<Result<u8, String>> {
    match cmd {
        // Verifying an exported file.
        Cmd::Audit(commands::audit::AuditCmd::Verify { file: Some(f) }) => {
            Some(commands::audit::verify_file(f, json))
        }
        // Checking a workflow file.
        Cmd::Workflow(commands::workflow::WorkflowCmd::Validate { file }) => {
            Some(commands::workflow::validate(file, json))
        }
        // Testing policies against a plan.
        Cmd::Policy(commands::policy::PolicyCmd::Test {
            policies,
            plan,
            context,
            timeout,
            fail_on_warn,
        }) => Some(commands::policy::test(
            policies,
            plan,
            context.as_deref(),
            *timeout,
            *fail_on_warn,
            json,
        )),
        _ => None,
    }
}

/// Settles the coordinator and token (flag, environment, config file, default), connects, then
/// hands the command to its group; returns the exit code.
async fn run(cli: Cli, coordinator_from: Origin, token_from: Origin) -> Result<u8, String> {
    let json = cli.output == Format::Json;
    if let Some(code) = offline(&cli.cmd, json) {
        return code;
    }
    let path = config::path();
    let file = match &path {
        Ok(p) => Config::load(p)?,
        Err(_) => Config::default(),
    };
    let token_flag = match token_from {
        Origin::Flag => cli.token.clone(),
        _ => None,
    };
    let settings = config::resolve(
        (!cli.coordinator.is_empty()).then(|| (cli.coordinator.join(","), coordinator_from)),
        cli.token.map(|t| (t, token_from)),
        &file,
        path.as_ref().ok().map(|p| p.as_path()),
    );
    let (token, token_from) = match cli.cmd {
        Cmd::Logout => return commands::login::logout(&path?, &file, json),
        // Login checks the token it is given, never one from the environment or the file.
        Cmd::Login => match token_flag {
            Some(t) => (Some(t), Some("--token".to_string())),
            None => (
                Some(commands::login::read_token()?),
                Some("standard input".to_string()),
            ),
        },
        _ => (
            settings.token.clone(),
            settings
                .token
                .as_ref()
                .map(|_| settings.token_from.describe("--token", "TOFUFLOW_TOKEN")),
        ),
    };
    let mut ctx = Ctx {
        client: client(
            &settings.coordinator,
            cli.tls_ca.as_deref(),
            token.as_deref(),
        )
        .await?,
        json,
        who: actor(&cli.user),
        url: settings.coordinator.clone(),
        token_from,
    };
    match cli.cmd {
        Cmd::Login => commands::login::login(&mut ctx, &path?, token.unwrap_or_default()).await,
        // Logout needs no coordinator: it returned above, before connecting.
        Cmd::Logout => Ok(0),
        Cmd::Whoami => commands::login::whoami(&mut ctx).await,
        Cmd::Token(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Role(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Rule(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Identity(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Workflow(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Rollout(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Connection(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Webhook(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Env(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Drift(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Workspace(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Schedule(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Policy(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Pool(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Run(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Agent(cmd) => cmd.execute(&mut ctx).await,
        Cmd::State(cmd) => cmd.execute(&mut ctx).await,
        Cmd::DeadLetter(cmd) => cmd.execute(&mut ctx).await,
        Cmd::Audit(cmd) => cmd.execute(&mut ctx).await,
    }
}

/// Opens the gRPC channel to the first coordinator of `urls` (comma-separated) that accepts a
/// connection (over TLS for an https URL; with the user's token, if any). Any coordinator on
/// the shared database answers every call alike, so the first live one will do.
async fn client(
    urls: &str,
    tls_ca: Option<&std::path::Path>,
    token: Option<&str>,
) -> Result<Client, String> {
    let mut failures = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match channel(url, tls_ca).await {
            Ok(ch) => {
                return Ok(UserServiceClient::with_interceptor(
                    ch,
                    tofuflow_proto::auth::Bearer::new(token)?,
                )
                .max_decoding_message_size(tofuflow_proto::MAX_MESSAGE_BYTES))
            }
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Err("--coordinator names no URL".into()),
        1 => Err(failures.remove(0)),
        _ => Err(format!(
            "no coordinator could be reached:\n  {}",
            failures.join("\n  ")
        )),
    }
}

/// Connects to one coordinator; the error says what to do.
async fn channel(
    url: &str,
    tls_ca: Option<&std::path::Path>,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad coordinator URL {url:?}: {e}"))?;
    let files = tofuflow_proto::tls::ClientFiles {
        ca: tls_ca,
        ..Default::default()
    };
    tofuflow_proto::tls::endpoint(endpoint, url, &files)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            let why = tofuflow_proto::tls::chain(&e);
            match tofuflow_proto::tls::hint(&why) {
                Some(hint) => format!("TLS with the coordinator at {url} failed: {why} ({hint})"),
                None => format!("cannot reach the coordinator at {url}: is it running? (start it with `tofuflow-coordinator`, or point --coordinator / TOFUFLOW_COORDINATOR at it): {why}"),
            }
        })
}

/// Who acts: `--user`/`TOFUFLOW_USER`, else `$USER`, else `$LOGNAME`, else the OS user (`uid:N` if it has no name).
fn actor(cli_user: &Option<String>) -> String {
    [
        cli_user.clone(),
        std::env::var("USER").ok(),
        std::env::var("LOGNAME").ok(),
    ]
    .into_iter()
    .flatten()
    .find(|s| !s.trim().is_empty())
    .unwrap_or_else(os_user)
}

/// The OS user running the CLI (from the user database), else `uid:N`: what a run is
/// recorded as on an open coordinator when neither --user nor $USER says.
fn os_user() -> String {
    let uid = nix::unistd::Uid::current();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) if !u.name.is_empty() => u.name,
        _ => format!("uid:{uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Cli, clap::ArgMatches), clap::Error> {
        let m = Cli::command().try_get_matches_from(args)?;
        Ok((Cli::from_arg_matches(&m)?, m))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_token_on_the_command_line_is_told_apart() {
        let (cli, m) = parse(&["tofuflow", "login", "--token", "tfu_x"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Login));
        assert_eq!(cli.token.as_deref(), Some("tfu_x"));
        assert_eq!(m.value_source("token"), Some(ValueSource::CommandLine));
        let (cli, _) = parse(&["tofuflow", "whoami"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Whoami));
    }

    #[test]
    fn token_commands_take_their_own_user_flag() {
        let (cli, _) = parse(&[
            "tofuflow",
            "token",
            "create",
            "--user",
            "bob",
            "--ttl",
            "30d",
            "--description",
            "ci",
        ])
        .unwrap();
        let Cmd::Token(commands::token::TokenCmd::Create {
            user,
            ttl,
            description,
        }) = cli.cmd
        else {
            panic!("not token create");
        };
        assert_eq!(user.as_deref(), Some("bob"));
        assert_eq!(ttl, Some(30 * 86_400_000));
        assert_eq!(description.as_deref(), Some("ci"));
        assert!(parse(&["tofuflow", "token", "list", "--user", "a", "--all"]).is_err());
        assert!(parse(&["tofuflow", "token", "create", "--ttl", "soon"]).is_err());
        assert!(parse(&["tofuflow", "token", "revoke"]).is_err());
    }

    #[test]
    fn identity_arguments_pair_up() {
        let arn = "arn:aws:iam::123456789012:role/x";
        let set = |extra: &[&str]| {
            let mut a = vec!["tofuflow", "identity", "set", "ml", "--workspace", "ml/*"];
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert!(set(&["--aws-role-arn", arn]).is_ok());
        assert!(set(&["--aws-plan-role-arn", arn, "--aws-apply-role-arn", arn]).is_ok());
        assert!(set(&["--aws-plan-role-arn", arn]).is_err());
        assert!(set(&["--aws-role-arn", arn, "--aws-apply-role-arn", arn]).is_err());
        assert!(set(&["--gcp-service-account", "a@b.iam.gserviceaccount.com"]).is_err());
        assert!(set(&["--azure-client-id", "x"]).is_err());
        assert!(parse(&["tofuflow", "identity", "set", "ml"]).is_err());
        assert!(parse(&["tofuflow", "identity", "show", "ml"]).is_ok());
        assert!(parse(&["tofuflow", "identity", "delete", "ml"]).is_ok());
        assert!(parse(&["tofuflow", "identity", "list"]).is_ok());
    }

    #[test]
    fn connection_arguments_are_checked_and_values_never_come_from_argv() {
        let set = |extra: &[&str]| {
            let mut a = vec!["tofuflow", "connection", "set", "ml-aws"];
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert!(set(&[
            "-w",
            "ml/*",
            "--from-file",
            "x.env",
            "--plain",
            "AWS_REGION"
        ])
        .is_ok());
        assert!(set(&["-w", "ml/*", "--file", "KUBECONFIG=./kube"]).is_ok());
        assert!(set(&["-w", "ml/*", "--phase", "apply"]).is_ok());
        assert!(set(&["-w", "ml/*", "--phase", "destroy"]).is_err());
        assert!(
            set(&["--from-file", "x.env"]).is_err(),
            "a workspace glob is required"
        );
        assert!(
            set(&["-w", "ml/*", "--file", "KUBECONFIG"]).is_err(),
            "VAR=PATH"
        );
        assert!(
            set(&["-w", "ml/*", "--file", "LD_PRELOAD=./x.so"]).is_err(),
            "reserved"
        );
        assert!(
            set(&["-w", "ml/*", "--value", "secret"]).is_err(),
            "no value on argv"
        );
        assert!(parse(&["tofuflow", "connection", "set", "bad name", "-w", "**"]).is_err());
        assert!(parse(&[
            "tofuflow",
            "connection",
            "rotate",
            "ml-aws",
            "--remove",
            "A"
        ])
        .is_ok());
        assert!(parse(&["tofuflow", "connection", "list", "-w", "ml/a"]).is_ok());
        assert!(
            parse(&["tofuflow", "connection", "list", "-w", "ml/*"]).is_err(),
            "a workspace, not a glob"
        );
        assert!(parse(&["tofuflow", "connection", "show", "ml-aws"]).is_ok());
        assert!(parse(&["tofuflow", "connection", "delete", "ml-aws"]).is_ok());
    }

    #[test]
    fn role_rule_pool_and_join_token_arguments_are_checked() {
        assert!(parse(&[
            "tofuflow",
            "role",
            "grant",
            "alice",
            "operator",
            "--workspaces",
            "ml/*"
        ])
        .is_ok());
        assert!(parse(&[
            "tofuflow",
            "role",
            "grant",
            "alice",
            "owner",
            "--workspaces",
            "ml/*"
        ])
        .is_err());
        assert!(parse(&["tofuflow", "role", "revoke", "alice", "admin"]).is_err());
        assert!(parse(&["tofuflow", "role", "list", "--user", "alice"]).is_ok());
        let digest = format!("sha256:{}", "0".repeat(64));
        assert!(parse(&[
            "tofuflow",
            "rule",
            "set",
            "prod/**",
            "--four-eyes",
            "--source",
            "git@github.com:acme/infra.git//prod",
            "--digest",
            &digest,
            "--pool",
            "gpu",
            "--pool",
            "cpu",
        ])
        .is_ok());
        assert!(parse(&["tofuflow", "rule", "set", "prod/**", "--digest", "abc"]).is_err());
        assert!(parse(&["tofuflow", "rule", "delete", "prod/**"]).is_ok());
        assert!(parse(&[
            "tofuflow",
            "pool",
            "set",
            "gpu",
            "--workspaces",
            "ml/**",
            "--workspaces",
            "ai/*"
        ])
        .is_ok());
        assert!(parse(&["tofuflow", "pool", "set", "gpu", "--any-workspace"]).is_ok());
        assert!(parse(&["tofuflow", "pool", "set", "gpu"]).is_err());
        assert!(parse(&[
            "tofuflow",
            "pool",
            "set",
            "gpu",
            "--any-workspace",
            "--workspaces",
            "ml/*"
        ])
        .is_err());
        let (cli, _) = parse(&[
            "tofuflow",
            "agent",
            "join-token",
            "create",
            "--pool",
            "gpu,cpu",
            "--pool",
            "x",
            "--ttl",
            "2h",
        ])
        .unwrap();
        let Cmd::Agent(commands::agent::AgentCmd::JoinToken(
            commands::agent::JoinTokenCmd::Create { pools, ttl },
        )) = cli.cmd
        else {
            panic!("not join-token create");
        };
        assert_eq!(pools, ["gpu", "cpu", "x"]);
        assert_eq!(ttl, Some(7_200_000));
        assert!(parse(&["tofuflow", "agent", "join-token", "create"]).is_err());
        assert!(parse(&["tofuflow", "agent", "revoke", "a1"]).is_ok());
    }
}
