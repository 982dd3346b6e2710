//! The `api_tokens` and `role_grants` tables: users' API tokens (hashed, with expiry, last use
//! and revocation) and the roles they hold on workspace globs.

use super::*;

/// An API token as stored (never the token itself).
#[derive(Clone, Debug)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub description: String,
    pub created_by: String,
    pub created_ms: i64,
    /// 0: never.
    pub expires_ms: i64,
    /// 0: never used.
    pub last_used_ms: i64,
    /// 0: not revoked.
    pub revoked_ms: i64,
}

/// A role held by a user on a workspace glob, as stored.
#[derive(Clone, Debug)]
pub struct RoleGrantRow {
    pub user: String,
    pub role: String,
    pub workspaces: String,
    pub granted_by: String,
    pub granted_ms: i64,
}

/// How often a token's last use is written (at most).
pub const LAST_USED_EVERY_MS: i64 = 60_000;

fn token_from_row(r: &sqlx::any::AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: s(r, "id")?,
        user: s(r, "user_name")?,
        description: s(r, "description")?,
        created_by: s(r, "created_by")?,
        created_ms: i(r, "created_ms")?,
        expires_ms: i0(r, "expires_ms")?,
        last_used_ms: i0(r, "last_used_ms")?,
        revoked_ms: i0(r, "revoked_ms")?,
    })
}

fn grant_from_row(r: &sqlx::any::AnyRow) -> Result<RoleGrantRow> {
    Ok(RoleGrantRow {
        user: s(r, "user_name")?,
        role: s(r, "role")?,
        workspaces: s(r, "workspaces")?,
        granted_by: s(r, "granted_by")?,
        granted_ms: i(r, "granted_ms")?,
    })
}

/// `Some(x)` for a positive time, `None` (NULL, never) for 0.
fn never0(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

impl Store {
    /// Stores a new API token for `user` (its hash only) and returns its row.
    pub async fn create_api_token(
        &self,
        user: &str,
        sha256: &str,
        description: &str,
        created_by: &str,
        expires_ms: i64,
    ) -> Result<ApiToken> {
        let t = ApiToken {
            id: format!("tok_{}", &secret()[..12]),
            user: user.to_string(),
            description: description.to_string(),
            created_by: created_by.to_string(),
            created_ms: now_ms(),
            expires_ms,
            last_used_ms: 0,
            revoked_ms: 0,
        };
        sqlx::query("INSERT INTO api_tokens (id, user_name, sha256, description, created_by, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&t.id)
            .bind(&t.user)
            .bind(sha256)
            .bind(&t.description)
            .bind(&t.created_by)
            .bind(t.created_ms)
            .bind(never0(expires_ms))
            .execute(&self.pool)
            .await?;
        Ok(t)
    }

    /// The token whose hash is `sha256`, if any (revoked and expired ones included), noting
    /// its use (at most once a minute).
    pub async fn use_api_token(&self, sha256: &str) -> Result<Option<ApiToken>> {
        let Some(r) = sqlx::query("SELECT * FROM api_tokens WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let t = token_from_row(&r)?;
        let now = now_ms();
        if t.revoked_ms == 0 && now - t.last_used_ms >= LAST_USED_EVERY_MS {
            sqlx::query("UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(&t.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(t))
    }

    /// One token by id.
    pub async fn api_token(&self, id: &str) -> Result<ApiToken> {
        let r = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("no token {id} (tofuflow token list shows them)"))
            })?;
        token_from_row(&r)
    }

    /// The tokens of `user` (all users' for `None`), newest first.
    pub async fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT * FROM api_tokens WHERE ($1 = '' OR user_name = $1) ORDER BY created_ms DESC, id",
        )
        .bind(user.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token (again is a no-op) and returns it.
    pub async fn revoke_api_token(&self, id: &str) -> Result<ApiToken> {
        sqlx::query("UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.api_token(id).await
    }

    /// Grants `role` on `workspaces` to `user` (again is a no-op).
    pub async fn grant_role(
        &self,
        user: &str,
        role: &str,
        workspaces: &str,
        by: &str,
    ) -> Result<RoleGrantRow> {
        let g = RoleGrantRow {
            user: user.into(),
            role: role.into(),
            workspaces: workspaces.into(),
            granted_by: by.into(),
            granted_ms: now_ms(),
        };
        sqlx::query("INSERT INTO role_grants (user_name, role, workspaces, granted_by, granted_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_name, role, workspaces) DO NOTHING")
            .bind(&g.user)
            .bind(&g.role)
            .bind(&g.workspaces)
            .bind(&g.granted_by)
            .bind(g.granted_ms)
            .execute(&self.pool)
            .await?;
        Ok(g)
    }

    /// Removes a grant; refuses one that does not exist.
    pub async fn revoke_role(&self, user: &str, role: &str, workspaces: &str) -> Result<()> {
        let n = sqlx::query(
            "DELETE FROM role_grants WHERE user_name = $1 AND role = $2 AND workspaces = $3",
        )
        .bind(user)
        .bind(role)
        .bind(workspaces)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Error::NotFound(format!(
                "{user} does not hold {role} on {workspaces} (tofuflow role list shows the grants)"
            )));
        }
        Ok(())
    }

    /// The grants of `user` (everyone's for `None`).
    pub async fn role_grants(&self, user: Option<&str>) -> Result<Vec<RoleGrantRow>> {
        let rows = sqlx::query(
            "SELECT * FROM role_grants WHERE ($1 = '' OR user_name = $1) ORDER BY user_name, workspaces, role",
        )
        .bind(user.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// On a database with no API token and no grant yet, makes `user` an admin on `**` and
    /// stores the hash of its first token; returns the token's id, or `None` when access was
    /// already set up (by this or another coordinator).
    pub async fn bootstrap_admin(&self, user: &str, sha256: &str) -> Result<Option<String>> {
        let mut c = self.pool.begin().await?;
        let used: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM api_tokens) + (SELECT COUNT(*) FROM role_grants) AS n",
        )
        .fetch_one(&mut *c)
        .await?
        .try_get("n")?;
        if used > 0 {
            return Ok(None);
        }
        let now = now_ms();
        let n = sqlx::query("INSERT INTO role_grants (user_name, role, workspaces, granted_by, granted_ms) VALUES ($1, 'admin', '**', 'bootstrap', $2) ON CONFLICT (user_name, role, workspaces) DO NOTHING")
            .bind(user)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let id = format!("tok_{}", &secret()[..12]);
        sqlx::query("INSERT INTO api_tokens (id, user_name, sha256, description, created_by, created_ms) VALUES ($1, $2, $3, 'bootstrap admin token', 'bootstrap', $4)")
            .bind(&id)
            .bind(user)
            .bind(sha256)
            .bind(now)
            .execute(&mut *c)
            .await?;
        c.commit().await?;
        Ok(Some(id))
    }
}
