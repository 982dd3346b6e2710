//! Human tables and JSON for runs, agents, state, dead letters and access control (who you
//! are, tokens, roles, rules, join tokens).

use tofuflow_proto::v1;

pub fn hms(ms: i64) -> String {
    let s = (ms / 1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

pub fn date(ms: i64) -> String {
    // Civil date from days since the epoch (UTC).
    let days = (ms / 1000).div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {} UTC", hms(ms))
}

fn kind(k: i32) -> &'static str {
    match v1::RunKind::try_from(k).unwrap_or(v1::RunKind::Unspecified) {
        v1::RunKind::PlanOnly => "plan_only",
        v1::RunKind::Destroy => "destroy",
        v1::RunKind::DriftCheck => "drift_check",
        _ => "plan_and_apply",
    }
}

pub fn run_json(r: &v1::Run) -> serde_json::Value {
    let outputs: serde_json::Value =
        serde_json::from_str(&r.outputs_json).unwrap_or(serde_json::Value::Null);
    let s = r.summary.unwrap_or_default();
    serde_json::json!({
        "id": r.id, "workspace": r.workspace, "pool": r.pool, "kind": kind(r.kind), "state": r.state,
        "bundle_digest": r.bundle_digest, "plan_digest": r.plan_digest, "auto_approve": r.auto_approve,
        "submitted_by": r.submitted_by, "commit": r.commit, "pipeline_id": r.pipeline_id,
        "tags": r.tags.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "created_unix_ms": r.created_unix_ms, "updated_unix_ms": r.updated_unix_ms,
        "has_changes": r.has_changes, "summary": {"add": s.add, "change": s.change, "destroy": s.destroy},
        "outputs": outputs, "error": r.error, "variables": r.variables, "plan_attempts": r.plan_attempts,
        "traceparent": r.traceparent,
        "limits": r.limits.map(|l| serde_json::json!({"cpu_secs": l.cpu_secs, "memory_bytes": l.memory_bytes, "nproc": l.nproc, "fsize_bytes": l.fsize_bytes, "timeout_secs": l.timeout_secs})),
        "limit_hit": r.limit_hit,
        "transitions": r.transitions.iter().map(|t| serde_json::json!({"from": t.from_state, "to": t.to_state, "actor": t.actor, "reason": t.reason, "unix_ms": t.unix_ms})).collect::<Vec<_>>(),
        "state_versions": r.state_versions.iter().map(|v| serde_json::json!({"workspace": v.workspace, "version": v.version, "serial": v.serial, "sha256": v.sha256, "created_unix_ms": v.created_unix_ms})).collect::<Vec<_>>(),
        "audit_entries": r.audit_entries.iter().map(|a| serde_json::json!({"seq": a.seq, "kind": a.kind, "actor": a.actor, "unix_ms": a.unix_ms, "detail": detail(&a.detail_json)})).collect::<Vec<_>>(),
        "policy_verdicts": r.policy_verdicts.iter().map(verdict_json).collect::<Vec<_>>(),
    })
}

/// One plan policy's verdict as JSON.
pub fn verdict_json(v: &v1::PolicyVerdict) -> serde_json::Value {
    serde_json::json!({"policy": v.policy, "version": v.version, "digest": v.digest, "outcome": v.outcome, "deny": v.deny, "warn": v.warn, "error": v.error, "duration_us": v.duration_us, "evaluated_unix_ms": v.evaluated_unix_ms})
}

/// The plan policies' verdicts, each with its reasons.
fn print_verdicts(r: &v1::Run) {
    if r.policy_verdicts.is_empty() {
        return;
    }
    println!("Policies");
    for v in &r.policy_verdicts {
        println!(
            "  {:<24} v{:<4} {:<13} {:.1} ms",
            v.policy,
            v.version,
            v.outcome,
            v.duration_us as f64 / 1000.0
        );
        for m in &v.deny {
            println!("    deny: {m}");
        }
        for m in &v.warn {
            println!("    warn: {m}");
        }
        if !v.error.is_empty() {
            println!("    error: {}", v.error);
        }
    }
}

/// Prints a run: its JSON for scripts, or the table a person reads.
pub fn print_run(r: &v1::Run, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run_json(r)).unwrap_or_default()
        );
        return;
    }
    print_header(r);
    print_limits(r);
    if !r.error.is_empty() {
        println!("Error      {}", r.error);
    }
    if !r.limit_hit.is_empty() {
        println!("Limit hit  {}", r.limit_hit);
    }
    print_variables(r);
    print_outputs(r);
    print_verdicts(r);
    print_history(r);
    print_links(r);
}

/// An audit entry's detail as JSON (its text when it is not JSON).
pub fn detail(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// The state versions the run wrote and its audit entries.
fn print_links(r: &v1::Run) {
    if !r.state_versions.is_empty() {
        println!(
            "State versions written (tofuflow state show {} --version N)",
            r.workspace
        );
        for v in &r.state_versions {
            println!(
                "  v{:<5} serial {:<6} {}  sha256 {}",
                v.version,
                v.serial,
                date(v.created_unix_ms),
                v.sha256
            );
        }
    }
    if !r.audit_entries.is_empty() {
        println!("Audit (tofuflow audit list --run {})", r.id);
        for a in &r.audit_entries {
            println!(
                "  #{:<6} {}  {:<16} {:<12} {}",
                a.seq,
                hms(a.unix_ms),
                a.kind,
                a.actor,
                a.detail_json
            );
        }
    }
}

/// Who submitted what, where, and the plan's counts.
fn print_header(r: &v1::Run) {
    let s = r.summary.unwrap_or_default();
    println!("Run        {}", r.id);
    println!("Workspace  {}", r.workspace);
    println!("State      {}", r.state);
    println!("Kind       {}   pool {}", kind(r.kind), r.pool);
    let mut audit = format!("{} at {}", r.submitted_by, date(r.created_unix_ms));
    if !r.commit.is_empty() {
        audit.push_str(&format!(", commit {}", r.commit));
    }
    if !r.pipeline_id.is_empty() {
        audit.push_str(&format!(", pipeline {}", r.pipeline_id));
    }
    println!("Submitted  {audit}");
    if !r.tags.is_empty() {
        println!("Tags       {}", tags_text(&r.tags));
    }
    if r.has_changes || s.add + s.change + s.destroy > 0 {
        println!(
            "Plan       {} to add, {} to change, {} to destroy",
            s.add, s.change, s.destroy
        );
    }
}

/// The limits the run asked for, if any.
fn print_limits(r: &v1::Run) {
    let Some(l) = r.limits.filter(|l| *l != Default::default()) else {
        return;
    };
    let mut parts = Vec::new();
    for (name, v) in [
        ("cpu", l.cpu_secs),
        ("memory", l.memory_bytes),
        ("processes", l.nproc),
        ("file-size", l.fsize_bytes),
    ] {
        if v > 0 {
            parts.push(format!("{name} {v}"));
        }
    }
    if l.timeout_secs > 0 {
        parts.push(format!("timeout {}s", l.timeout_secs));
    }
    println!(
        "Limits     {} (capped by the agents' own)",
        parts.join(", ")
    );
}

/// The run's variables as the coordinator shows them (sensitive ones as "(sensitive)" unless
/// `--show-sensitive`).
fn print_variables(r: &v1::Run) {
    if r.variables.is_empty() {
        return;
    }
    println!("Variables");
    let mut vars: Vec<_> = r.variables.iter().collect();
    vars.sort();
    let w = vars.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in vars {
        println!("  {k:w$} = {v}");
    }
}

/// The outputs (the coordinator has replaced sensitive values unless asked to show them).
fn print_outputs(r: &v1::Run) {
    let Ok(serde_json::Value::Object(outs)) =
        serde_json::from_str::<serde_json::Value>(&r.outputs_json)
    else {
        return;
    };
    if outs.is_empty() {
        return;
    }
    println!("Outputs");
    let w = outs.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, o) in &outs {
        let v = match o.get("value") {
            Some(serde_json::Value::String(s)) if s == "(sensitive)" => s.clone(),
            Some(v) => v.to_string(),
            None => "(sensitive)".to_string(),
        };
        println!("  {k:w$} = {v}");
    }
}

/// Every transition, with who and why.
fn print_history(r: &v1::Run) {
    if r.transitions.is_empty() {
        return;
    }
    println!("History");
    for t in &r.transitions {
        let from = if t.from_state.is_empty() {
            "·"
        } else {
            &t.from_state
        };
        println!(
            "  {}  {from:>18} → {:<18} {:<12} {}",
            hms(t.unix_ms),
            t.to_state,
            t.actor,
            t.reason
        );
    }
}

/// Tags as `k=v, k2=v2`, sorted.
fn tags_text(tags: &std::collections::HashMap<String, String>) -> String {
    let sorted: std::collections::BTreeMap<_, _> = tags.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn print_runs(runs: &[v1::Run], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs.iter().map(run_json).collect::<Vec<_>>())
                .unwrap_or_default()
        );
        return;
    }
    println!(
        "{:<36}  {:<24}  {:<18}  {:<14}  {:<10}  {:<19}  TAGS",
        "RUN", "WORKSPACE", "STATE", "KIND", "BY", "CREATED"
    );
    for r in runs {
        println!(
            "{:<36}  {:<24}  {:<18}  {:<14}  {:<10}  {:<19}  {}",
            r.id,
            r.workspace,
            r.state,
            kind(r.kind),
            r.submitted_by,
            date(r.created_unix_ms),
            tags_text(&r.tags)
        );
    }
}

pub fn print_agents(agents: &[v1::Agent], json: bool) {
    if json {
        let v: Vec<_> = agents
            .iter()
            .map(|a| serde_json::json!({"id": a.id, "name": a.name, "pools": a.pools, "labels": a.labels, "capacity": a.capacity, "running": a.running, "state": a.state, "last_seen_unix_ms": a.last_seen_unix_ms, "revoked_unix_ms": a.revoked_unix_ms}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!(
        "{:<36}  {:<16}  {:<12}  {:<8}  {:<9}  {:<6}  {:<23}  REVOKED",
        "AGENT", "NAME", "POOLS", "STATE", "RUNNING", "GPUS", "LAST SEEN"
    );
    for a in agents {
        let gpus = a
            .labels
            .get("gpu_count")
            .cloned()
            .unwrap_or_else(|| "0".into());
        println!(
            "{:<36}  {:<16}  {:<12}  {:<8}  {:>3}/{:<5}  {:<6}  {:<23}  {}",
            a.id,
            a.name,
            a.pools.join(","),
            a.state,
            a.running,
            a.capacity,
            gpus,
            date(a.last_seen_unix_ms),
            when(a.revoked_unix_ms, "-")
        );
    }
}

pub fn version_json(v: &v1::StateVersionInfo) -> serde_json::Value {
    serde_json::json!({"version": v.version, "serial": v.serial, "lineage": v.lineage, "sha256": v.sha256, "size": v.size, "run_id": v.run_id, "attempt": v.attempt, "actor": v.actor, "created_unix_ms": v.created_unix_ms})
}

pub fn print_state_list(l: &v1::StateVersionList, json: bool) {
    if json {
        let v = serde_json::json!({
            "versions": l.versions.iter().map(version_json).collect::<Vec<_>>(),
            "lock": if l.lock_info.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&l.lock_info).unwrap_or(serde_json::Value::Null) },
            "events": l.events.iter().map(|e| serde_json::json!({"version": e.version, "action": e.action, "actor": e.actor, "reason": e.reason, "unix_ms": e.unix_ms})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    if !l.lock_owner.is_empty() {
        println!("LOCKED by {}", l.lock_owner);
    }
    println!(
        "{:>7}  {:>6}  {:<36}  {:>8}  {:<24}  {:<36}  WRITTEN BY",
        "VERSION", "SERIAL", "LINEAGE", "BYTES", "WRITTEN", "RUN"
    );
    for v in &l.versions {
        let size = if v.size < 0 {
            "deleted".to_string()
        } else {
            v.size.to_string()
        };
        println!(
            "{:>7}  {:>6}  {:<36}  {:>8}  {:<24}  {:<36}  {}",
            v.version,
            v.serial,
            v.lineage,
            size,
            date(v.created_unix_ms),
            if v.run_id.is_empty() { "-" } else { &v.run_id },
            v.actor
        );
    }
    if !l.events.is_empty() {
        println!("Audit");
        for e in &l.events {
            println!(
                "  {}  {:<12} v{:<5} {:<12} {}",
                date(e.unix_ms),
                e.action,
                e.version,
                e.actor,
                e.reason
            );
        }
    }
}

pub fn print_state(v: &v1::StateVersionInfo, data: &[u8], json: bool) {
    let st: serde_json::Value = serde_json::from_slice(data).unwrap_or(serde_json::Value::Null);
    let resources: Vec<String> = st["resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    format!(
                        "{}{}.{} ({} instance{})",
                        r["module"]
                            .as_str()
                            .map(|m| format!("{m}."))
                            .unwrap_or_default(),
                        r["type"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or(""),
                        r["instances"].as_array().map(|i| i.len()).unwrap_or(0),
                        if r["instances"].as_array().map(|i| i.len()).unwrap_or(0) == 1 {
                            ""
                        } else {
                            "s"
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let outputs: Vec<String> = st["outputs"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    if json {
        let mut j = version_json(v);
        j["resources"] = serde_json::json!(resources);
        j["outputs"] = serde_json::json!(outputs);
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        return;
    }
    println!("Version    {}", v.version);
    println!("Serial     {}", v.serial);
    println!("Lineage    {}", v.lineage);
    println!("SHA-256    {}", v.sha256);
    println!("Size       {} bytes", v.size);
    println!(
        "Written    {} by {}{}",
        date(v.created_unix_ms),
        v.actor,
        if v.run_id.is_empty() {
            String::new()
        } else {
            format!(
                " (run {} attempt {}: tofuflow run show {})",
                v.run_id, v.attempt, v.run_id
            )
        }
    );
    println!(
        "Resources  {}",
        if resources.is_empty() {
            "none".to_string()
        } else {
            resources.join(", ")
        }
    );
    println!(
        "Outputs    {}",
        if outputs.is_empty() {
            "none".to_string()
        } else {
            outputs.join(", ")
        }
    );
}

/// One dead message as JSON.
pub fn dead_letter_json(d: &v1::DeadLetter) -> serde_json::Value {
    serde_json::json!({"message_id": d.message_id, "task_id": d.task_id, "attempt": d.attempt, "run_id": d.run_id, "pool": d.pool, "reason": d.reason, "queue": d.queue, "died_unix_ms": d.died_unix_ms, "size": d.size})
}

/// The dead-letter queue: how full it is, then one line per message.
pub fn print_dead_letters(r: &v1::ListDeadLettersResponse, json: bool) {
    if json {
        let v = serde_json::json!({
            "total": r.total,
            "max_length": r.max_length,
            "messages": r.messages.iter().map(dead_letter_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!(
        "{} dead messages (the queue keeps the newest {}){}",
        r.total,
        r.max_length,
        if (r.messages.len() as u64) < r.total {
            format!(", the oldest {} shown", r.messages.len())
        } else {
            String::new()
        }
    );
    if r.messages.is_empty() {
        return;
    }
    println!(
        "{:<40}  {:<36}  {:>7}  {:<36}  {:<12}  {:<14}  DIED",
        "MESSAGE", "TASK", "ATTEMPT", "RUN", "POOL", "WHY"
    );
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for d in &r.messages {
        println!(
            "{:<40}  {:<36}  {:>7}  {:<36}  {:<12}  {:<14}  {}",
            dash(&d.message_id),
            dash(&d.task_id),
            if d.attempt == 0 {
                "-".to_string()
            } else {
                d.attempt.to_string()
            },
            dash(&d.run_id),
            dash(&d.pool),
            dash(&d.reason),
            if d.died_unix_ms == 0 {
                "-".to_string()
            } else {
                date(d.died_unix_ms)
            }
        );
    }
}

/// A time, or `zero` for 0 (never, not yet, not revoked).
pub fn when(ms: i64, zero: &str) -> String {
    if ms == 0 {
        zero.to_string()
    } else {
        date(ms)
    }
}

/// A list, or `empty` when there is nothing in it.
fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(",")
    }
}

/// Lays out rows under a header, each column as wide as its widest cell (the last unpadded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints a JSON value, pretty.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// One role grant as JSON.
pub fn grant_json(g: &v1::RoleGrant) -> serde_json::Value {
    serde_json::json!({"user": g.user, "role": g.role, "workspaces": g.workspaces, "granted_by": g.granted_by, "granted_unix_ms": g.granted_ms})
}

fn grants_table(grants: &[v1::RoleGrant]) -> String {
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            vec![
                g.user.clone(),
                g.role.clone(),
                g.workspaces.clone(),
                g.granted_by.clone(),
                when(g.granted_ms, "-"),
            ]
        })
        .collect();
    table(
        &["USER", "ROLE", "WORKSPACES", "GRANTED BY", "GRANTED"],
        &rows,
    )
}

/// Who the coordinator takes the caller for, the token used and the caller's grants.
pub fn print_whoami(w: &v1::WhoAmIResponse, coordinator: &str, token_from: &str, json: bool) {
    if json {
        print_json(&serde_json::json!({
            "user": w.name, "open": w.open, "coordinator": coordinator,
            "token_id": w.token_id, "token_expires_unix_ms": w.token_expires_ms,
            "grants": w.grants.iter().map(grant_json).collect::<Vec<_>>(),
        }));
        return;
    }
    println!("Coordinator  {coordinator}");
    if w.open {
        println!(
            "User         {}",
            if w.name.is_empty() { "-" } else { &w.name }
        );
        println!(
            "Access       open: the coordinator runs with --insecure-open, anyone reaching it may do anything"
        );
        return;
    }
    println!("User         {}", w.name);
    let token = if w.token_id.is_empty() {
        "a users-file token".to_string()
    } else {
        format!(
            "{} (expires {})",
            w.token_id,
            when(w.token_expires_ms, "never")
        )
    };
    println!("Token        {token}, from {token_from}");
    if w.grants.is_empty() {
        println!(
            "Roles        none yet: an admin can grant one with `tofuflow role grant {} viewer --workspaces '**'`",
            if w.name.is_empty() { "USER" } else { &w.name }
        );
        return;
    }
    println!("Roles");
    for l in grants_table(&w.grants).lines() {
        println!("  {l}");
    }
}

/// One API token as JSON (never the token itself).
pub fn token_json(t: &v1::TokenInfo) -> serde_json::Value {
    serde_json::json!({"id": t.id, "user": t.user, "description": t.description, "created_by": t.created_by, "created_unix_ms": t.created_ms, "expires_unix_ms": t.expires_ms, "last_used_unix_ms": t.last_used_ms, "revoked_unix_ms": t.revoked_ms})
}

/// A new API token: what it is, then the token alone on the last line (`| tail -1`); in JSON,
/// the token is the `token` field.
pub fn print_token_created(r: &v1::CreateTokenResponse, json: bool) {
    let info = r.info.clone().unwrap_or_default();
    if json {
        let mut v = token_json(&info);
        v["token"] = serde_json::json!(r.token);
        print_json(&v);
        return;
    }
    println!(
        "created token {} for {} (expires {}); it is shown only now:",
        info.id,
        info.user,
        when(info.expires_ms, "never")
    );
    println!("{}", r.token);
}

/// API tokens: id, user, description, when created, expires, last used and revoked.
pub fn print_tokens(tokens: &[v1::TokenInfo], json: bool) {
    if json {
        print_json(&serde_json::json!(tokens
            .iter()
            .map(token_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.user.clone(),
                if t.description.is_empty() {
                    "-".into()
                } else {
                    t.description.clone()
                },
                when(t.created_ms, "-"),
                when(t.expires_ms, "never"),
                when(t.last_used_ms, "never"),
                when(t.revoked_ms, "-"),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "ID",
                "USER",
                "DESCRIPTION",
                "CREATED",
                "EXPIRES",
                "LAST USED",
                "REVOKED"
            ],
            &rows
        )
    );
}

/// Role grants: user, role, workspace glob, who granted it and when.
pub fn print_grants(grants: &[v1::RoleGrant], json: bool) {
    if json {
        print_json(&serde_json::json!(grants
            .iter()
            .map(grant_json)
            .collect::<Vec<_>>()));
        return;
    }
    println!("{}", grants_table(grants));
}

/// One workspace rule as JSON.
pub fn workspace_rule_json(r: &v1::WorkspaceRule) -> serde_json::Value {
    serde_json::json!({"workspaces": r.workspaces, "four_eyes": r.four_eyes, "sources": r.sources, "bundle_digests": r.bundle_digests, "pools": r.pools, "updated_by": r.updated_by, "updated_unix_ms": r.updated_ms})
}

/// Workspace rules: four-eyes, allowed sources, digests and pools (`any` when unrestricted).
pub fn print_workspace_rules(rules: &[v1::WorkspaceRule], json: bool) {
    if json {
        print_json(&serde_json::json!(rules
            .iter()
            .map(workspace_rule_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.workspaces.clone(),
                if r.four_eyes { "yes" } else { "no" }.into(),
                list_or(&r.sources, "any"),
                list_or(&r.bundle_digests, "any"),
                list_or(&r.pools, "any"),
                r.updated_by.clone(),
                when(r.updated_ms, "-"),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "WORKSPACES",
                "FOUR-EYES",
                "SOURCES",
                "DIGESTS",
                "POOLS",
                "UPDATED BY",
                "UPDATED"
            ],
            &rows
        )
    );
}

/// One pool rule as JSON.
pub fn pool_rule_json(r: &v1::PoolRule) -> serde_json::Value {
    serde_json::json!({"pool": r.pool, "workspaces": r.workspaces, "updated_by": r.updated_by, "updated_unix_ms": r.updated_ms})
}

/// Pool rules: the workspaces each pool serves.
pub fn print_pool_rules(rules: &[v1::PoolRule], json: bool) {
    if json {
        print_json(&serde_json::json!(rules
            .iter()
            .map(pool_rule_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.pool.clone(),
                list_or(&r.workspaces, "any"),
                r.updated_by.clone(),
                when(r.updated_ms, "-"),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["POOL", "WORKSPACES", "UPDATED BY", "UPDATED"], &rows)
    );
}

/// One join token as JSON (never the token itself).
pub fn join_token_json(t: &v1::JoinTokenInfo) -> serde_json::Value {
    serde_json::json!({"id": t.id, "pools": t.pools, "created_by": t.created_by, "created_unix_ms": t.created_ms, "expires_unix_ms": t.expires_ms, "revoked_unix_ms": t.revoked_ms})
}

/// A new join token: what it allows, then the token alone on the last line (`| tail -1`); in
/// JSON, the token is the `token` field.
pub fn print_join_token_created(r: &v1::CreateJoinTokenResponse, json: bool) {
    let info = r.info.clone().unwrap_or_default();
    if json {
        let mut v = join_token_json(&info);
        v["token"] = serde_json::json!(r.token);
        print_json(&v);
        return;
    }
    println!(
        "created join token {} for pools {} (expires {}); it is shown only now:",
        info.id,
        info.pools.join(","),
        when(info.expires_ms, "never")
    );
    println!("{}", r.token);
}

/// Join tokens: id, pools, who created them, when, expiry and revocation.
pub fn print_join_tokens(tokens: &[v1::JoinTokenInfo], json: bool) {
    if json {
        print_json(&serde_json::json!(tokens
            .iter()
            .map(join_token_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.pools.join(","),
                t.created_by.clone(),
                when(t.created_ms, "-"),
                when(t.expires_ms, "never"),
                when(t.revoked_ms, "-"),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["ID", "POOLS", "CREATED BY", "CREATED", "EXPIRES", "REVOKED"],
            &rows
        )
    );
}

/// Shows the message of a tofu `-json` line, or the line itself.
pub fn render_line(line: &str) -> String {
    if line.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(m) = v.get("@message").and_then(|m| m.as_str()) {
                // A diagnostic's detail is where OpenTofu explains (e.g. who holds a lock).
                let detail = v
                    .pointer("/diagnostic/detail")
                    .and_then(|d| d.as_str())
                    .filter(|d| !d.is_empty());
                return match detail {
                    Some(d) => format!(
                        "{m}\n{}",
                        d.lines()
                            .map(|l| format!("    {l}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                    None => m.to_string(),
                };
            }
        }
    }
    line.to_string()
}

/// One identity configuration as JSON (empty fields: not set).
pub fn identity_json(i: &v1::Identity) -> serde_json::Value {
    serde_json::json!({"name": i.name, "workspaces": i.workspaces, "audience": i.audience,
        "aws_role_arn": i.aws_role_arn, "aws_plan_role_arn": i.aws_plan_role_arn,
        "aws_apply_role_arn": i.aws_apply_role_arn, "gcp_audience": i.gcp_audience,
        "gcp_service_account": i.gcp_service_account, "azure_client_id": i.azure_client_id,
        "azure_tenant_id": i.azure_tenant_id, "azure_subscription_id": i.azure_subscription_id,
        "updated_by": i.updated_by, "updated_unix_ms": i.updated_unix_ms})
}

/// The clouds an identity configuration sets up, in words.
fn identity_clouds(i: &v1::Identity) -> String {
    let mut c = Vec::new();
    if !i.aws_role_arn.is_empty() {
        c.push("aws");
    }
    if !i.aws_plan_role_arn.is_empty() {
        c.push("aws (plan/apply roles)");
    }
    if !i.gcp_audience.is_empty() {
        c.push("gcp");
    }
    if !i.azure_client_id.is_empty() {
        c.push("azure");
    }
    if c.is_empty() {
        "token only".into()
    } else {
        c.join(", ")
    }
}

/// Identity configurations: name, glob, audience, clouds.
pub fn print_identities(all: &[v1::Identity], json: bool) {
    if json {
        print_json(&serde_json::json!(all
            .iter()
            .map(identity_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.workspaces.clone(),
                or_default(&i.audience),
                identity_clouds(i),
                i.updated_by.clone(),
                when(i.updated_unix_ms, "-"),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "WORKSPACES",
        "AUDIENCE",
        "CLOUDS",
        "UPDATED BY",
        "UPDATED",
    ];
    println!("{}", table(&header, &rows));
}

fn or_default(audience: &str) -> String {
    if audience.is_empty() {
        "(coordinator default)".into()
    } else {
        audience.to_string()
    }
}

/// One identity configuration, a field a line (only those that are set).
pub fn print_identity(i: &v1::Identity) {
    let fields = [
        ("name", i.name.clone()),
        ("workspaces", i.workspaces.clone()),
        ("audience", or_default(&i.audience)),
        ("aws role", i.aws_role_arn.clone()),
        ("aws plan role", i.aws_plan_role_arn.clone()),
        ("aws apply role", i.aws_apply_role_arn.clone()),
        ("gcp provider", i.gcp_audience.clone()),
        ("gcp service account", i.gcp_service_account.clone()),
        ("azure client id", i.azure_client_id.clone()),
        ("azure tenant id", i.azure_tenant_id.clone()),
        ("azure subscription id", i.azure_subscription_id.clone()),
        ("updated by", i.updated_by.clone()),
        ("updated", when(i.updated_unix_ms, "-")),
    ];
    for (k, v) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        println!("{k:<22} {v}");
    }
}

/// A connection as JSON: names, workspaces, keys, versions; values of plain keys only.
pub fn connection_json(c: &v1::Connection) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "workspaces": c.workspaces,
        "phases": phase_names(&c.phases),
        "description": c.description,
        "version": c.version,
        "keys": c.keys.iter().map(|k| {
            let mut o = serde_json::json!({"name": k.name, "file": k.file, "plain": k.plain});
            if k.plain {
                o["value"] = serde_json::json!(k.value);
            }
            o
        }).collect::<Vec<_>>(),
        "versions": c.versions.iter().map(|v| serde_json::json!({
            "version": v.version, "created_by": v.created_by, "created_ms": v.created_ms, "keys": v.keys,
        })).collect::<Vec<_>>(),
        "updated_by": c.updated_by,
        "updated_ms": c.updated_ms,
        "last_used_ms": c.last_used_ms,
    })
}

/// A connection's phases by name.
fn phase_names(phases: &[i32]) -> Vec<&'static str> {
    phases
        .iter()
        .map(|p| match v1::Phase::try_from(*p) {
            Ok(v1::Phase::Plan) => "plan",
            Ok(v1::Phase::Apply) => "apply",
            _ => "?",
        })
        .collect()
}

/// Connections as a table (or JSON).
pub fn print_connections(cs: &[v1::Connection], json: bool) {
    if json {
        print_json(&serde_json::json!(cs
            .iter()
            .map(connection_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            let keys: Vec<String> = c.keys.iter().map(|k| k.name.clone()).collect();
            vec![
                c.name.clone(),
                c.workspaces.join(","),
                phase_names(&c.phases).join(","),
                keys.join(","),
                c.version.to_string(),
                c.updated_by.clone(),
                when(c.updated_ms, "-"),
                when(c.last_used_ms, "never"),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "NAME",
                "WORKSPACES",
                "PHASES",
                "KEYS",
                "VERSION",
                "UPDATED BY",
                "UPDATED",
                "LAST USED"
            ],
            &rows
        )
    );
}

/// One connection in detail (or JSON); secret values are never there to print.
pub fn print_connection(c: &v1::Connection, json: bool) {
    if json {
        print_json(&connection_json(c));
        return;
    }
    println!("name:        {}", c.name);
    println!("workspaces:  {}", c.workspaces.join(", "));
    println!("phases:      {}", phase_names(&c.phases).join(", "));
    if !c.description.is_empty() {
        println!("description: {}", c.description);
    }
    println!(
        "version:     {} ({} by {})",
        c.version,
        when(c.updated_ms, "-"),
        c.updated_by
    );
    println!("last used:   {}", when(c.last_used_ms, "never"));
    println!("keys:");
    for k in &c.keys {
        let kind = if k.file {
            " (file: the variable names its path)"
        } else {
            ""
        };
        let value = if k.plain {
            format!("= {}", k.value)
        } else {
            "= (secret)".into()
        };
        println!("  {} {value}{kind}", k.name);
    }
    println!("versions:");
    for v in &c.versions {
        println!(
            "  {}  {}  {}  {}",
            v.version,
            when(v.created_ms, "-"),
            v.created_by,
            v.keys.join(",")
        );
    }
}

/// A saved plan as `tofu show` words it: one block per resource change (symbol, address,
/// what happens, the attributes that matter), output changes, the summary.
pub fn print_plan(p: &v1::Plan, json: bool) {
    let changes: serde_json::Value = serde_json::from_str(&p.changes_json).unwrap_or_default();
    if json {
        print_json(
            &serde_json::json!({"run_id": p.run_id, "has_changes": p.has_changes, "plan_digest": p.plan_digest, "changes": changes}),
        );
        return;
    }
    for rc in changes["resource_changes"].as_array().into_iter().flatten() {
        print_resource_change(rc);
    }
    let outputs = changes["output_changes"].as_object();
    if outputs.is_some_and(|o| o.values().any(|c| action_of(c).0 != " ")) {
        println!("Changes to Outputs:");
        for (name, c) in outputs.into_iter().flatten() {
            let (sym, _) = action_of(c);
            if sym != " " {
                println!(
                    "  {sym} {name} = {}",
                    value_text(&c["after"], &c["after_unknown"])
                );
            }
        }
        println!();
    }
    let s = p.summary.unwrap_or_default();
    println!(
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
}

/// The symbol and words of a change's actions, as OpenTofu prints them.
fn action_of(change: &serde_json::Value) -> (&'static str, &'static str) {
    let actions: Vec<&str> = change["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    match actions.as_slice() {
        ["create"] => ("+", "will be created"),
        ["delete"] => ("-", "will be destroyed"),
        ["update"] => ("~", "will be updated in-place"),
        ["delete", "create"] => ("-/+", "must be replaced"),
        ["create", "delete"] => ("+/-", "must be replaced"),
        ["read"] => ("<=", "will be read during apply"),
        ["forget"] => (
            ".",
            "will be removed from the state but will not be destroyed",
        ),
        _ => (" ", "has no changes"),
    }
}

fn value_text(v: &serde_json::Value, unknown: &serde_json::Value) -> String {
    if unknown == &serde_json::Value::Bool(true) {
        return "(known after apply)".into();
    }
    match v {
        serde_json::Value::String(s) if s == "(sensitive)" => "(sensitive value)".into(),
        serde_json::Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn print_resource_change(rc: &serde_json::Value) {
    let c = &rc["change"];
    let (sym, words) = action_of(c);
    if sym == " " {
        return;
    }
    let address = rc["address"].as_str().unwrap_or("?");
    println!("  # {address} {words}");
    println!("  {sym} resource {address}");
    let (before, after, unknown) = (&c["before"], &c["after"], &c["after_unknown"]);
    let mut keys: std::collections::BTreeSet<&String> = std::collections::BTreeSet::new();
    for side in [before, after, unknown] {
        keys.extend(side.as_object().into_iter().flat_map(|o| o.keys()));
    }
    for k in keys {
        let (b, a, u) = (&before[k], &after[k], &unknown[k]);
        let now = value_text(a, u);
        if sym == "-" {
            println!("      - {k} = {}", value_text(b, &serde_json::Value::Null));
        } else if b.is_null() || sym == "+" {
            println!("      + {k} = {now}");
        } else if b != a || u == &serde_json::Value::Bool(true) {
            println!(
                "      ~ {k} = {} -> {now}",
                value_text(b, &serde_json::Value::Null)
            );
        }
    }
    println!();
}

/// A workflow run as JSON.
pub fn workflow_json(w: &v1::WorkflowRun) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "file": w.file_name, "state": w.state, "destroy": w.destroy,
        "approval": w.approval, "actor": w.actor, "tags": w.tags, "reason": w.reason,
        "created": date(w.created_unix_ms), "updated": date(w.updated_unix_ms), "bundles": w.bundles,
        "targets": w.targets.iter().map(|t| serde_json::json!({
            "key": t.key, "stack": t.stack, "each_key": t.each_key, "workspace": t.workspace,
            "pool": t.pool, "state": t.state, "run_id": t.run_id, "runs": t.runs,
            "run_state": t.run_state, "reason": t.reason, "depends_on": t.depends_on,
        })).collect::<Vec<_>>(),
    })
}

/// A workflow run and its targets.
pub fn print_workflow_run(w: &v1::WorkflowRun, json: bool) {
    if json {
        return print_json(&workflow_json(w));
    }
    println!(
        "workflow run {}  {}{}",
        w.id,
        w.state,
        if w.destroy { " (destroy)" } else { "" }
    );
    println!(
        "file: {}  approval: {}  by: {}  started: {}",
        w.file_name,
        w.approval,
        w.actor,
        date(w.created_unix_ms)
    );
    if !w.reason.is_empty() {
        println!("{}", w.reason);
    }
    let rows: Vec<Vec<String>> = w
        .targets
        .iter()
        .map(|t| {
            vec![
                t.key.clone(),
                t.workspace.clone(),
                t.state.clone(),
                t.run_id.clone(),
                t.run_state.clone(),
                t.reason.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["TARGET", "WORKSPACE", "STATE", "RUN", "RUN STATE", "WHY"],
            &rows
        )
    );
}

/// Workflow runs, one line each.
pub fn print_workflow_runs(runs: &[v1::WorkflowRun], json: bool) {
    if json {
        return print_json(&serde_json::Value::Array(
            runs.iter().map(workflow_json).collect(),
        ));
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|w| {
            let done = w.targets.iter().filter(|t| t.state == "succeeded").count();
            vec![
                w.id.clone(),
                w.file_name.clone(),
                w.state.clone(),
                format!("{done}/{}", w.targets.len()),
                w.actor.clone(),
                date(w.created_unix_ms),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["ID", "FILE", "STATE", "DONE", "BY", "STARTED"], &rows)
    );
}

/// The targets of a checked workflow file, in order.
pub fn print_workflow_targets(targets: &[tofuflow_proto::workflow::Target], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = targets
            .iter()
            .map(|t| serde_json::json!({"key": t.key, "stack": t.stack, "workspace": t.workspace, "pool": t.pool, "depends_on": t.deps, "tags": t.tags}))
            .collect();
        return print_json(&serde_json::Value::Array(v));
    }
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| vec![t.key.clone(), t.workspace.clone(), t.deps.join(", ")])
        .collect();
    println!("{}", table(&["TARGET", "WORKSPACE", "WAITS FOR"], &rows));
    println!("ok: {} targets", targets.len());
}

/// A workflow run's rollouts and their targets (only `stack`'s when given).
pub fn print_rollouts(w: &v1::WorkflowRun, stack: &str, json: bool) {
    let pick = |s: &str| stack.is_empty() || s == stack;
    if json {
        let rollouts: Vec<serde_json::Value> = w
            .rollouts
            .iter()
            .filter(|r| pick(&r.stack))
            .map(|r| {
                let targets: Vec<serde_json::Value> = w
                    .targets
                    .iter()
                    .filter(|t| t.stack == r.stack)
                    .map(|t| serde_json::json!({"key": t.key, "workspace": t.workspace, "wave": t.wave, "state": t.state, "run_id": t.run_id, "run_state": t.run_state, "bundle_digest": t.bundle_digest, "reason": t.reason}))
                    .collect();
                serde_json::json!({"stack": r.stack, "state": r.state, "wave": r.wave, "waves": r.waves, "failures": r.failures, "max_failures": r.max_failures, "max_parallel": r.max_parallel, "reason": r.reason, "resume_after": when(r.resume_after_unix_ms, ""), "targets": targets})
            })
            .collect();
        return print_json(
            &serde_json::json!({"workflow_run": w.id, "state": w.state, "rollouts": rollouts}),
        );
    }
    for r in w.rollouts.iter().filter(|r| pick(&r.stack)) {
        println!(
            "rollout {}  {}  wave {}/{}  failures {} (halts above {})  {}",
            r.stack, r.state, r.wave, r.waves, r.failures, r.max_failures, r.reason
        );
        let rows: Vec<Vec<String>> = w
            .targets
            .iter()
            .filter(|t| t.stack == r.stack)
            .map(|t| {
                let digest: String = t.bundle_digest.chars().take(19).collect();
                vec![
                    t.key.clone(),
                    t.wave.to_string(),
                    t.state.clone(),
                    t.run_state.clone(),
                    digest,
                    t.reason.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["TARGET", "WAVE", "STATE", "RUN STATE", "BUNDLE", "WHY"],
                &rows
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        assert_eq!(
            render_line(r#"{"@message":"Plan: 1 to add","type":"change_summary"}"#),
            "Plan: 1 to add"
        );
        assert_eq!(render_line("plain"), "plain");
        assert_eq!(
            render_line(
                r#"{"@message":"Error: Error acquiring the state lock","diagnostic":{"detail":"Lock Info:\n  ID: x"},"type":"diagnostic"}"#
            ),
            "Error: Error acquiring the state lock\n    Lock Info:\n      ID: x"
        );
        assert_eq!(date(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn tables_fit_their_widest_cell() {
        let t = table(
            &["ID", "USER", "REVOKED"],
            &[
                vec!["a".into(), "alice".into(), "-".into()],
                vec!["long-id".into(), "bo".into(), when(951_782_400_000, "-")],
            ],
        );
        assert_eq!(
            t,
            "ID       USER   REVOKED\n\
             a        alice  -\n\
             long-id  bo     2000-02-29 00:00:00 UTC"
        );
        assert_eq!(table(&["ID", "USER"], &[]), "ID  USER");
        assert_eq!(when(0, "never"), "never");
        assert_eq!(list_or(&[], "any"), "any");
        assert_eq!(list_or(&["a".into(), "b".into()], "any"), "a,b");
    }

    #[test]
    fn created_tokens_are_in_json_but_listed_ones_never() {
        let info = v1::TokenInfo {
            id: "t1".into(),
            user: "alice".into(),
            ..Default::default()
        };
        let j = token_json(&info);
        assert!(j.get("token").is_none());
        assert_eq!(j["expires_unix_ms"], 0);
        let r = v1::JoinTokenInfo {
            id: "j1".into(),
            pools: vec!["gpu".into()],
            ..Default::default()
        };
        assert_eq!(join_token_json(&r)["pools"][0], "gpu");
    }
}
