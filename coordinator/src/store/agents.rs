//! The `agents` table: registered agents, their pools, labels and secret hash.

use super::*;

/// An agent's registration.
#[derive(Clone, Copy)]
pub struct NewAgent<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub pools: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    pub capacity: u32,
    /// The hash of the secret the agent authenticates with.
    pub secret_sha256: &'a str,
    pub credential_expires_ms: i64,
}

/// What authenticates a registered agent.
#[derive(Clone, Debug)]
pub struct AgentCredential {
    pub secret_sha256: String,
    pub pools: Vec<String>,
    /// 0: not revoked.
    pub revoked_ms: i64,
    /// When the credential stops working unless a heartbeat renews it (0: never).
    pub expires_ms: i64,
}

pub struct Agent {
    pub id: String,
    pub name: String,
    pub pools: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub capacity: i64,
    pub state: String,
    pub last_seen_ms: i64,
    pub running: i64,
    /// When an admin revoked the agent (0: not revoked).
    pub revoked_ms: i64,
}

/// Whether `agent_id` is registered for `pool` (and not revoked).
pub(crate) async fn agent_serves(
    c: &mut AnyConnection,
    agent_id: &str,
    pool: &str,
) -> Result<bool> {
    let Some(row) = sqlx::query("SELECT pools FROM agents WHERE id = $1 AND revoked_ms IS NULL")
        .bind(agent_id)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(false);
    };
    let pools: Vec<String> = serde_json::from_str(&s(&row, "pools")?).map_err(|e| {
        Error::Internal(format!(
            "agents.pools of agent {agent_id} is not a JSON list: {e}"
        ))
    })?;
    Ok(pools.iter().any(|p| p == pool))
}

/// "name (id)" for an agent, as the audit trail shows it.
pub(crate) async fn agent_label(c: &mut AnyConnection, agent_id: &str) -> Result<String> {
    let row = sqlx::query("SELECT name FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(match row {
        Some(r) => format!("{} ({agent_id})", s(&r, "name")?),
        None => agent_id.to_string(),
    })
}

impl Store {
    /// Registers an agent, or updates its registration (not a revoked one's).
    pub async fn register_agent(&self, a: &NewAgent<'_>) -> Result<()> {
        let NewAgent {
            id,
            name,
            pools,
            labels,
            capacity,
            secret_sha256,
            credential_expires_ms,
        } = *a;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (id, name, pools, labels, capacity, state, registered_ms, last_seen_ms, secret_sha256, credential_expires_ms) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, pools = excluded.pools, labels = excluded.labels, capacity = excluded.capacity, state = 'active', last_seen_ms = excluded.last_seen_ms, secret_sha256 = excluded.secret_sha256, credential_expires_ms = excluded.credential_expires_ms \
             WHERE agents.revoked_ms IS NULL",
        )
        .bind(id)
        .bind(name)
        .bind(serde_json::to_string(pools).unwrap_or_default())
        .bind(serde_json::to_string(labels).unwrap_or_default())
        .bind(capacity as i64)
        .bind(now)
        .bind(now)
        .bind(secret_sha256)
        .bind(credential_expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A registered agent's credential, if the agent is known.
    pub async fn agent_credential(&self, id: &str) -> Result<Option<AgentCredential>> {
        let Some(r) = sqlx::query(
            "SELECT secret_sha256, pools, revoked_ms, credential_expires_ms FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(AgentCredential {
            secret_sha256: s(&r, "secret_sha256")?,
            pools: json_col(&s(&r, "pools")?, "agents", "pools")?,
            revoked_ms: i0(&r, "revoked_ms")?,
            expires_ms: i0(&r, "credential_expires_ms")?,
        }))
    }

    /// Revokes an agent: its identity stops working, and the leases it holds expire now so
    /// the reaper fails them over. Returns the agent.
    pub async fn revoke_agent(&self, id: &str) -> Result<Agent> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE agents SET revoked_ms = $1, state = 'revoked' WHERE id = $2 AND revoked_ms IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            sqlx::query(
                "UPDATE tasks SET lease_expires_ms = $1 WHERE agent_id = $2 AND state = 'running'",
            )
            .bind(now - 1)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.agents()
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| {
                Error::NotFound(format!("no agent {id} (tofuflow agent list shows them)"))
            })
    }

    pub async fn agents(&self) -> Result<Vec<Agent>> {
        let rows = sqlx::query("SELECT a.*, (SELECT COUNT(*) FROM tasks t WHERE t.agent_id = a.id AND t.state = 'running') AS running FROM agents a ORDER BY a.name, a.id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Agent {
                    id: s(r, "id")?,
                    name: s(r, "name")?,
                    pools: serde_json::from_str(&s(r, "pools")?).unwrap_or_default(),
                    labels: serde_json::from_str(&s(r, "labels")?).unwrap_or_default(),
                    capacity: i(r, "capacity")?,
                    state: s(r, "state")?,
                    last_seen_ms: i(r, "last_seen_ms")?,
                    running: i(r, "running")?,
                    revoked_ms: i0(r, "revoked_ms")?,
                })
            })
            .collect()
    }
}
