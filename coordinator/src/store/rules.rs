//! The `workspace_rules` and `pool_rules` tables: which module sources, bundles and pools a
//! workspace glob allows, and which workspaces a pool serves. The decisions are in
//! `lifecycle::rules`.

use super::*;

/// What runs of the workspaces matching `workspaces` must satisfy.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceRule {
    pub workspaces: String,
    pub four_eyes: bool,
    pub sources: Vec<String>,
    pub digests: Vec<String>,
    pub pools: Vec<String>,
    pub updated_by: String,
    pub updated_ms: i64,
}

/// The workspaces a pool serves.
#[derive(Clone, Debug, Default)]
pub struct PoolRule {
    pub pool: String,
    pub workspaces: Vec<String>,
    pub updated_by: String,
    pub updated_ms: i64,
}

fn list(r: &sqlx::any::AnyRow, table: &str, col: &str) -> Result<Vec<String>> {
    json_col(&s(r, col)?, table, col)
}

fn rule_from_row(r: &sqlx::any::AnyRow) -> Result<WorkspaceRule> {
    Ok(WorkspaceRule {
        workspaces: s(r, "workspaces")?,
        four_eyes: i(r, "four_eyes")? != 0,
        sources: list(r, "workspace_rules", "sources")?,
        digests: list(r, "workspace_rules", "digests")?,
        pools: list(r, "workspace_rules", "pools")?,
        updated_by: s(r, "updated_by")?,
        updated_ms: i(r, "updated_ms")?,
    })
}

impl Store {
    /// Creates or replaces the rule for `rule.workspaces`.
    pub async fn set_workspace_rule(&self, rule: &WorkspaceRule) -> Result<()> {
        let j = |v: &Vec<String>| serde_json::to_string(v).map_err(json_err);
        sqlx::query("INSERT INTO workspace_rules (workspaces, four_eyes, sources, digests, pools, updated_by, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (workspaces) DO UPDATE SET four_eyes = excluded.four_eyes, sources = excluded.sources, digests = excluded.digests, pools = excluded.pools, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms")
            .bind(&rule.workspaces)
            .bind(rule.four_eyes as i64)
            .bind(j(&rule.sources)?)
            .bind(j(&rule.digests)?)
            .bind(j(&rule.pools)?)
            .bind(&rule.updated_by)
            .bind(rule.updated_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the rule for `workspaces` and returns it.
    pub async fn delete_workspace_rule(&self, workspaces: &str) -> Result<WorkspaceRule> {
        let rule = self
            .workspace_rules()
            .await?
            .into_iter()
            .find(|r| r.workspaces == workspaces)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no rule for {workspaces} (tofuflow rule list shows them)"
                ))
            })?;
        sqlx::query("DELETE FROM workspace_rules WHERE workspaces = $1")
            .bind(workspaces)
            .execute(&self.pool)
            .await?;
        Ok(rule)
    }

    /// Every workspace rule.
    pub async fn workspace_rules(&self) -> Result<Vec<WorkspaceRule>> {
        let rows = sqlx::query("SELECT * FROM workspace_rules ORDER BY workspaces")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rule_from_row).collect()
    }

    /// Sets the workspaces `rule.pool` serves; an empty list removes the rule.
    pub async fn set_pool_rule(&self, rule: &PoolRule) -> Result<()> {
        if rule.workspaces.is_empty() {
            sqlx::query("DELETE FROM pool_rules WHERE pool = $1")
                .bind(&rule.pool)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        sqlx::query("INSERT INTO pool_rules (pool, workspaces, updated_by, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (pool) DO UPDATE SET workspaces = excluded.workspaces, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms")
            .bind(&rule.pool)
            .bind(serde_json::to_string(&rule.workspaces).map_err(json_err)?)
            .bind(&rule.updated_by)
            .bind(rule.updated_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every pool rule.
    pub async fn pool_rules(&self) -> Result<Vec<PoolRule>> {
        let rows = sqlx::query("SELECT * FROM pool_rules ORDER BY pool")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PoolRule {
                    pool: s(r, "pool")?,
                    workspaces: list(r, "pool_rules", "workspaces")?,
                    updated_by: s(r, "updated_by")?,
                    updated_ms: i(r, "updated_ms")?,
                })
            })
            .collect()
    }
}
