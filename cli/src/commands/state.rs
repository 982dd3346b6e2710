//! `tofuflow state`: list, show and pull a workspace's state versions, roll back, and lock or
//! unlock a workspace by hand.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

#[derive(Subcommand)]
pub enum StateCmd {
    /// List a workspace's state versions (newest first), its lock and its audit trail.
    List(List),
    /// Show one version: serial, lineage, digest, who wrote it, and what it holds.
    Show(Show),
    /// Print one version's state file (the latest by default) to stdout.
    Pull(Pull),
    /// Make version N the current state again (a new version with N's exact content; refused
    /// while locked).
    Rollback(Rollback),
    /// Lock a workspace by hand: runs cannot take its state until it is unlocked.
    Lock(Lock),
    /// Release your lock; with --force, release anyone's (an admin action, recorded).
    Unlock(Unlock),
}

impl StateCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            StateCmd::List(cmd) => cmd.execute(ctx).await,
            StateCmd::Show(cmd) => cmd.execute(ctx).await,
            StateCmd::Pull(cmd) => cmd.execute(ctx).await,
            StateCmd::Rollback(cmd) => cmd.execute(ctx).await,
            StateCmd::Lock(cmd) => cmd.execute(ctx).await,
            StateCmd::Unlock(cmd) => cmd.execute(ctx).await,
        }
    }
}

#[derive(clap::Args)]
pub struct List {
    workspace: String,
}

impl List {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = ctx
            .client
            .list_state_versions(v1::StateRequest {
                workspace: self.workspace,
                version: 0,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        output::print_state_list(&r, ctx.json);
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Show {
    workspace: String,
    #[arg(long)]
    version: Option<i64>,
}

impl Show {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let (info, data) = pull(ctx, &self.workspace, self.version).await?;
        output::print_state(&info, &data, ctx.json);
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Pull {
    workspace: String,
    #[arg(long)]
    version: Option<i64>,
}

impl Pull {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let (_, data) = pull(ctx, &self.workspace, self.version).await?;
        use std::io::Write;
        std::io::stdout()
            .write_all(&data)
            .map_err(|e| e.to_string())?;
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Rollback {
    workspace: String,
    #[arg(long)]
    to: i64,
    #[arg(long, default_value = "")]
    reason: String,
}

impl Rollback {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let v = ctx
            .client
            .rollback_state(v1::RollbackStateRequest {
                workspace: self.workspace.clone(),
                to_version: self.to,
                actor: ctx.who.clone(),
                reason: self.reason,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        if ctx.json {
            println!("{}", output::version_json(&v));
        } else {
            println!(
                "workspace {}: version {} now holds the content of version {} (serial {})",
                self.workspace, v.version, self.to, v.serial
            );
        }
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Lock {
    workspace: String,
    #[arg(long, default_value = "")]
    reason: String,
}

impl Lock {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let l = ctx
            .client
            .lock_state(v1::StateLockRequest {
                workspace: self.workspace.clone(),
                actor: ctx.who.clone(),
                reason: self.reason,
                force: false,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        println!(
            "workspace {} locked by {} (lock {})",
            self.workspace, l.owner, l.lock_id
        );
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Unlock {
    workspace: String,
    #[arg(long)]
    force: bool,
    #[arg(long, default_value = "")]
    reason: String,
}

impl Unlock {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let l = ctx
            .client
            .unlock_state(v1::StateLockRequest {
                workspace: self.workspace.clone(),
                actor: ctx.who.clone(),
                reason: self.reason,
                force: self.force,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        println!(
            "workspace {} unlocked (the lock was {}'s)",
            self.workspace, l.owner
        );
        Ok(0)
    }
}

/// Downloads one state version (the latest when `version` is unset).
async fn pull(
    ctx: &mut Ctx,
    workspace: &str,
    version: Option<i64>,
) -> Result<(v1::StateVersionInfo, Vec<u8>), String> {
    let mut s = ctx
        .client
        .get_state(v1::StateRequest {
            workspace: workspace.to_string(),
            version: version.unwrap_or(0),
        })
        .await
        .map_err(|e| ctx.explain(e))?
        .into_inner();
    let mut info = None;
    let mut data = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| ctx.explain(e))?;
        if info.is_none() {
            info = chunk.info;
        }
        data.extend_from_slice(&chunk.data);
    }
    Ok((info.unwrap_or_default(), data))
}
