//! `tofuflow agent`: the registered agents.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// List registered agents.
    List,
}

impl AgentCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            AgentCmd::List => list(ctx).await,
        }
    }
}

async fn list(ctx: &mut Ctx) -> Result<u8, String> {
    let r = ctx
        .client
        .list_agents(v1::ListAgentsRequest {})
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    output::print_agents(&r.agents, ctx.json);
    Ok(0)
}
