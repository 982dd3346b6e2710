//! `tofuflow role`: grant, revoke and list roles on workspace globs.

use super::Ctx;
use crate::{args, output};
use clap::{Subcommand, ValueEnum};
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum RoleCmd {
    /// Grant USER a role on the workspaces matching a glob (admin).
    Grant(Grant),
    /// Take back a role granted on exactly that glob (admin).
    Revoke(Grant),
    /// List role grants: everyone's, or one user's.
    List {
        /// Only this user's grants.
        #[arg(long, value_parser = args::non_empty)]
        user: Option<String>,
    },
}

// `role grant` and `role revoke` take their about line from the variants above.
#[derive(clap::Args)]
pub struct Grant {
    /// The user.
    #[arg(value_name = "USER", value_parser = args::non_empty)]
    name: String,
    /// The role.
    role: Role,
    /// Workspace glob: `*` is one path part, `**` any number (ml/*, prod/**, **).
    #[arg(long, value_name = "GLOB", value_parser = args::workspace_glob)]
    workspaces: String,
}

/// The roles, each with what the ones before it allow.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Role {
    /// Reads runs, logs, agents and state.
    Viewer,
    /// Submits, cancels, locks state and sees sensitive values.
    Operator,
    /// Approves and rejects plans.
    Approver,
    /// Everything, access control included.
    Admin,
}

impl Role {
    /// The role's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl Grant {
    fn request(&self) -> v1::RoleGrantRequest {
        v1::RoleGrantRequest {
            user: self.name.clone(),
            role: self.role.as_str().into(),
            workspaces: self.workspaces.clone(),
        }
    }
}

impl RoleCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            RoleCmd::Grant(g) => {
                let r = ctx
                    .client
                    .grant_role(g.request())
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                done(ctx, "granted", &r);
                Ok(0)
            }
            RoleCmd::Revoke(g) => {
                let r = ctx
                    .client
                    .revoke_role(g.request())
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                done(ctx, "revoked", &r);
                Ok(0)
            }
            RoleCmd::List { user } => {
                let r = ctx
                    .client
                    .list_roles(v1::ListRolesRequest {
                        user: user.unwrap_or_default(),
                    })
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                output::print_grants(&r.grants, ctx.json);
                Ok(0)
            }
        }
    }
}

fn done(ctx: &Ctx, what: &str, g: &v1::RoleGrant) {
    if ctx.json {
        output::print_json(&output::grant_json(g));
    } else if what == "granted" {
        println!("{} is now {} on {}", g.user, g.role, g.workspaces);
    } else {
        println!(
            "{} is no longer {} on {} (grants on other globs stay)",
            g.user, g.role, g.workspaces
        );
    }
}
