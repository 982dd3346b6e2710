//! `tofuflow token`: create, list and revoke API tokens. A new token is printed once, alone on
//! the last line of standard output; the coordinator keeps only its hash.

use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an API token (yours, or another user's as admin); prints it once, alone on the
    /// last line (`| tail -1`).
    Create {
        /// Whose token (admin; default: yours).
        #[arg(long, value_parser = args::non_empty)]
        user: Option<String>,
        /// Lifetime, e.g. 30d, 12h [default: the coordinator's --token-ttl].
        #[arg(long, value_name = "DURATION", value_parser = args::ttl_ms)]
        ttl: Option<i64>,
        /// What the token is for (shown by `token list`).
        #[arg(long)]
        description: Option<String>,
    },
    /// List API tokens: yours, one user's (admin) or everyone's (`--all`, admin).
    List {
        /// Whose tokens (admin).
        #[arg(long, value_parser = args::non_empty, conflicts_with = "all")]
        user: Option<String>,
        /// Every user's tokens (admin).
        #[arg(long)]
        all: bool,
    },
    /// Revoke an API token at once (yours, or anyone's as admin).
    Revoke {
        /// The token's id (from `token list`).
        #[arg(value_parser = args::non_empty)]
        id: String,
    },
}

impl TokenCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            TokenCmd::Create {
                user,
                ttl,
                description,
            } => create(ctx, user, ttl, description).await,
            TokenCmd::List { user, all } => list(ctx, list_user(user, all)).await,
            TokenCmd::Revoke { id } => revoke(ctx, id).await,
        }
    }
}

/// Whose tokens `token list` asks for: empty is the caller's own, `*` everyone's.
fn list_user(user: Option<String>, all: bool) -> String {
    if all {
        "*".into()
    } else {
        user.unwrap_or_default()
    }
}

async fn create(
    ctx: &mut Ctx,
    user: Option<String>,
    ttl_ms: Option<i64>,
    description: Option<String>,
) -> Result<u8, String> {
    let r = ctx
        .client
        .create_token(v1::CreateTokenRequest {
            user: user.unwrap_or_default(),
            ttl_ms: ttl_ms.unwrap_or(0),
            description: description.unwrap_or_default(),
        })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    output::print_token_created(&r, ctx.json);
    Ok(0)
}

async fn list(ctx: &mut Ctx, user: String) -> Result<u8, String> {
    let r = ctx
        .client
        .list_tokens(v1::ListTokensRequest { user })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    output::print_tokens(&r.tokens, ctx.json);
    Ok(0)
}

async fn revoke(ctx: &mut Ctx, id: String) -> Result<u8, String> {
    let t = ctx
        .client
        .revoke_token(v1::RevokeTokenRequest { id })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    if ctx.json {
        output::print_json(&output::token_json(&t));
    } else {
        println!("revoked token {} of {}", t.id, t.user);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_asks_for_own_one_users_or_all_tokens() {
        assert_eq!(list_user(None, false), "");
        assert_eq!(list_user(Some("bob".into()), false), "bob");
        assert_eq!(list_user(None, true), "*");
    }
}
