//! `tofuflow identity`: per-workspace identity configurations, i.e. the audience of tasks'
//! OIDC ID tokens and the cloud roles (AWS, Google, Azure) the agent sets tofu up to assume
//! with them. The coordinator checks every value and says which flag is wrong.

use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum IdentityCmd {
    /// Create or replace an identity configuration for a workspace glob (admin).
    Set(Box<Set>),
    /// List the identity configurations.
    List,
    /// Show one identity configuration.
    Show {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Delete an identity configuration (admin).
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

// `identity set` takes its about line from the variant above.
#[derive(clap::Args)]
pub struct Set {
    /// The configuration's name (lowercase letters, digits, '-', '_', '.').
    #[arg(value_name = "NAME")]
    name: String,
    /// Workspace glob: `*` is one path part, `**` any number (ml/*, prod/**, **). When several
    /// configurations match a workspace, the most specific glob wins.
    #[arg(long = "workspace", value_name = "GLOB", value_parser = args::workspace_glob)]
    workspaces: String,
    /// The tokens' `aud` (default: the coordinator's --oidc-audience, i.e. its issuer).
    /// AWS: sts.amazonaws.com; Azure: api://AzureADTokenExchange.
    #[arg(long, value_name = "AUD", value_parser = args::non_empty)]
    audience: Option<String>,
    /// The AWS role plans and applies assume (AWS_ROLE_ARN).
    #[arg(long, value_name = "ARN", conflicts_with_all = ["aws_plan_role_arn", "aws_apply_role_arn"])]
    aws_role_arn: Option<String>,
    /// The AWS role plans assume (give a read-only one); needs --aws-apply-role-arn.
    #[arg(long, value_name = "ARN", requires = "aws_apply_role_arn")]
    aws_plan_role_arn: Option<String>,
    /// The AWS role applies (and destroys) assume; needs --aws-plan-role-arn.
    #[arg(long, value_name = "ARN", requires = "aws_plan_role_arn")]
    aws_apply_role_arn: Option<String>,
    /// The Google workload identity provider:
    /// //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/PR.
    #[arg(long, value_name = "PROVIDER")]
    gcp_audience: Option<String>,
    /// The Google service account to impersonate (none: the pool principal acts directly).
    #[arg(long, value_name = "EMAIL", requires = "gcp_audience")]
    gcp_service_account: Option<String>,
    /// The Azure application (client) id; needs the tenant and subscription ids.
    #[arg(long, value_name = "ID", requires_all = ["azure_tenant_id", "azure_subscription_id"])]
    azure_client_id: Option<String>,
    #[arg(long, value_name = "ID", requires = "azure_client_id")]
    azure_tenant_id: Option<String>,
    #[arg(long, value_name = "ID", requires = "azure_client_id")]
    azure_subscription_id: Option<String>,
}

impl Set {
    fn identity(self) -> v1::Identity {
        let s = |o: Option<String>| o.unwrap_or_default();
        v1::Identity {
            name: self.name,
            workspaces: self.workspaces,
            audience: s(self.audience),
            aws_role_arn: s(self.aws_role_arn),
            aws_plan_role_arn: s(self.aws_plan_role_arn),
            aws_apply_role_arn: s(self.aws_apply_role_arn),
            gcp_audience: s(self.gcp_audience),
            gcp_service_account: s(self.gcp_service_account),
            azure_client_id: s(self.azure_client_id),
            azure_tenant_id: s(self.azure_tenant_id),
            azure_subscription_id: s(self.azure_subscription_id),
            ..Default::default()
        }
    }
}

impl IdentityCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let (verb, r) = match self {
            IdentityCmd::Set(set) => {
                let r = ctx.client.set_identity(set.identity()).await;
                ("set", r)
            }
            IdentityCmd::Show { name } => {
                let r = ctx.client.get_identity(v1::IdentityRequest { name }).await;
                ("", r)
            }
            IdentityCmd::Delete { name } => {
                let r = ctx
                    .client
                    .delete_identity(v1::IdentityRequest { name })
                    .await;
                ("deleted", r)
            }
            IdentityCmd::List => {
                let r = ctx
                    .client
                    .list_identities(v1::ListIdentitiesRequest {})
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                output::print_identities(&r.identities, ctx.json);
                return Ok(0);
            }
        };
        let id = r.map_err(|s| ctx.explain(s))?.into_inner();
        if ctx.json {
            output::print_json(&output::identity_json(&id));
            return Ok(0);
        }
        if !verb.is_empty() {
            println!("{verb} identity {} for {}", id.name, id.workspaces);
        }
        if verb != "deleted" {
            output::print_identity(&id);
        }
        Ok(0)
    }
}
