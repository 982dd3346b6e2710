//! `tofuflow pool`: the workspaces each pool serves (its agents take tasks of matching
//! workspaces only).

use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum PoolCmd {
    /// Set the workspaces a pool serves, or let it serve any (admin).
    Set(Set),
    /// List the pool rules.
    List,
}

// `pool set` takes its about line from the variant above.
#[derive(clap::Args)]
pub struct Set {
    /// The pool.
    #[arg(value_name = "POOL", value_parser = args::pool)]
    pool: String,
    /// A workspace glob the pool serves (repeatable): `*` is one path part, `**` any number.
    #[arg(
        long,
        value_name = "GLOB",
        value_parser = args::workspace_glob,
        required_unless_present = "any_workspace"
    )]
    workspaces: Vec<String>,
    /// Remove the pool's rule: it serves any workspace.
    #[arg(long, conflicts_with = "workspaces")]
    any_workspace: bool,
}

impl PoolCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            PoolCmd::Set(set) => {
                // An empty list is how the API removes a pool's rule.
                let workspaces = if set.any_workspace {
                    Vec::new()
                } else {
                    set.workspaces
                };
                let r = ctx
                    .client
                    .set_pool_rule(v1::PoolRule {
                        pool: set.pool,
                        workspaces,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                if ctx.json {
                    output::print_json(&output::pool_rule_json(&r));
                } else if r.workspaces.is_empty() {
                    println!("pool {} serves any workspace", r.pool);
                } else {
                    println!("pool {} serves {} only", r.pool, r.workspaces.join(", "));
                }
                Ok(0)
            }
            PoolCmd::List => {
                let r = ctx
                    .client
                    .list_pool_rules(v1::ListRulesRequest {})
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                output::print_pool_rules(&r.rules, ctx.json);
                Ok(0)
            }
        }
    }
}
