//! The `webhooks`, `webhook_deliveries` and `webhook_attempts` tables: outgoing notifications.
//! A webhook's signing secret and its URL (often a credential itself, as Slack's incoming-webhook
//! URLs are) are sealed with the state key (no webhook can be stored without one), bound to the
//! webhook's name. A delivery is written in the transaction of the run transition
//! it reports (`webhooks::Hook`), so it exists exactly when the transition does; the delivery
//! loop (`webhooks/deliver.rs`) claims it with a compare-and-set on `claimed_until_ms` (any
//! coordinator may, none sends what another holds), sends it, and records each attempt.

use super::*;
use crate::audit::{AuditEntry, AuditKind};

/// A webhook subscription (never its secret).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub workspaces: Vec<String>,
    /// Event names (`webhooks::EVENTS`).
    pub events: Vec<String>,
    /// `json` or `slack`.
    pub format: String,
    pub enabled: bool,
    /// Whether the URL may point at a loopback, private or link-local address.
    pub allow_private: bool,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A delivery to write: which webhook, what happened, the body as it will be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    pub webhook: String,
    pub event: String,
    pub run_id: String,
    pub workspace: String,
    pub body: String,
}

/// A delivery: its body, where it stands, and its attempts (oldest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub webhook: String,
    pub event: String,
    pub run_id: String,
    pub workspace: String,
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    /// The attempt after which it fails for good.
    pub give_up_after: i64,
    pub next_ms: i64,
    pub created_ms: i64,
    pub done_ms: i64,
    pub tries: Vec<DeliveryAttempt>,
}

/// One attempt to send a delivery and what came of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    pub started_ms: i64,
    pub duration_ms: i64,
    /// The HTTP status answered (0: none, the request failed).
    pub status_code: i64,
    /// The start of the answer's body.
    pub answer_excerpt: String,
    /// Why the request failed (network, timeout, refused address), or empty.
    pub error: String,
}

/// What an attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    Failed,
}

/// A delivery the caller holds the claim of, with what sending it needs.
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret: String,
    pub allow_private: bool,
    pub enabled: bool,
}

/// How many attempts a delivery (or a redelivery) gets.
pub const DELIVERY_ATTEMPTS: i64 = 6;

fn aad(name: &str) -> String {
    format!("webhook:{name}")
}

fn url_aad(name: &str) -> String {
    format!("webhook-url:{name}")
}

fn no_webhook(name: &str) -> Error {
    Error::NotFound(format!(
        "no webhook {name:?} (tofuflow webhook list shows them)"
    ))
}

fn no_delivery(id: &str) -> Error {
    Error::NotFound(format!(
        "no webhook delivery {id:?} (tofuflow webhook show NAME lists a webhook's deliveries)"
    ))
}

/// Writes a delivery in `tx` (the transaction of the transition it reports), due now.
pub(crate) async fn insert_delivery(tx: &mut Tx, d: &NewDelivery, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO webhook_deliveries (id, webhook, event, run_id, workspace, body, state, attempts, give_up_after, next_ms, claimed_by, claimed_until_ms, created_ms, done_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, '', 0, $8, 0)")
        .bind(&d.id)
        .bind(&d.webhook)
        .bind(&d.event)
        .bind(&d.run_id)
        .bind(&d.workspace)
        .bind(&d.body)
        .bind(DELIVERY_ATTEMPTS)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The enabled webhooks, read in `tx`.
pub(crate) async fn enabled_webhooks(tx: &mut Tx) -> Result<Vec<Webhook>> {
    let rows = sqlx::query("SELECT * FROM webhooks WHERE enabled = 1 ORDER BY name")
        .fetch_all(&mut **tx)
        .await?;
    let keys = tx.keys.clone();
    rows.iter().map(|r| webhook_from_row(&keys, r)).collect()
}

impl Store {
    fn seal_secret(&self, name: &str, secret: &str) -> Result<Vec<u8>> {
        if self.keys.current.is_none() {
            return Err(Error::InvalidInput(
                "webhook secrets are stored encrypted and this coordinator has no --state-key: start it with --state-key (make one with `head -c32 /dev/urandom | base64`)".into(),
            ));
        }
        self.keys
            .encrypt(&aad(name), secret.as_bytes())
            .map_err(Error::Internal)
    }

    fn open_secret(&self, name: &str, sealed: &[u8]) -> Result<String> {
        let plain = self
            .keys
            .decrypt(&aad(name), sealed)
            .map_err(|e| Error::Internal(format!("webhook {name}'s secret: {e}")))?;
        String::from_utf8(plain).map_err(|_| Error::Corrupt {
            table: "webhooks",
            column: "sealed_secret",
            detail: "not text".into(),
        })
    }

    /// Creates webhook `w` with `secret` (sealed); refused when the name is taken.
    pub async fn create_webhook(&self, w: &Webhook, secret: &str, by: &str) -> Result<Webhook> {
        let sealed = self.seal_secret(&w.name, secret)?;
        let url = self
            .keys
            .seal_text(&url_aad(&w.name), &w.url)
            .map_err(Error::Internal)?;
        let mut tx = self.begin().await?;
        let now = now_ms();
        let r = sqlx::query("INSERT INTO webhooks (name, url, workspaces, events, format, sealed_secret, enabled, allow_private, created_by, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (name) DO NOTHING")
            .bind(&w.name)
            .bind(url)
            .bind(serde_json::to_string(&w.workspaces).map_err(json_err)?)
            .bind(serde_json::to_string(&w.events).map_err(json_err)?)
            .bind(&w.format)
            .bind(sealed)
            .bind(w.enabled as i64)
            .bind(w.allow_private as i64)
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Err(Error::Conflict(format!(
                "webhook {:?} exists: delete it first (tofuflow webhook delete {})",
                w.name, w.name
            )));
        }
        let detail = serde_json::json!({"webhook": w.name, "url": crate::webhooks::redacted_url(&w.url), "workspaces": w.workspaces, "events": w.events, "format": w.format, "allow_private": w.allow_private});
        tx.audit(AuditEntry::new(AuditKind::WebhookCreated, by).detail(detail));
        self.commit(tx).await?;
        self.webhook(&w.name).await
    }

    /// Deletes webhook `name` with its deliveries and their attempts; returns what it was.
    pub async fn delete_webhook(&self, name: &str, by: &str) -> Result<Webhook> {
        let gone = self.webhook(name).await?;
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook = $1)",
            "DELETE FROM webhook_deliveries WHERE webhook = $1",
            "DELETE FROM webhooks WHERE name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        let detail = serde_json::json!({"webhook": name, "deleted": true});
        tx.audit(AuditEntry::new(AuditKind::WebhookDeleted, by).detail(detail));
        self.commit(tx).await?;
        Ok(gone)
    }

    /// Enables or disables webhook `name` (a disabled one queues nothing; what it had queued
    /// fails when its turn comes).
    pub async fn set_webhook_enabled(
        &self,
        name: &str,
        enabled: bool,
        by: &str,
    ) -> Result<Webhook> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE webhooks SET enabled = $1, updated_ms = $2 WHERE name = $3")
            .bind(enabled as i64)
            .bind(now_ms())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Err(no_webhook(name));
        }
        let detail = serde_json::json!({"webhook": name, "enabled": enabled});
        tx.audit(AuditEntry::new(AuditKind::WebhookChanged, by).detail(detail));
        self.commit(tx).await?;
        self.webhook(name).await
    }

    /// One webhook.
    pub async fn webhook(&self, name: &str) -> Result<Webhook> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_webhook(name))?;
        webhook_from_row(&self.keys, &row)
    }

    /// Every webhook, by name.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| webhook_from_row(&self.keys, r))
            .collect()
    }

    /// The newest `limit` deliveries of webhook `name`, newest first, with their attempts.
    pub async fn webhook_deliveries(&self, name: &str, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE webhook = $1 ORDER BY created_ms DESC, id DESC LIMIT $2",
        )
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut d = delivery_from_row(r)?;
            d.tries = self.delivery_attempts(&d.id).await?;
            out.push(d);
        }
        Ok(out)
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, id: &str) -> Result<Delivery> {
        let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_delivery(id))?;
        let mut d = delivery_from_row(&row)?;
        d.tries = self.delivery_attempts(id).await?;
        Ok(d)
    }

    async fn delivery_attempts(&self, id: &str) -> Result<Vec<DeliveryAttempt>> {
        let rows =
            sqlx::query("SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    attempt: i(r, "attempt")?,
                    started_ms: i(r, "started_ms")?,
                    duration_ms: i(r, "duration_ms")?,
                    status_code: i(r, "status_code")?,
                    answer_excerpt: s(r, "answer_excerpt")?,
                    error: s(r, "error")?,
                })
            })
            .collect()
    }

    /// Queues `d` on its own (a test send; the caller wakes the delivery loop).
    pub async fn queue_delivery(&self, d: &NewDelivery) -> Result<Delivery> {
        let mut tx = self.begin().await?;
        insert_delivery(&mut tx, d, now_ms()).await?;
        self.commit(tx).await?;
        self.delivery(&d.id).await
    }

    /// Sends delivery `id` again, with the same id and body and a fresh set of attempts
    /// (refused while it is still pending).
    pub async fn redeliver(&self, id: &str) -> Result<Delivery> {
        let d = self.delivery(id).await?;
        let r = sqlx::query("UPDATE webhook_deliveries SET state = 'pending', give_up_after = attempts + $1, next_ms = $2, done_ms = 0 WHERE id = $3 AND state <> 'pending'")
            .bind(DELIVERY_ATTEMPTS)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() != 1 {
            return Err(Error::Conflict(format!(
                "delivery {id} is still pending (attempt {} of {}): it is retried on its own",
                d.attempts, d.give_up_after
            )));
        }
        self.delivery(id).await
    }

    /// How many deliveries there are in each state (`pending`, `delivered`, `failed`).
    pub async fn delivery_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM webhook_deliveries GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((s(r, "state")?, i(r, "n")?)))
            .collect()
    }

    /// Ids of pending deliveries due at `now` and not held by anyone, oldest first.
    pub async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_ms <= $1 AND claimed_until_ms < $1 ORDER BY next_ms, id LIMIT $2")
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| s(r, "id")).collect()
    }

    /// When the next pending delivery becomes due (or its claim runs out), if any is pending.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(CASE WHEN claimed_until_ms > next_ms THEN claimed_until_ms ELSE next_ms END) AS due FROM webhook_deliveries WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?)
    }

    /// Claims delivery `id` for `me` until `now + hold_ms`: a compare-and-set, so of several
    /// coordinators exactly one wins; `None` when it is not due, done, or held by another.
    pub async fn claim_delivery(
        &self,
        id: &str,
        me: &str,
        now: i64,
        hold_ms: i64,
    ) -> Result<Option<ClaimedDelivery>> {
        let r = sqlx::query("UPDATE webhook_deliveries SET claimed_by = $1, claimed_until_ms = $2 WHERE id = $3 AND state = 'pending' AND next_ms <= $4 AND claimed_until_ms < $4")
            .bind(me)
            .bind(now + hold_ms)
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT d.*, w.url, w.sealed_secret, w.allow_private, w.enabled FROM webhook_deliveries d JOIN webhooks w ON w.name = d.webhook WHERE d.id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let delivery = delivery_from_row(&row)?;
        let sealed: Vec<u8> = row.try_get("sealed_secret")?;
        Ok(Some(ClaimedDelivery {
            secret: self.open_secret(&delivery.webhook, &sealed)?,
            url: self
                .keys
                .open_text(&url_aad(&delivery.webhook), &s(&row, "url")?)
                .map_err(Error::Internal)?,
            allow_private: i(&row, "allow_private")? != 0,
            enabled: i(&row, "enabled")? != 0,
            delivery,
        }))
    }

    /// Records attempt `a` of delivery `id` and what it leads to, if `me` still holds the
    /// claim (else nothing is written and `false` returned: another coordinator took it over
    /// after the claim ran out, and its attempt counts instead).
    pub async fn record_delivery_attempt(
        &self,
        id: &str,
        me: &str,
        a: &DeliveryAttempt,
        next: AfterAttempt,
    ) -> Result<bool> {
        let (state, next_ms, done_ms) = match next {
            AfterAttempt::Delivered => ("delivered", 0, now_ms()),
            AfterAttempt::RetryAt(at) => ("pending", at, 0),
            AfterAttempt::Failed => ("failed", 0, now_ms()),
        };
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE webhook_deliveries SET state = $1, attempts = $2, next_ms = $3, done_ms = $4, claimed_by = '', claimed_until_ms = 0 WHERE id = $5 AND claimed_by = $6 AND state = 'pending'")
            .bind(state)
            .bind(a.attempt)
            .bind(next_ms)
            .bind(done_ms)
            .bind(id)
            .bind(me)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO webhook_attempts (delivery_id, attempt, started_ms, duration_ms, status_code, answer_excerpt, error) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id)
            .bind(a.attempt)
            .bind(a.started_ms)
            .bind(a.duration_ms)
            .bind(a.status_code)
            .bind(&a.answer_excerpt)
            .bind(&a.error)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Re-seals webhook secrets and URLs under the current state key (rotation at start).
    pub(crate) async fn rotate_webhook_seals(&self) -> Result<u64> {
        let rows = sqlx::query("SELECT name, url, sealed_secret FROM webhooks")
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for r in rows {
            let (name, url) = (s(&r, "name")?, s(&r, "url")?);
            let sealed: Vec<u8> = r.try_get("sealed_secret")?;
            if !self.keys.needs_rotation(&sealed) && !self.keys.text_needs_rotation(&url) {
                continue;
            }
            let secret = self.open_secret(&name, &sealed)?;
            let plain_url = self
                .keys
                .open_text(&url_aad(&name), &url)
                .map_err(Error::Internal)?;
            sqlx::query("UPDATE webhooks SET sealed_secret = $1, url = $2 WHERE name = $3")
                .bind(self.seal_secret(&name, &secret)?)
                .bind(
                    self.keys
                        .seal_text(&url_aad(&name), &plain_url)
                        .map_err(Error::Internal)?,
                )
                .bind(&name)
                .execute(&self.pool)
                .await?;
            n += 1;
        }
        Ok(n)
    }
}

fn webhook_from_row(keys: &crypt::Keys, r: &sqlx::any::AnyRow) -> Result<Webhook> {
    let name = s(r, "name")?;
    Ok(Webhook {
        url: keys
            .open_text(&url_aad(&name), &s(r, "url")?)
            .map_err(Error::Internal)?,
        name,
        workspaces: json_col(&s(r, "workspaces")?, "webhooks", "workspaces")?,
        events: json_col(&s(r, "events")?, "webhooks", "events")?,
        format: s(r, "format")?,
        enabled: i(r, "enabled")? != 0,
        allow_private: i(r, "allow_private")? != 0,
        created_by: s(r, "created_by")?,
        created_ms: i(r, "created_ms")?,
        updated_ms: i(r, "updated_ms")?,
    })
}

fn delivery_from_row(r: &sqlx::any::AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: s(r, "id")?,
        webhook: s(r, "webhook")?,
        event: s(r, "event")?,
        run_id: s(r, "run_id")?,
        workspace: s(r, "workspace")?,
        body: s(r, "body")?,
        state: s(r, "state")?,
        attempts: i(r, "attempts")?,
        give_up_after: i(r, "give_up_after")?,
        next_ms: i(r, "next_ms")?,
        created_ms: i(r, "created_ms")?,
        done_ms: i(r, "done_ms")?,
        tries: Vec::new(),
    })
}
