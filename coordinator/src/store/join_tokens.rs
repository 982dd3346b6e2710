//! The `join_tokens` table: tokens an agent exchanges, once, for its own identity. Stored
//! hashed, valid for some pools until they expire or are revoked; one token may enrol many
//! agents (a fleet started from one template).

use super::*;

/// A join token as stored (never the token itself).
#[derive(Clone, Debug)]
pub struct JoinToken {
    pub id: String,
    pub pools: Vec<String>,
    pub created_by: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// 0: not revoked.
    pub revoked_ms: i64,
}

fn join_token_from_row(r: &sqlx::any::AnyRow) -> Result<JoinToken> {
    Ok(JoinToken {
        id: s(r, "id")?,
        pools: json_col(&s(r, "pools")?, "join_tokens", "pools")?,
        created_by: s(r, "created_by")?,
        created_ms: i(r, "created_ms")?,
        expires_ms: i(r, "expires_ms")?,
        revoked_ms: i0(r, "revoked_ms")?,
    })
}

impl Store {
    /// Stores a join token's hash, valid for `pools` until `expires_ms`.
    pub async fn create_join_token(
        &self,
        sha256: &str,
        pools: &[String],
        created_by: &str,
        expires_ms: i64,
    ) -> Result<JoinToken> {
        let t = JoinToken {
            id: format!("join_{}", &secret()[..12]),
            pools: pools.to_vec(),
            created_by: created_by.into(),
            created_ms: now_ms(),
            expires_ms,
            revoked_ms: 0,
        };
        sqlx::query("INSERT INTO join_tokens (id, sha256, pools, created_by, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&t.id)
            .bind(sha256)
            .bind(serde_json::to_string(pools).map_err(json_err)?)
            .bind(&t.created_by)
            .bind(t.created_ms)
            .bind(t.expires_ms)
            .execute(&self.pool)
            .await?;
        Ok(t)
    }

    /// The join token whose hash is `sha256`, if any (expired and revoked ones included).
    pub async fn join_token_by_hash(&self, sha256: &str) -> Result<Option<JoinToken>> {
        let r = sqlx::query("SELECT * FROM join_tokens WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(join_token_from_row).transpose()
    }

    /// Every join token, newest first.
    pub async fn join_tokens(&self) -> Result<Vec<JoinToken>> {
        let rows = sqlx::query("SELECT * FROM join_tokens ORDER BY created_ms DESC, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(join_token_from_row).collect()
    }

    /// Revokes a join token (agents that already joined keep their identity).
    pub async fn revoke_join_token(&self, id: &str) -> Result<JoinToken> {
        sqlx::query("UPDATE join_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        let r = sqlx::query("SELECT * FROM join_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no join token {id} (tofuflow agent join-token list shows them)"
                ))
            })?;
        join_token_from_row(&r)
    }
}
