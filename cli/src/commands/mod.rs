//! The command groups, one module each (`run`, `state`, `agent`, `dead-letter`, `audit`): a group's clap
//! subcommands and one handler per command, all working through a [`Ctx`].

pub mod agent;
pub mod audit;
pub mod dead_letter;
pub mod run;
pub mod state;

use tofuflow_proto::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;

/// The user API client, carrying the user's token.
pub type Client = UserServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tofuflow_proto::auth::Bearer>,
>;

/// What every command works with: the connected client, the coordinator's URL (for error
/// messages), the output format and who acts.
pub struct Ctx {
    pub client: Client,
    pub url: String,
    pub json: bool,
    pub who: String,
}

impl Ctx {
    /// Turns a gRPC error into the message the user sees; an unreachable coordinator gets a hint.
    pub fn explain(&self, s: tonic::Status) -> String {
        match s.code() {
            tonic::Code::Unavailable => format!(
                "cannot reach the coordinator at {}: is it running? (start it with `tofuflow-coordinator`, or point --coordinator / TOFUFLOW_COORDINATOR at it): {}",
                self.url,
                s.message()
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
