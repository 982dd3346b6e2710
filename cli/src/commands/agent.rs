//! `tofuflow agent`: the registered agents, their revocation, and the join tokens new agents
//! register with.

use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// List registered agents.
    List,
    /// Revoke an agent: it stops at its next heartbeat and its leases fail over (admin).
    Revoke {
        /// The agent's id (from `agent list`).
        #[arg(value_parser = args::non_empty)]
        agent_id: String,
    },
    /// Create, list and revoke the join tokens agents register with (admin).
    #[command(subcommand)]
    JoinToken(JoinTokenCmd),
}

#[derive(Subcommand)]
pub enum JoinTokenCmd {
    /// Create a join token for some pools; prints it once, alone on the last line (`| tail -1`).
    Create {
        /// A pool an agent joining with it may serve (repeatable, or comma-separated).
        #[arg(long = "pool", value_name = "P", value_parser = args::pool, value_delimiter = ',', required = true)]
        pools: Vec<String>,
        /// Lifetime, e.g. 1h, 30m [default: 1h].
        #[arg(long, value_name = "DURATION", value_parser = args::ttl_ms)]
        ttl: Option<i64>,
    },
    /// List join tokens.
    List,
    /// Revoke a join token: no more agents join with it (ones that joined stay).
    Revoke {
        /// The join token's id (from `agent join-token list`).
        #[arg(value_parser = args::non_empty)]
        id: String,
    },
}

impl AgentCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            AgentCmd::List => list(ctx).await,
            AgentCmd::Revoke { agent_id } => revoke(ctx, agent_id).await,
            AgentCmd::JoinToken(cmd) => cmd.execute(ctx).await,
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

async fn revoke(ctx: &mut Ctx, agent_id: String) -> Result<u8, String> {
    let a = ctx
        .client
        .revoke_agent(v1::RevokeAgentRequest { agent_id })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    if ctx.json {
        output::print_agents(std::slice::from_ref(&a), true);
    } else {
        println!(
            "revoked agent {} ({}): it stops at its next heartbeat and its leases fail over",
            a.id, a.name
        );
    }
    Ok(0)
}

impl JoinTokenCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            JoinTokenCmd::Create { pools, ttl } => {
                let r = ctx
                    .client
                    .create_join_token(v1::CreateJoinTokenRequest {
                        pools,
                        ttl_ms: ttl.unwrap_or(0),
                    })
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                output::print_join_token_created(&r, ctx.json);
                Ok(0)
            }
            JoinTokenCmd::List => {
                let r = ctx
                    .client
                    .list_join_tokens(v1::ListRulesRequest {})
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                output::print_join_tokens(&r.tokens, ctx.json);
                Ok(0)
            }
            JoinTokenCmd::Revoke { id } => {
                let t = ctx
                    .client
                    .revoke_join_token(v1::RevokeTokenRequest { id })
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                if ctx.json {
                    output::print_json(&output::join_token_json(&t));
                } else {
                    println!("revoked join token {}", t.id);
                }
                Ok(0)
            }
        }
    }
}
