//! The `blobs` table: content-addressed bundles and plan files (sealed with the state key).

use super::*;

impl Store {
    /// Stores a blob under its SHA-256; returns true if it was already there.
    pub async fn put_blob(&self, data: &[u8]) -> Result<(String, bool)> {
        let digest = format!("sha256:{}", sha256_hex(data));
        let sealed = self.keys.encrypt(&digest, data).map_err(Error::Internal)?;
        let r = sqlx::query("INSERT INTO blobs (digest, size, data, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING")
            .bind(&digest)
            .bind(data.len() as i64)
            .bind(sealed)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok((digest, r.rows_affected() == 0))
    }

    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let row = sqlx::query("SELECT data FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no blob {digest}: upload the bundle first")))?;
        self.keys
            .decrypt(digest, &row.try_get::<Vec<u8>, _>("data")?)
            .map_err(Error::Internal)
    }

    pub async fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT digest FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Re-encrypts blobs (bundles, plans) not under the current key, one at a time.
    pub(crate) async fn rotate_blobs(&self) -> Result<u64> {
        let digests = sqlx::query("SELECT digest FROM blobs")
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for d in digests {
            let digest = s(&d, "digest")?;
            let row = sqlx::query("SELECT data FROM blobs WHERE digest = $1")
                .bind(&digest)
                .fetch_one(&self.pool)
                .await?;
            let data = row.try_get::<Vec<u8>, _>("data")?;
            if !self.keys.needs_rotation(&data) {
                continue;
            }
            let plain = self.keys.decrypt(&digest, &data).map_err(Error::Internal)?;
            let fresh = self
                .keys
                .encrypt(&digest, &plain)
                .map_err(Error::Internal)?;
            sqlx::query("UPDATE blobs SET data = $1 WHERE digest = $2")
                .bind(fresh)
                .bind(&digest)
                .execute(&self.pool)
                .await?;
            n += 1;
        }
        Ok(n)
    }
}
