//! The `audit_log` table: the hash chain of audit entries (`crate::audit`), appended to and
//! never changed; listing with filters, and the walk that verifies it.
//!
//! Appends are serialized so the chain never forks: on PostgreSQL by a transaction-scoped
//! advisory lock taken just before the tail is read (several coordinators may share the
//! database; the lock is released by the commit that makes the entry visible), on SQLite by the
//! write transaction itself (one writer at a time). The sequence number is also the primary key,
//! so two appends that somehow read the same tail cannot both commit.

use super::*;
use crate::audit::{AuditEntry, AuditKind, AuditRecord, Verdict};
use crate::runs::RunState;
use tofuflow_proto::audit::{link, Walk};

/// The advisory lock key of audit appends (7700 is the migrations').
const AUDIT_LOCK: i64 = 7701;

/// Entries verified per page.
const PAGE: i64 = 1000;

/// Which entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub run_id: String,
    pub workspace: String,
    pub kind: Option<AuditKind>,
    /// Entries after this sequence number.
    pub since_seq: i64,
    /// At most this many.
    pub limit: i64,
    /// The newest `limit` matching entries (still in sequence order) instead of the oldest.
    pub latest: bool,
}

/// Appends `entries` to the chain, in order, in the transaction `c` (on PostgreSQL after
/// taking the append lock, held until `c` commits).
pub(crate) async fn append_audit(
    c: &mut AnyConnection,
    postgres: bool,
    entries: &[AuditEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    if postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut *c)
            .await?;
    }
    let tail = sqlx::query("SELECT seq, sha256 FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *c)
        .await?;
    let mut prev = match tail {
        Some(r) => Some((i(&r, "seq")?, s(&r, "sha256")?)),
        None => None,
    };
    for e in entries {
        let mut r = e.to_record();
        link(&mut r, prev.as_ref().map(|(q, h)| (*q, h.as_str())));
        sqlx::query("INSERT INTO audit_log (seq, at_ms, kind, actor, workspace, run_id, detail, prev_sha256, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(r.seq)
            .bind(r.at_ms)
            .bind(&r.kind)
            .bind(&r.actor)
            .bind(&r.workspace)
            .bind(&r.run_id)
            .bind(&r.detail)
            .bind(&r.prev_sha256)
            .bind(&r.sha256)
            .execute(&mut *c)
            .await?;
        prev = Some((r.seq, r.sha256));
    }
    Ok(())
}

fn record_of(r: &sqlx::any::AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: i(r, "seq")?,
        at_ms: i(r, "at_ms")?,
        kind: s(r, "kind")?,
        actor: s(r, "actor")?,
        workspace: s(r, "workspace")?,
        run_id: s(r, "run_id")?,
        detail: s(r, "detail")?,
        prev_sha256: s(r, "prev_sha256")?,
        sha256: s(r, "sha256")?,
    })
}

impl Tx {
    /// Appends `entry` to the audit log when this transaction commits, in the same transaction:
    /// the entry exists exactly when what it records does.
    pub fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }
}

impl Store {
    /// Appends `entry` on its own (for events that change nothing else).
    pub async fn audit_now(&self, entry: AuditEntry) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.audit(entry);
        self.commit(tx).await
    }

    /// Entries matching `f`, in sequence order.
    pub async fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let kind = f.kind.map(|k| k.as_str()).unwrap_or_default();
        let order = if f.latest { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT * FROM audit_log WHERE seq > $1 AND ($2 = '' OR run_id = $2) AND ($3 = '' OR workspace = $3) AND ($4 = '' OR kind = $4) ORDER BY seq {order} LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(f.since_seq)
            .bind(&f.run_id)
            .bind(&f.workspace)
            .bind(kind)
            .bind(f.limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows.iter().map(record_of).collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// Walks the whole chain from its first entry, a page at a time, and stops at the first bad
    /// entry.
    pub async fn verify_audit(&self) -> Result<Verdict> {
        let mut walk = Walk::genesis();
        let mut after = 0;
        loop {
            let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await?;
            let page = rows.iter().map(record_of).collect::<Result<Vec<_>>>()?;
            for r in &page {
                // Only a bad hash needs the lookup (a moved entry or an altered one?).
                let origin = if r.expected_sha256() != r.sha256 {
                    self.audit_seq_of(&r.prev_sha256).await?
                } else {
                    None
                };
                if let Err(broken) = walk.step(r, |_| origin) {
                    return Ok(verdict(&walk, Some(broken)));
                }
            }
            match page.last() {
                Some(r) if page.len() as i64 == PAGE => after = r.seq,
                _ => return Ok(verdict(&walk, None)),
            }
        }
    }

    /// The sequence number of the entry whose hash is `sha256`, if one has it.
    async fn audit_seq_of(&self, sha256: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT seq FROM audit_log WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| i(&r, "seq")).transpose()
    }
}

fn verdict(walk: &Walk, broken: Option<tofuflow_proto::audit::Broken>) -> Verdict {
    let (seq, sha) = walk.head();
    Verdict {
        checked: walk.checked,
        head: (seq, sha.to_string()),
        broken,
    }
}

/// The audit entry of a run's state change of `kind` (`AuditKind::of_transition`), with what
/// that kind needs: an apply's plan digest and the state serial before it; when it ends, the
/// serials before and after and the versions it wrote.
pub(crate) async fn transition_entry(
    c: &mut Tx,
    kind: AuditKind,
    run_id: &str,
    to: RunState,
    actor: &str,
    reason: &str,
) -> Result<AuditEntry> {
    let run = sqlx::query("SELECT workspace, plan_digest FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut **c)
        .await?;
    let ws = s(&run, "workspace")?;
    let mut detail = serde_json::json!({"state": to.as_str(), "reason": reason});
    match kind {
        AuditKind::ApplyStarted => {
            detail["plan_digest"] = s(&run, "plan_digest")?.into();
            detail["serial_before"] = serial_before(c, &ws, i64::MAX).await?.into();
        }
        AuditKind::ApplyFinished => {
            let written = versions_of_run(c, &ws, run_id).await?;
            let first = written.first().map_or(i64::MAX, |v| v.0);
            let before = serial_before(c, &ws, first).await?;
            detail["serial_before"] = before.into();
            detail["serial_after"] = written.last().map(|v| v.1).or(before).into();
            detail["versions"] = written.iter().map(|v| v.0).collect::<Vec<_>>().into();
        }
        _ => {}
    }
    Ok(AuditEntry::new(kind, actor)
        .workspace(&ws)
        .run(run_id)
        .detail(detail))
}

/// The serial of the workspace's newest state version below `version` (`None`: no state).
async fn serial_before(c: &mut Tx, workspace: &str, version: i64) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT serial FROM state_versions WHERE workspace = $1 AND version < $2 ORDER BY version DESC LIMIT 1")
        .bind(workspace)
        .bind(version)
        .fetch_optional(&mut **c)
        .await?;
    row.map(|r| i(&r, "serial")).transpose()
}

/// The (version, serial) pairs a run wrote to its workspace, oldest first.
async fn versions_of_run(c: &mut Tx, workspace: &str, run_id: &str) -> Result<Vec<(i64, i64)>> {
    let rows = sqlx::query("SELECT version, serial FROM state_versions WHERE workspace = $1 AND run_id = $2 ORDER BY version")
        .bind(workspace)
        .bind(run_id)
        .fetch_all(&mut **c)
        .await?;
    rows.iter()
        .map(|r| Ok((i(r, "version")?, i(r, "serial")?)))
        .collect()
}
