//! The command groups, one module each (`run`, `state`, `agent`, `dead-letter`, `audit`, and for
//! access control `login` (with `logout`, `whoami`), `token`, `role`, `rule`, `pool`;
//! `identity` for tasks' OIDC ID tokens; `webhook` for notifications; `env` for TTLs; `drift`,
//! `workspace` and `schedule` for drift checks and schedules; `policy` for plan policies): a
//! group's clap
//! subcommands and one handler per command, all working through a [`Ctx`].

pub mod agent;
pub mod audit;
pub mod connection;
pub mod dead_letter;
pub mod drift;
pub mod env;
pub mod identity;
pub mod login;
pub mod policy;
pub mod pool;
pub mod role;
pub mod rollout;
pub mod rule;
pub mod run;
pub mod schedule;
pub mod state;
pub mod token;
pub mod webhook;
pub mod workflow;
pub mod workspace;

use tofuflow_proto::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;

/// The user API client, carrying the user's token.
pub type Client = UserServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tofuflow_proto::auth::Bearer>,
>;

/// What every command works with: the connected client, the coordinator's URL (for error
/// messages), the output format, who acts and where the token came from (never the token).
pub struct Ctx {
    pub client: Client,
    pub url: String,
    pub json: bool,
    pub who: String,
    /// Where the token came from (`--token`, `TOFUFLOW_TOKEN`, the config file); None: no token.
    pub token_from: Option<String>,
}

impl Ctx {
    /// Turns a gRPC error into the message the user sees; an unreachable coordinator or a
    /// failed TLS connection gets a hint.
    pub fn explain(&self, s: tonic::Status) -> String {
        if let Some(why) = tofuflow_proto::tls::transport_failure(&s, &self.url, false) {
            return why;
        }
        match s.code() {
            // The coordinator answered (its answers carry the error table's HTTP status) but
            // cannot do it now: its database or RabbitMQ is unreachable.
            tonic::Code::Unavailable if s.metadata().contains_key(tofuflow_proto::HTTP_STATUS_KEY) => format!(
                "the coordinator at {} cannot answer now: {}",
                self.url,
                s.message()
            ),
            tonic::Code::Unavailable => format!(
                "cannot reach the coordinator at {}: is it running? (start it with `tofuflow-coordinator`, or point --coordinator / TOFUFLOW_COORDINATOR at it): {}",
                self.url,
                s.message()
            ),
            tonic::Code::Unauthenticated => format!(
                "{} ({}): log in with `tofuflow login`, or pass --token / TOFUFLOW_TOKEN",
                s.message(),
                match &self.token_from {
                    Some(from) => format!("the token came from {from}"),
                    None => "no token was given".to_string(),
                }
            ),
            _ => s.message().to_string(),
        }
    }
}

/// Exit code for a run's state.
pub fn code_for(state: &str) -> u8 {
    match state {
        "applied" | "planned" | "planned_no_changes" | "awaiting_approval" => 0,
        "failed" | "cancelled" | "rejected" | "interrupted" | "expired" => 2,
        _ => 0,
    }
}
