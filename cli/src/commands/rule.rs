//! `tofuflow rule`: the rules runs of matching workspaces must satisfy (four-eyes approval,
//! allowed module sources, allowed bundle digests, allowed pools).

use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum RuleCmd {
    /// Set the rule for a workspace glob, replacing the one it had (admin).
    Set(Set),
    /// Delete the rule of a workspace glob (admin).
    Delete {
        /// The rule's workspace glob, as `rule list` shows it.
        #[arg(value_name = "GLOB", value_parser = args::workspace_glob)]
        workspaces: String,
    },
    /// List the workspace rules.
    List,
}

// `rule set` takes its about line from the variant above.
#[derive(clap::Args)]
pub struct Set {
    /// Workspace glob: `*` is one path part, `**` any number (ml/*, prod/**, **).
    #[arg(value_name = "GLOB", value_parser = args::workspace_glob)]
    workspaces: String,
    /// The submitter of a run may not approve it, and --auto-approve is refused.
    #[arg(long)]
    four_eyes: bool,
    /// An allowed module source: a prefix of the source recorded at submit (`run submit
    /// --source`, e.g. git@github.com:acme/infra.git//modules/gpu). Repeatable; none: any.
    #[arg(long = "source", value_name = "PREFIX", value_parser = args::non_empty)]
    sources: Vec<String>,
    /// An allowed bundle digest (sha256:…, as `run show` prints it). Repeatable; none: any.
    /// With sources too, a run matching either is allowed.
    #[arg(long = "digest", value_name = "SHA", value_parser = args::bundle_digest)]
    digests: Vec<String>,
    /// A pool whose agents may run these workspaces. Repeatable; none: any.
    #[arg(long = "pool", value_name = "P", value_parser = args::pool)]
    pools: Vec<String>,
}

impl Set {
    fn rule(self) -> v1::WorkspaceRule {
        v1::WorkspaceRule {
            workspaces: self.workspaces,
            four_eyes: self.four_eyes,
            sources: self.sources,
            bundle_digests: self.digests,
            pools: self.pools,
            ..Default::default()
        }
    }
}

impl RuleCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            RuleCmd::Set(set) => {
                let r = ctx
                    .client
                    .set_workspace_rule(set.rule())
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                if ctx.json {
                    output::print_workspace_rules(std::slice::from_ref(&r), true);
                } else {
                    println!("set the rule for {}", r.workspaces);
                    output::print_workspace_rules(std::slice::from_ref(&r), false);
                }
                Ok(0)
            }
            RuleCmd::Delete { workspaces } => {
                let r = ctx
                    .client
                    .delete_workspace_rule(v1::DeleteWorkspaceRuleRequest { workspaces })
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                if ctx.json {
                    output::print_json(&output::workspace_rule_json(&r));
                } else {
                    println!("deleted the rule for {}", r.workspaces);
                }
                Ok(0)
            }
            RuleCmd::List => {
                let r = ctx
                    .client
                    .list_workspace_rules(v1::ListRulesRequest {})
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                output::print_workspace_rules(&r.rules, ctx.json);
                Ok(0)
            }
        }
    }
}
