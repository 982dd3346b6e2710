//! `tofuflow audit`: list the audit log, export it as JSON lines (for a SIEM, or to verify
//! elsewhere), and verify its hash chain, on the coordinator or in an exported file offline.

use super::Ctx;
use crate::output::{date, detail};
use clap::Subcommand;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tofuflow_proto::audit::{canonical_json, Record, Walk};
use tofuflow_proto::v1;

/// The exit code of a chain that does not verify.
pub const BROKEN: u8 = 3;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// List audit entries (the newest, oldest first): who did what, to which workspace and run.
    List {
        /// Only entries about this run.
        #[arg(long)]
        run: Option<String>,
        /// Only entries about this workspace.
        #[arg(long)]
        workspace: Option<String>,
        /// Only entries of this kind (run_submitted, run_approved, apply_started,
        /// apply_finished, state_locked, auth_failed, ...).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Print every entry after --since as one JSON object per line, hashes included, oldest
    /// first: for a SIEM, or for `audit verify --file`.
    Export {
        /// Only entries after this sequence number (0: all).
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
    /// Verify the hash chain on the coordinator, or in an exported file (offline, no
    /// coordinator needed). Exits with 3 and names the first bad entry when it does not verify.
    Verify {
        /// An export (`tofuflow audit export > audit.jsonl`) to verify instead.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

impl AuditCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            AuditCmd::List {
                run,
                workspace,
                kind,
                limit,
            } => {
                let req = v1::ListAuditRequest {
                    run_id: run.unwrap_or_default(),
                    workspace: workspace.unwrap_or_default(),
                    kind: kind.unwrap_or_default(),
                    limit,
                    latest: true,
                    actor: ctx.who.clone(),
                    ..Default::default()
                };
                list(ctx, req).await
            }
            AuditCmd::Export { since } => export(ctx, since).await,
            AuditCmd::Verify { file: Some(f) } => verify_file(&f, ctx.json),
            AuditCmd::Verify { file: None } => verify(ctx).await,
        }
    }
}

/// An entry as a JSON line: every field, the detail as an object.
fn entry_json(e: &v1::AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq, "unix_ms": e.unix_ms, "kind": e.kind, "actor": e.actor,
        "workspace": e.workspace, "run_id": e.run_id, "detail": detail(&e.detail_json),
        "prev_sha256": e.prev_sha256, "sha256": e.sha256,
    })
}

async fn list(ctx: &mut Ctx, req: v1::ListAuditRequest) -> Result<u8, String> {
    let r = ctx
        .client
        .list_audit(req)
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    if ctx.json {
        let all: Vec<_> = r.entries.iter().map(entry_json).collect();
        crate::output::print_json(&serde_json::Value::Array(all));
        return Ok(0);
    }
    println!(
        "{:>6}  {:<24}  {:<20}  {:<12}  {:<20}  {:<36}  DETAIL",
        "SEQ", "AT", "KIND", "ACTOR", "WORKSPACE", "RUN"
    );
    for e in &r.entries {
        println!(
            "{:>6}  {:<24}  {:<20}  {:<12}  {:<20}  {:<36}  {}",
            e.seq,
            date(e.unix_ms),
            e.kind,
            if e.actor.is_empty() { "-" } else { &e.actor },
            if e.workspace.is_empty() {
                "-"
            } else {
                &e.workspace
            },
            if e.run_id.is_empty() { "-" } else { &e.run_id },
            e.detail_json
        );
    }
    Ok(0)
}

/// Pages through the log after `since`, one JSON line per entry.
async fn export(ctx: &mut Ctx, since: i64) -> Result<u8, String> {
    let mut after = since;
    loop {
        let req = v1::ListAuditRequest {
            since_seq: after,
            limit: 1000,
            actor: ctx.who.clone(),
            ..Default::default()
        };
        let page = ctx
            .client
            .list_audit(req)
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner()
            .entries;
        for e in &page {
            println!("{}", entry_json(e));
        }
        match page.last() {
            Some(e) if page.len() == 1000 => after = e.seq,
            _ => return Ok(0),
        }
    }
}

async fn verify(ctx: &mut Ctx) -> Result<u8, String> {
    let v = ctx
        .client
        .verify_audit(v1::VerifyAuditRequest {
            actor: ctx.who.clone(),
        })
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    let bad = (!v.ok).then_some((v.bad_seq, v.reason.as_str()));
    Ok(report(
        ctx.json,
        v.checked,
        (v.head_seq, &v.head_sha256),
        bad,
        "the coordinator's audit log",
    ))
}

/// Verifies an exported file without a coordinator; returns the exit code.
pub fn verify_file(path: &Path, json: bool) -> Result<u8, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut records = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match record_of(line) {
            Some(r) => records.push(r),
            None => {
                let why = format!("line {} is not an audit entry", n + 1);
                return Ok(report(
                    json,
                    0,
                    (0, ""),
                    Some((0, &why)),
                    &path.display().to_string(),
                ));
            }
        }
    }
    let by_hash: HashMap<&str, i64> = records.iter().map(|r| (r.sha256.as_str(), r.seq)).collect();
    let mut walk = match records.first() {
        Some(r) if r.seq > 1 => Walk::from(r),
        _ => Walk::genesis(),
    };
    for r in &records {
        if let Err(b) = walk.step(r, |h| by_hash.get(h).copied()) {
            let (seq, sha) = walk.head();
            let what = path.display().to_string();
            return Ok(report(
                json,
                walk.checked,
                (seq, sha),
                Some((b.seq(), &b.reason())),
                &what,
            ));
        }
    }
    let (seq, sha) = walk.head();
    Ok(report(
        json,
        walk.checked,
        (seq, sha),
        None,
        &path.display().to_string(),
    ))
}

/// One exported line as the record it was hashed as (the detail as canonical text).
fn record_of(line: &str) -> Option<Record> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let detail = match v.get("detail")? {
        serde_json::Value::String(s) => s.clone(),
        other => canonical_json(other),
    };
    Some(Record {
        seq: v.get("seq")?.as_i64()?,
        at_ms: v.get("unix_ms")?.as_i64()?,
        kind: text("kind")?,
        actor: text("actor")?,
        workspace: text("workspace")?,
        run_id: text("run_id")?,
        detail,
        prev_sha256: text("prev_sha256")?,
        sha256: text("sha256")?,
    })
}

/// Prints a verdict and returns its exit code: 0, or [`BROKEN`] naming the first bad entry.
fn report(json: bool, checked: u64, head: (i64, &str), bad: Option<(i64, &str)>, what: &str) -> u8 {
    if json {
        let v = serde_json::json!({
            "ok": bad.is_none(), "checked": checked, "head_seq": head.0, "head_sha256": head.1,
            "bad_seq": bad.map(|b| b.0), "reason": bad.map(|b| b.1),
        });
        println!("{v}");
    } else if let Some((seq, reason)) = bad {
        eprintln!("{what} does NOT verify: first bad entry {seq}: {reason} ({checked} entries verified before it)");
    } else {
        println!(
            "{what} verifies: {checked} entries, head {} sha256 {}",
            head.0, head.1
        );
    }
    if bad.is_some() {
        BROKEN
    } else {
        0
    }
}
