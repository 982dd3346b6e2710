//! The `connections` and `connection_versions` tables: named credential sets (environment
//! variables and files) attached to workspace globs. Values are sealed with the state key (a
//! connection cannot be stored without one), bound to the connection and version; a new
//! version erases the values of the ones before it (their names and authors stay). A claim
//! takes the current version of every connection whose globs match the task's workspace, in
//! the claim's transaction, and records that in the audit log.

use super::*;
use crate::audit::{AuditEntry, AuditKind};
use crate::auth::WorkspaceGlob;

/// A connection's values.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionValues {
    pub env: BTreeMap<String, String>,
    /// The variable that names the file's path → the file's content (base64 when stored).
    #[serde(with = "b64_map")]
    pub files: BTreeMap<String, Vec<u8>>,
    /// Keys whose values are not secret.
    pub plain: Vec<String>,
}

/// One key of a connection, without its value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionKey {
    pub name: String,
    pub file: bool,
    pub plain: bool,
}

/// A version's record: who made it, when, with which keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionVersion {
    pub version: i64,
    pub created_by: String,
    pub created_ms: i64,
    pub keys: Vec<ConnectionKey>,
}

/// A connection as shown: globs, keys, history; values only for plain keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Connection {
    pub name: String,
    pub workspaces: Vec<String>,
    /// The phases whose tasks receive it.
    pub phases: Vec<Phase>,
    pub description: String,
    pub version: i64,
    pub keys: Vec<ConnectionKey>,
    pub plain_values: BTreeMap<String, String>,
    /// Newest first.
    pub versions: Vec<ConnectionVersion>,
    pub updated_by: String,
    pub updated_ms: i64,
    pub last_used_ms: i64,
}

/// What a task receives of one connection.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantedConnection {
    pub name: String,
    pub version: i64,
    pub values: ConnectionValues,
}

mod b64_map {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let e = base64::engine::general_purpose::STANDARD;
        s.collect_map(m.iter().map(|(k, v)| (k, e.encode(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let e = base64::engine::general_purpose::STANDARD;
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, e.decode(v).map_err(serde::de::Error::custom)?)))
            .collect()
    }
}

impl ConnectionValues {
    /// The keys, without values: variables then files, each sorted.
    pub fn keys(&self) -> Vec<ConnectionKey> {
        let key = |name: &String, file| ConnectionKey {
            name: name.clone(),
            file,
            plain: self.plain.contains(name),
        };
        self.env
            .keys()
            .map(|k| key(k, false))
            .chain(self.files.keys().map(|k| key(k, true)))
            .collect()
    }

    /// Checks keys and values (see `tofuflow_proto::connections`).
    pub fn check(&self) -> Result<()> {
        tofuflow_proto::connections::check_values(&self.env, &self.files, &self.plain)
            .map_err(Error::InvalidInput)
    }

    /// `update`'s keys replace or add to these, `remove` drops keys; plain marks follow the
    /// update for the keys it gives.
    pub fn merged(&self, update: &ConnectionValues, remove: &[String]) -> Result<ConnectionValues> {
        let mut out = self.clone();
        for k in remove {
            if out.env.remove(k).is_none() && out.files.remove(k).is_none() {
                return Err(Error::InvalidInput(format!(
                    "--remove {k}: the connection has no key {k} (connection show lists them)"
                )));
            }
        }
        for (k, v) in &update.env {
            out.files.remove(k);
            out.env.insert(k.clone(), v.clone());
        }
        for (k, v) in &update.files {
            out.env.remove(k);
            out.files.insert(k.clone(), v.clone());
        }
        let given: Vec<&String> = update.env.keys().chain(update.files.keys()).collect();
        out.plain
            .retain(|p| !given.contains(&p) && !remove.contains(p));
        out.plain.extend(update.plain.iter().cloned());
        out.plain.sort();
        out.plain.dedup();
        Ok(out)
    }
}

/// What the sealed values are bound to.
fn aad(name: &str, version: i64) -> String {
    format!("connection:{name}:{version}")
}

fn no_connection(name: &str) -> Error {
    Error::NotFound(format!(
        "no connection {name:?} (tofuflow connection list shows them)"
    ))
}

impl Store {
    fn seal_values(&self, name: &str, version: i64, v: &ConnectionValues) -> Result<Vec<u8>> {
        if self.keys.current.is_none() {
            return Err(Error::InvalidInput(
                "connections are stored encrypted and this coordinator has no --state-key: start it with --state-key (make one with `head -c32 /dev/urandom | base64`)".into(),
            ));
        }
        let plain = serde_json::to_vec(v).map_err(json_err)?;
        self.keys
            .encrypt(&aad(name, version), &plain)
            .map_err(Error::Internal)
    }

    fn open_values(&self, name: &str, version: i64, sealed: &[u8]) -> Result<ConnectionValues> {
        let plain = self
            .keys
            .decrypt(&aad(name, version), sealed)
            .map_err(|e| Error::Internal(format!("connection {name} version {version}: {e}")))?;
        serde_json::from_slice(&plain).map_err(json_err)
    }

    /// Creates `name`, or replaces its globs, description and all its values (a new version).
    pub async fn set_connection(
        &self,
        c: &Connection,
        values: &ConnectionValues,
        by: &str,
    ) -> Result<Connection> {
        values.check()?;
        let mut tx = self.begin().await?;
        let version = current_version(&mut tx, &c.name).await?.unwrap_or(0) + 1;
        let now = now_ms();
        let globs = serde_json::to_string(&c.workspaces).map_err(json_err)?;
        let mut phases: Vec<&str> = c.phases.iter().map(|p| p.as_str()).collect();
        if phases.is_empty() {
            phases = vec![Phase::Plan.as_str(), Phase::Apply.as_str()];
        }
        sqlx::query("INSERT INTO connections (name, workspaces, phases, description, version, updated_by, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET workspaces = excluded.workspaces, phases = excluded.phases, description = excluded.description, version = excluded.version, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms")
            .bind(&c.name)
            .bind(globs)
            .bind(serde_json::to_string(&phases).map_err(json_err)?)
            .bind(&c.description)
            .bind(version)
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        self.add_version(&mut tx, &c.name, version, values, by, now)
            .await?;
        let detail = serde_json::json!({"connection": c.name, "version": version, "workspaces": c.workspaces, "keys": key_names(values)});
        tx.audit(AuditEntry::new(AuditKind::ConnectionChanged, by).detail(detail));
        self.commit(tx).await?;
        self.connection(&c.name).await
    }

    /// New values for some keys of `name` (the others kept), or keys removed: a new version.
    pub async fn rotate_connection(
        &self,
        name: &str,
        update: &ConnectionValues,
        remove: &[String],
        by: &str,
    ) -> Result<Connection> {
        let mut tx = self.begin().await?;
        let version = current_version(&mut tx, name)
            .await?
            .ok_or_else(|| no_connection(name))?;
        let row = sqlx::query(
            "SELECT sealed_values FROM connection_versions WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        let current =
            self.open_values(name, version, &row.try_get::<Vec<u8>, _>("sealed_values")?)?;
        let values = current.merged(update, remove)?;
        values.check()?;
        let now = now_ms();
        sqlx::query(
            "UPDATE connections SET version = $1, updated_by = $2, updated_ms = $3 WHERE name = $4",
        )
        .bind(version + 1)
        .bind(by)
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        self.add_version(&mut tx, name, version + 1, &values, by, now)
            .await?;
        let detail = serde_json::json!({"connection": name, "version": version + 1, "rotated": key_names(update), "removed": remove});
        tx.audit(AuditEntry::new(AuditKind::ConnectionChanged, by).detail(detail));
        self.commit(tx).await?;
        self.connection(name).await
    }

    /// Stores `values` as `version` of `name` and erases the values of every older version.
    async fn add_version(
        &self,
        tx: &mut Tx,
        name: &str,
        version: i64,
        values: &ConnectionValues,
        by: &str,
        now: i64,
    ) -> Result<()> {
        let keys = serde_json::to_string(&values.keys()).map_err(json_err)?;
        sqlx::query("INSERT INTO connection_versions (name, version, keys, sealed_values, created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(name)
            .bind(version)
            .bind(keys)
            .bind(self.seal_values(name, version, values)?)
            .bind(by)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE connection_versions SET sealed_values = $1 WHERE name = $2 AND version < $3",
        )
        .bind(Vec::<u8>::new())
        .bind(name)
        .bind(version)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Removes `name` and every version of it; returns what it was.
    pub async fn delete_connection(&self, name: &str, by: &str) -> Result<Connection> {
        let gone = self.connection(name).await?;
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM connection_versions WHERE name = $1",
            "DELETE FROM connections WHERE name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        let detail =
            serde_json::json!({"connection": name, "deleted": true, "version": gone.version});
        tx.audit(AuditEntry::new(AuditKind::ConnectionChanged, by).detail(detail));
        self.commit(tx).await?;
        Ok(gone)
    }

    /// One connection, with its history and its plain values.
    pub async fn connection(&self, name: &str) -> Result<Connection> {
        let row = sqlx::query("SELECT * FROM connections WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_connection(name))?;
        let mut c = connection_from_row(&row)?;
        let rows =
            sqlx::query("SELECT * FROM connection_versions WHERE name = $1 ORDER BY version DESC")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        for r in &rows {
            let v = version_from_row(r)?;
            if v.version == c.version {
                let values =
                    self.open_values(name, v.version, &r.try_get::<Vec<u8>, _>("sealed_values")?)?;
                c.plain_values = plain_values(&values);
                c.keys = v.keys.clone();
            }
            c.versions.push(v);
        }
        Ok(c)
    }

    /// Every connection (without history), by name; those a task of `workspace` would
    /// receive when it is given.
    pub async fn connections(&self, workspace: Option<&str>) -> Result<Vec<Connection>> {
        let rows = sqlx::query("SELECT c.*, v.keys FROM connections c JOIN connection_versions v ON v.name = c.name AND v.version = c.version ORDER BY c.name")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let mut c = connection_from_row(r)?;
            if workspace.is_some_and(|ws| !matches(&c.workspaces, ws)) {
                continue;
            }
            c.keys = json_col(&s(r, "keys")?, "connection_versions", "keys")?;
            out.push(c);
        }
        Ok(out)
    }

    /// The current values of every connection attached to `run.workspace`, for the task a
    /// claim is granting: read in the claim's transaction, recorded (audit, last use) with it.
    /// Ordered so that a later connection's key wins: less specific globs first, then by name.
    pub(crate) async fn grant_connections(
        &self,
        tx: &mut Tx,
        run: &Run,
        task: &Task,
        agent_id: &str,
    ) -> Result<Vec<GrantedConnection>> {
        let rows = sqlx::query("SELECT c.name, c.workspaces, c.phases, c.version, v.sealed_values FROM connections c JOIN connection_versions v ON v.name = c.name AND v.version = c.version")
            .fetch_all(&mut **tx)
            .await?;
        let mut found = Vec::new();
        for r in &rows {
            let globs: Vec<String> = json_col(&s(r, "workspaces")?, "connections", "workspaces")?;
            let Some(rank) = best_match(&globs, &run.workspace) else {
                continue;
            };
            if !phases_of(r)?.contains(&task.phase) {
                continue;
            }
            let (name, version) = (s(r, "name")?, i(r, "version")?);
            let values =
                self.open_values(&name, version, &r.try_get::<Vec<u8>, _>("sealed_values")?)?;
            found.push((
                rank,
                GrantedConnection {
                    name,
                    version,
                    values,
                },
            ));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let now = now_ms();
        for (_, g) in &found {
            sqlx::query("UPDATE connections SET last_used_ms = $1 WHERE name = $2")
                .bind(now)
                .bind(&g.name)
                .execute(&mut **tx)
                .await?;
            let detail = serde_json::json!({"connection": g.name, "version": g.version, "task_id": task.id, "phase": task.phase.as_str(), "agent_id": agent_id, "keys": key_names(&g.values)});
            tx.audit(
                AuditEntry::new(AuditKind::ConnectionRead, agent_id)
                    .workspace(&run.workspace)
                    .run(&run.id)
                    .detail(detail),
            );
        }
        let mut granted: Vec<GrantedConnection> = found.into_iter().map(|(_, g)| g).collect();
        granted.extend(self.grant_run_env(tx, run, task, agent_id).await?);
        Ok(granted)
    }

    /// The run's own environment variables, as the connection `run` (last: it wins a key it
    /// shares with a workspace connection); audited like a connection read.
    async fn grant_run_env(
        &self,
        tx: &mut Tx,
        run: &Run,
        task: &Task,
        agent_id: &str,
    ) -> Result<Option<GrantedConnection>> {
        let row = sqlx::query("SELECT run_env FROM runs WHERE id = $1")
            .bind(&run.id)
            .fetch_one(&mut **tx)
            .await?;
        let sealed = s(&row, "run_env")?;
        if sealed.is_empty() {
            return Ok(None);
        }
        let json = self
            .keys
            .open_text(&run_aad(&run.id), &sealed)
            .map_err(Error::Internal)?;
        let values: ConnectionValues = serde_json::from_str(&json).map_err(json_err)?;
        let detail = serde_json::json!({"connection": "run", "version": 0, "task_id": task.id, "phase": task.phase.as_str(), "agent_id": agent_id, "keys": key_names(&values)});
        tx.audit(
            AuditEntry::new(AuditKind::ConnectionRead, agent_id)
                .workspace(&run.workspace)
                .run(&run.id)
                .detail(detail),
        );
        Ok(Some(GrantedConnection {
            name: "run".into(),
            version: 0,
            values,
        }))
    }

    /// Re-seals current values under the current state key (rotation at start).
    pub(crate) async fn rotate_connection_seals(&self) -> Result<u64> {
        let rows = sqlx::query("SELECT name, version, sealed_values FROM connection_versions")
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for r in rows {
            let (name, version) = (s(&r, "name")?, i(&r, "version")?);
            let sealed = r.try_get::<Vec<u8>, _>("sealed_values")?;
            if sealed.is_empty() || !self.keys.needs_rotation(&sealed) {
                continue;
            }
            let values = self.open_values(&name, version, &sealed)?;
            sqlx::query("UPDATE connection_versions SET sealed_values = $1 WHERE name = $2 AND version = $3")
                .bind(self.seal_values(&name, version, &values)?)
                .bind(&name)
                .bind(version)
                .execute(&self.pool)
                .await?;
            n += 1;
        }
        Ok(n)
    }
}

async fn current_version(tx: &mut Tx, name: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT version FROM connections WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| i(&r, "version")).transpose()
}

fn key_names(v: &ConnectionValues) -> Vec<String> {
    v.keys().into_iter().map(|k| k.name).collect()
}

fn plain_values(v: &ConnectionValues) -> BTreeMap<String, String> {
    v.plain
        .iter()
        .filter_map(|k| {
            let value = v.env.get(k).cloned().or_else(|| {
                v.files
                    .get(k)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
            })?;
            Some((k.clone(), value))
        })
        .collect()
}

/// How specifically `globs` match `workspace` (higher is more specific), if at all: the
/// number of literal characters of the best matching glob.
fn best_match(globs: &[String], workspace: &str) -> Option<usize> {
    globs
        .iter()
        .filter_map(|g| WorkspaceGlob::parse(g).ok())
        .filter(|g| g.matches(workspace))
        .map(|g| g.as_str().chars().filter(|c| *c != '*').count())
        .max()
}

fn matches(globs: &[String], workspace: &str) -> bool {
    best_match(globs, workspace).is_some()
}

fn phases_of(r: &sqlx::any::AnyRow) -> Result<Vec<Phase>> {
    let names: Vec<String> = json_col(&s(r, "phases")?, "connections", "phases")?;
    names
        .iter()
        .map(|p| p.parse().map_err(Error::Internal))
        .collect()
}

fn connection_from_row(r: &sqlx::any::AnyRow) -> Result<Connection> {
    Ok(Connection {
        phases: phases_of(r)?,
        name: s(r, "name")?,
        workspaces: json_col(&s(r, "workspaces")?, "connections", "workspaces")?,
        description: s(r, "description")?,
        version: i(r, "version")?,
        updated_by: s(r, "updated_by")?,
        updated_ms: i(r, "updated_ms")?,
        last_used_ms: i(r, "last_used_ms")?,
        ..Connection::default()
    })
}

fn version_from_row(r: &sqlx::any::AnyRow) -> Result<ConnectionVersion> {
    Ok(ConnectionVersion {
        version: i(r, "version")?,
        created_by: s(r, "created_by")?,
        created_ms: i(r, "created_ms")?,
        keys: json_col(&s(r, "keys")?, "connection_versions", "keys")?,
    })
}
