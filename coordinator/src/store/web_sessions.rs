//! The `web_sessions` table: a browser's session (the SHA-256 of its cookie's id) → the SHA-256
//! of the API token it logged in with, and its expiry. Kept in the database so that every
//! coordinator behind one address knows every session, and a restart logs nobody out.

use super::*;

impl Store {
    /// Records a session (and drops the expired ones).
    pub async fn insert_web_session(
        &self,
        id_sha256: &str,
        token_sha256: &str,
        expires_ms: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_ms <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (id_sha256, token_sha256, expires_ms) VALUES ($1, $2, $3)",
        )
        .bind(id_sha256)
        .bind(token_sha256)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token hash of a live session.
    pub async fn web_session_token(&self, id_sha256: &str, now: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT token_sha256 FROM web_sessions WHERE id_sha256 = $1 AND expires_ms > $2",
        )
        .bind(id_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| s(&r, "token_sha256")).transpose()
    }

    /// Ends a session.
    pub async fn delete_web_session(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
