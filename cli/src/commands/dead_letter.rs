//! `tofuflow dead-letter`: list and purge the dead-letter queue (admin).

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum DeadLetterCmd {
    /// List dead messages, oldest first: ids, pool, why and when they died (they stay queued).
    List {
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Empty the dead-letter queue (recorded with your name in the coordinator's log).
    Purge {
        #[arg(long, default_value = "")]
        reason: String,
    },
}

impl DeadLetterCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            DeadLetterCmd::List { limit } => list(ctx, limit).await,
            DeadLetterCmd::Purge { reason } => purge(ctx, reason).await,
        }
    }
}

async fn list(ctx: &mut Ctx, limit: u32) -> Result<u8, String> {
    let r = ctx
        .client
        .list_dead_letters(v1::ListDeadLettersRequest {
            actor: ctx.who.clone(),
            limit,
        })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    output::print_dead_letters(&r, ctx.json);
    Ok(0)
}

async fn purge(ctx: &mut Ctx, reason: String) -> Result<u8, String> {
    let r = ctx
        .client
        .purge_dead_letters(v1::PurgeDeadLettersRequest {
            actor: ctx.who.clone(),
            reason,
        })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    if ctx.json {
        println!("{}", serde_json::json!({"purged": r.purged}));
    } else {
        println!("purged {} dead messages", r.purged);
    }
    Ok(0)
}
