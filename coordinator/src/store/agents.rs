//! The `agents` table: registered agents, their pools, labels and secret hash.

use super::*;

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

/// Whether `agent_id` is registered for `pool`.
pub(crate) async fn agent_serves(
    c: &mut AnyConnection,
    agent_id: &str,
    pool: &str,
) -> Result<bool> {
    let Some(row) = sqlx::query("SELECT pools FROM agents WHERE id = $1")
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
    pub async fn register_agent(
        &self,
        id: &str,
        name: &str,
        pools: &[String],
        labels: &BTreeMap<String, String>,
        capacity: u32,
        secret_sha256: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (id, name, pools, labels, capacity, state, registered_ms, last_seen_ms, secret_sha256) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, pools = excluded.pools, labels = excluded.labels, capacity = excluded.capacity, state = 'active', last_seen_ms = excluded.last_seen_ms, secret_sha256 = excluded.secret_sha256",
        )
        .bind(id)
        .bind(name)
        .bind(serde_json::to_string(pools).unwrap_or_default())
        .bind(serde_json::to_string(labels).unwrap_or_default())
        .bind(capacity as i64)
        .bind(now)
        .bind(now)
        .bind(secret_sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A registered agent's secret hash and pools, if the agent is known.
    pub async fn agent_credential(&self, id: &str) -> Result<Option<(String, Vec<String>)>> {
        let Some(r) = sqlx::query("SELECT secret_sha256, pools FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let pools = serde_json::from_str(&s(&r, "pools")?).map_err(|e| {
            Error::Internal(format!(
                "agents.pools of agent {id} is not a JSON list: {e}"
            ))
        })?;
        Ok(Some((s(&r, "secret_sha256")?, pools)))
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
