//! The `identities` table (per-workspace identity configurations, `oidc/identities.rs`) and
//! `id_tokens`, the record of every ID token issued (its id, key, audience, subject and
//! lifetime; never the token itself), which heartbeats read to decide on a renewal.

use super::*;
use crate::oidc::identities::IdentityFields;
use crate::oidc::{Identity, IdentityName, TokenWindow};

/// How long the record of an expired token is kept.
const ID_TOKEN_RECORD_KEEP_MS: i64 = 30 * 24 * 3_600_000;

/// One issued token, as recorded.
#[derive(Clone, Debug)]
pub struct IssuedRecord<'a> {
    pub jti: &'a str,
    pub task_id: &'a str,
    pub attempt: u32,
    pub key_id: &'a str,
    pub audience: &'a str,
    pub subject: &'a str,
    pub window: TokenWindow,
}

fn identity_from_row(r: &sqlx::any::AnyRow) -> Result<Identity> {
    let f = IdentityFields {
        name: s(r, "name")?,
        workspaces: s(r, "workspaces")?,
        audience: s(r, "audience")?,
        aws_role_arn: s(r, "aws_role_arn")?,
        aws_plan_role_arn: s(r, "aws_plan_role_arn")?,
        aws_apply_role_arn: s(r, "aws_apply_role_arn")?,
        gcp_audience: s(r, "gcp_audience")?,
        gcp_service_account: s(r, "gcp_service_account")?,
        azure_client_id: s(r, "azure_client_id")?,
        azure_tenant_id: s(r, "azure_tenant_id")?,
        azure_subscription_id: s(r, "azure_subscription_id")?,
    };
    Identity::check(&f, &s(r, "updated_by")?, i(r, "updated_ms")?).map_err(|e| Error::Corrupt {
        table: "identities",
        column: "*",
        detail: e,
    })
}

/// Every identity configuration, by name.
pub(crate) async fn identities_c(c: &mut AnyConnection) -> Result<Vec<Identity>> {
    let rows = sqlx::query("SELECT * FROM identities ORDER BY name")
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(identity_from_row).collect()
}

/// Records an issued token.
pub(crate) async fn record_id_token(c: &mut AnyConnection, t: &IssuedRecord<'_>) -> Result<()> {
    sqlx::query("INSERT INTO id_tokens (jti, task_id, attempt, key_id, audience, subject, issued_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(t.jti)
        .bind(t.task_id)
        .bind(t.attempt as i64)
        .bind(t.key_id)
        .bind(t.audience)
        .bind(t.subject)
        .bind(t.window.issued_ms)
        .bind(t.window.expires_ms)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The window of the newest token issued to (task, attempt), if any.
pub(crate) async fn latest_id_token(
    c: &mut AnyConnection,
    task_id: &str,
    attempt: u32,
) -> Result<Option<TokenWindow>> {
    let row = sqlx::query("SELECT issued_ms, expires_ms FROM id_tokens WHERE task_id = $1 AND attempt = $2 ORDER BY expires_ms DESC LIMIT 1")
        .bind(task_id)
        .bind(attempt as i64)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| {
        Ok(TokenWindow {
            issued_ms: i(&r, "issued_ms")?,
            expires_ms: i(&r, "expires_ms")?,
        })
    })
    .transpose()
}

impl Store {
    /// Creates or replaces an identity configuration.
    pub async fn set_identity(&self, id: &Identity) -> Result<()> {
        let f = id.fields();
        sqlx::query("DELETE FROM identities WHERE name = $1")
            .bind(&f.name)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO identities (name, workspaces, audience, aws_role_arn, aws_plan_role_arn, aws_apply_role_arn, gcp_audience, gcp_service_account, azure_client_id, azure_tenant_id, azure_subscription_id, updated_by, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
            .bind(&f.name)
            .bind(&f.workspaces)
            .bind(&f.audience)
            .bind(&f.aws_role_arn)
            .bind(&f.aws_plan_role_arn)
            .bind(&f.aws_apply_role_arn)
            .bind(&f.gcp_audience)
            .bind(&f.gcp_service_account)
            .bind(&f.azure_client_id)
            .bind(&f.azure_tenant_id)
            .bind(&f.azure_subscription_id)
            .bind(&id.updated_by)
            .bind(id.updated_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every identity configuration, by name.
    pub async fn identities(&self) -> Result<Vec<Identity>> {
        let mut c = self.pool.acquire().await?;
        identities_c(&mut c).await
    }

    /// One identity configuration.
    pub async fn identity(&self, name: &IdentityName) -> Result<Identity> {
        let row = sqlx::query("SELECT * FROM identities WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no identity configuration {name}: see `tofuflow identity list`"
                ))
            })?;
        identity_from_row(&row)
    }

    /// Removes an identity configuration; returns what it was.
    pub async fn delete_identity(&self, name: &IdentityName) -> Result<Identity> {
        let id = self.identity(name).await?;
        sqlx::query("DELETE FROM identities WHERE name = $1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// Forgets the records of tokens expired for longer than a month.
    pub async fn prune_id_token_records(&self) -> Result<u64> {
        let r = sqlx::query("DELETE FROM id_tokens WHERE expires_ms < $1")
            .bind(now_ms() - ID_TOKEN_RECORD_KEEP_MS)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
