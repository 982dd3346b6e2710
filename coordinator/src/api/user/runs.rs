//! Runs as users drive them: submit, show, list, watch, logs, and the approve, reject and
//! cancel actions.

use super::{authorize, authorize_caller, LogStream, Reply, RunStream, Shared};
use crate::api::convert::{
    audit_ref_to_pb, kind_from_pb, limits_from_pb, log_line_to_pb, policy_verdict_to_pb, run_to_pb,
    version_ref_to_pb,
};
use crate::auth::{Action, Rules};
use crate::error::{Error, Result};
use crate::runs;
use crate::runs::variables::{self, Declared};
use crate::store::{AuditFilter, NewRun};
use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_proto::names::{valid_var_name, valid_workspace};
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// A run with its history and plan attempts, as the API shows it; sensitive values only when
/// `reveal`.
async fn full_run(shared: &Shared, id: &str, reveal: bool) -> Result<v1::Run> {
    let r = shared.store.get_run(id).await?;
    let t = shared.store.transitions(id).await?;
    let n = shared.store.plan_attempts(id).await?;
    let versions = shared.store.run_state_versions(&r.workspace, id).await?;
    let audit = AuditFilter {
        run_id: id.to_string(),
        limit: 1000,
        ..Default::default()
    };
    let entries = shared.store.audit_entries(&audit).await?;
    let mut run = run_to_pb(&r, t, n, reveal);
    run.state_versions = versions
        .into_iter()
        .map(|v| version_ref_to_pb(&r.workspace, v))
        .collect();
    run.audit_entries = entries.into_iter().map(audit_ref_to_pb).collect();
    run.policy_verdicts = shared
        .store
        .policy_verdicts(id)
        .await?
        .into_iter()
        .map(policy_verdict_to_pb)
        .collect();
    Ok(run)
}

/// Whether a run in `state` of wire kind `kind` has ended (an unreadable state counts as ended).
fn is_done(state: &str, kind: i32) -> bool {
    state
        .parse::<runs::RunState>()
        .map(|s| runs::is_terminal(s, kind_from_pb(kind)))
        .unwrap_or(true)
}

/// Starts a run (operator): checks the request, then stores the run and its first task.
#[tracing::instrument(skip_all, fields(workspace = %req.get_ref().workspace, pool = %req.get_ref().pool, tags = tracing::field::Empty))]
pub(super) async fn submit(shared: &Shared, req: Request<v1::SubmitRunRequest>) -> Reply<v1::Run> {
    let t0 = std::time::Instant::now();
    let actor = authorize(
        shared,
        &req,
        Action::Submit,
        Some(&req.get_ref().workspace),
        Some(&req.get_ref().actor),
    )
    .await?;
    let mut r = req.into_inner();
    r.actor = actor;
    // The caller's trace (e.g. a pipeline's) becomes the parent of this run's spans.
    tofuflow_proto::telemetry::set_parent(&tracing::Span::current(), &r.traceparent);
    let pool = validate_submit(shared, &r).await?;
    check_rules(shared, &r, &pool).await?;
    let variable_decls = variable_decls(shared, &mut r).await?;
    let new = new_run(r, pool, variable_decls);
    let actor = new.actor.clone();
    let tags = tag_list(&new.tags);
    tracing::Span::current().record("tags", tags.as_str());
    let run = shared.store.submit_once(new, &shared.policy).await?;
    crate::metrics::recorded().dispatch("submit", t0.elapsed());
    tracing::info!(run_id = %run.id, actor = %actor, tags = %tags, "run submitted");
    Ok(Response::new(full_run(shared, &run.id, false).await?))
}

/// Checks a submission's names, bundle and variables files; answers the pool the run goes to.
async fn validate_submit(shared: &Shared, r: &v1::SubmitRunRequest) -> Result<String> {
    valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
    let pool = if r.pool.is_empty() {
        "default".to_string()
    } else {
        r.pool.clone()
    };
    crate::queue::valid_pool(&pool).map_err(Error::InvalidInput)?;
    let env: BTreeMap<String, String> = r.env.clone().into_iter().collect();
    tofuflow_proto::connections::check_values(&env, &BTreeMap::new(), &r.env_plain)
        .map_err(|e| Error::InvalidInput(format!("env: {}", e.replace("--plain", "env_plain"))))?;
    for k in r.variables.keys() {
        valid_var_name(k).map_err(Error::InvalidInput)?;
    }
    tofuflow_proto::names::valid_tags(&r.tags).map_err(Error::InvalidInput)?;
    check_kind(r)?;
    check_ttl(r)?;
    if !shared.store.has_blob(&r.bundle_digest).await? {
        return Err(Error::Conflict(format!(
            "bundle {} was not uploaded: upload it first (tofuflow run submit does both)",
            r.bundle_digest
        )));
    }
    if r.var_files.len() > 32 {
        return Err(Error::InvalidInput("at most 32 var files".into()));
    }
    for f in &r.var_files {
        if f.name.is_empty()
            || f.name.contains('/')
            || f.name.starts_with('.')
            || f.content.len() > 1024 * 1024
        {
            return Err(Error::InvalidInput(format!(
                "invalid var file {:?}: a plain file name and at most 1 MiB",
                f.name
            )));
        }
    }
    Ok(pool)
}

/// The module's variable declarations that matter for this run (from its bundle), with the
/// submitter's own sensitive marks; refuses variables the module does not declare.
async fn variable_decls(
    shared: &Shared,
    r: &mut v1::SubmitRunRequest,
) -> Result<BTreeMap<String, Declared>> {
    let bundle = shared.store.get_blob(&r.bundle_digest).await?;
    // Unpacking is CPU work: off the async workers, which serve every other call meanwhile.
    let d = tokio::task::spawn_blocking(move || variables::declarations(&bundle))
        .await
        .map_err(|e| Error::Internal(format!("reading the module's declarations: {e}")))?;
    if d.complete {
        let optional = std::mem::take(&mut r.optional_variables);
        r.variables
            .retain(|k, _| d.vars.contains_key(k) || !optional.contains(k));
        if let Some(k) = r.variables.keys().find(|k| !d.vars.contains_key(*k)) {
            let names: Vec<&str> = d.vars.keys().map(String::as_str).collect();
            return Err(Error::InvalidInput(format!(
                "variable {k:?} is not declared by the module (it declares: {}): check the name, or add a `variable \"{k}\" {{}}` block",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        }
    }
    let mut decls: BTreeMap<String, Declared> = d
        .vars
        .into_iter()
        .filter(|(_, v)| v.sensitive || v.expression)
        .collect();
    for k in &r.sensitive_variables {
        valid_var_name(k).map_err(Error::InvalidInput)?;
        decls.entry(k.clone()).or_default().sensitive = true;
    }
    Ok(decls)
}

/// A drift check is not submitted: it plans what the workspace last applied.
fn check_kind(r: &v1::SubmitRunRequest) -> Result<()> {
    if kind_from_pb(r.kind) == crate::runs::RunKind::DriftCheck {
        return Err(Error::InvalidInput(
            "a drift check plans the workspace's last applied configuration: use `tofuflow drift check WORKSPACE` (CheckDrift), not a submit".into(),
        ));
    }
    Ok(())
}

/// A TTL is for a run that applies, and is positive.
fn check_ttl(r: &v1::SubmitRunRequest) -> Result<()> {
    if r.ttl_ms < 0 {
        return Err(Error::InvalidInput(
            "a TTL is a positive duration such as 4h".into(),
        ));
    }
    if r.ttl_ms > 0 && kind_from_pb(r.kind) != crate::runs::RunKind::PlanAndApply {
        return Err(Error::InvalidInput(
            "--ttl is for a run that applies: a plan-only or destroy run creates nothing to expire"
                .into(),
        ));
    }
    Ok(())
}

/// The run to store for a checked submission.
fn new_run(
    r: v1::SubmitRunRequest,
    pool: String,
    variable_decls: BTreeMap<String, Declared>,
) -> NewRun {
    NewRun {
        idempotency: (!r.idempotency_key.is_empty()).then(|| crate::store::Idempotency {
            key: r.idempotency_key.clone(),
            request_sha256: request_sha256(&r, &pool),
        }),
        traceparent: run_traceparent(&r.traceparent),
        variable_decls,
        limits: limits_from_pb(r.limits),
        workspace: r.workspace,
        pool,
        kind: kind_from_pb(r.kind),
        bundle_digest: r.bundle_digest,
        variables: r.variables.into_iter().collect::<BTreeMap<_, _>>(),
        var_files: r
            .var_files
            .into_iter()
            .map(|f| (f.name, f.content))
            .collect(),
        auto_approve: r.auto_approve,
        actor: r.actor,
        commit: r.commit,
        pipeline_id: r.pipeline_id,
        source: r.source,
        tags: r.tags.into_iter().collect(),
        ttl_ms: r.ttl_ms,
        env: crate::store::ConnectionValues {
            env: r.env.into_iter().collect(),
            files: BTreeMap::new(),
            plain: r.env_plain,
        },
    }
}

/// What a submit asks for, in a canonical form (maps sorted, file contents hashed), hashed:
/// a retried submit with the same idempotency key must ask for the same.
fn request_sha256(r: &v1::SubmitRunRequest, pool: &str) -> String {
    let sorted = |m: &std::collections::HashMap<String, String>| -> BTreeMap<String, String> {
        m.clone().into_iter().collect()
    };
    let mut sensitive = r.sensitive_variables.clone();
    sensitive.sort();
    let l = r.limits.unwrap_or_default();
    let canonical = serde_json::json!({
        "workspace": r.workspace, "bundle_digest": r.bundle_digest, "pool": pool, "kind": r.kind,
        "variables": sorted(&r.variables), "tags": sorted(&r.tags), "sensitive": sensitive,
        "var_files": r.var_files.iter().map(|f| (f.name.clone(), crate::store::sha256_hex(&f.content))).collect::<Vec<_>>(),
        "auto_approve": r.auto_approve, "commit": r.commit, "pipeline_id": r.pipeline_id, "source": r.source,
        "limits": [l.cpu_secs, l.memory_bytes, l.nproc, l.fsize_bytes, l.timeout_secs],
        "env": sorted(&r.env).into_iter().map(|(k, v)| (k, crate::store::sha256_hex(v.as_bytes()))).collect::<Vec<_>>(),
        "env_plain": r.env_plain,
        "ttl_ms": r.ttl_ms,
    });
    crate::store::sha256_hex(canonical.to_string().as_bytes())
}

/// Tags as one trace attribute and log field: `k=v,k2=v2`, sorted.
fn tag_list(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The trace a new run joins: the current span's (when exported), else the caller's, else a
/// new one.
fn run_traceparent(requested: &str) -> String {
    if let Some(tp) = tofuflow_proto::telemetry::traceparent_of(&tracing::Span::current()) {
        tp
    } else if tofuflow_proto::valid_traceparent(requested) {
        requested.to_string()
    } else {
        let id = uuid::Uuid::new_v4();
        let span = uuid::Uuid::new_v4();
        tofuflow_proto::new_traceparent(
            *id.as_bytes(),
            span.as_bytes()[..8].try_into().unwrap_or([1; 8]),
        )
    }
}

/// Shows a run (viewer); with `show_sensitive` its secrets too (operator, recorded).
pub(super) async fn get(shared: &Shared, req: Request<v1::GetRunRequest>) -> Reply<v1::Run> {
    let ws = run_workspace(shared, &req.get_ref().run_id).await?;
    if !req.get_ref().show_sensitive {
        authorize(shared, &req, Action::ReadRuns, Some(&ws), None).await?;
        let id = req.into_inner().run_id;
        return Ok(Response::new(full_run(shared, &id, false).await?));
    }
    // Seeing secrets is an operator's action, and it is recorded.
    let actor = authorize(
        shared,
        &req,
        Action::ShowSensitive,
        Some(&ws),
        Some(&req.get_ref().actor),
    )
    .await?;
    let id = req.into_inner().run_id;
    shared
        .store
        .record(
            &id,
            &actor,
            "sensitive values shown (run show --show-sensitive)",
        )
        .await?;
    tracing::warn!(run_id = %id, %actor, "sensitive values of a run shown");
    Ok(Response::new(full_run(shared, &id, true).await?))
}

/// Lists runs, newest first (viewer).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListRunsRequest>,
) -> Reply<v1::ListRunsResponse> {
    let ws = Some(req.get_ref().workspace.as_str()).filter(|w| !w.is_empty());
    let (caller, _) = authorize_caller(shared, &req, Action::ReadRuns, ws, None).await?;
    let r = req.into_inner();
    if !r.state.is_empty() {
        r.state
            .parse::<runs::RunState>()
            .map_err(Error::InvalidInput)?;
    }
    tofuflow_proto::names::valid_tags(&r.tags).map_err(Error::InvalidInput)?;
    let filter = crate::store::RunFilter {
        limit: if r.limit == 0 { 50 } else { r.limit.min(1000) } as i64,
        tags: r.tags.into_iter().collect(),
        workspace: r.workspace,
        state: r.state,
        before: r.before,
    };
    let list = shared.store.list_runs(&filter).await?;
    Ok(Response::new(v1::ListRunsResponse {
        runs: list
            .iter()
            .filter(|x| caller.may(Action::ReadRuns, Some(&x.workspace)))
            .map(|x| run_to_pb(x, vec![], 0, false))
            .collect(),
    }))
}

/// Streams a run each time its state or history changes, until it ends (viewer).
pub(super) async fn watch(shared: &Shared, req: Request<v1::GetRunRequest>) -> Reply<RunStream> {
    let ws = run_workspace(shared, &req.get_ref().run_id).await?;
    authorize(shared, &req, Action::ReadRuns, Some(&ws), None).await?;
    let id = req.into_inner().run_id;
    let first = full_run(shared, &id, false).await?;
    let shared = shared.clone();
    let mut changes = shared.store.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut last = first.state.clone();
        let mut last_n = first.transitions.len();
        if tx.send(Ok(first.clone())).await.is_err() {
            return;
        }
        let kind = first.kind;
        let mut done = is_done(&last, kind);
        // Changes made by another coordinator are only seen by polling: keep a steady tick.
        let mut tick = tokio::time::interval(Duration::from_millis(1000));
        while !done {
            tokio::select! {
                c = changes.recv() => if let Ok(ch) = c { if ch.run_id != id || !ch.state { continue; } },
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let Ok(r) = full_run(&shared, &id, false).await else {
                continue;
            };
            if r.state != last || r.transitions.len() != last_n {
                last = r.state.clone();
                last_n = r.transitions.len();
                done = is_done(&last, kind);
                if tx.send(Ok(r)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

/// Streams a run's log lines, and with `follow` new ones until the run ends (viewer).
pub(super) async fn logs(shared: &Shared, req: Request<v1::RunLogsRequest>) -> Reply<LogStream> {
    let ws = run_workspace(shared, &req.get_ref().run_id).await?;
    authorize(shared, &req, Action::ReadRuns, Some(&ws), None).await?;
    let r = req.into_inner();
    let run = shared.store.get_run(&r.run_id).await?;
    let store = shared.store.clone();
    let mut changes = store.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let mut offset = i64::try_from(r.offset).unwrap_or(i64::MAX);
        loop {
            let ended = store
                .get_run(&run.id)
                .await
                .map(|x| runs::is_terminal(x.state, x.kind))
                .unwrap_or(true);
            let rows = match store.logs(&run.id, offset).await {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let n = rows.len();
            for l in rows {
                if tx.send(Ok(log_line_to_pb(l))).await.is_err() {
                    return;
                }
            }
            offset += n as i64;
            if n > 0 {
                continue;
            }
            if !r.follow || ended {
                return;
            }
            tokio::select! {
                _ = changes.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

/// A run's saved plan, its changes with sensitive values masked (viewer).
pub(super) async fn plan(shared: &Shared, req: Request<v1::GetRunRequest>) -> Reply<v1::Plan> {
    let ws = run_workspace(shared, &req.get_ref().run_id).await?;
    authorize(shared, &req, Action::ReadRuns, Some(&ws), None).await?;
    let run = shared.store.get_run(&req.get_ref().run_id).await?;
    if run.plan_json_digest.is_empty() {
        return Err(Error::NotFound(format!(
            "run {} has no saved plan ({}): a plan exists once the run has planned",
            run.id, run.state
        ))
        .into());
    }
    let json = shared.store.get_blob(&run.plan_json_digest).await?;
    let plan: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|e| Error::Internal(format!("run {}'s plan JSON does not parse: {e}", run.id)))?;
    Ok(Response::new(v1::Plan {
        changes_json: runs::plan::masked_changes(&plan, &plan_secrets(&run)).to_string(),
        run_id: run.id,
        has_changes: run.has_changes,
        summary: Some(v1::ChangeSummary {
            add: run.add as u32,
            change: run.change as u32,
            destroy: run.destroy as u32,
        }),
        plan_digest: run.plan_digest,
    }))
}

/// The values of `run` that are secret (as its tasks mask them).
fn plan_secrets(run: &crate::store::Run) -> Vec<String> {
    variables::secrets(&run.variables, &run.var_files, &run.sensitive())
}

/// The workspace of run `id` (roles are checked on it).
async fn run_workspace(shared: &Shared, id: &str) -> Result<String> {
    Ok(shared.store.get_run(id).await?.workspace)
}

/// Refuses the approval of a run by its own submitter where a four-eyes rule covers its
/// workspace.
async fn four_eyes(shared: &Shared, run: &crate::store::Run, actor: &str) -> Result<()> {
    let rules = Rules::load(&shared.store).await?;
    match rules.four_eyes(&run.workspace) {
        Some(rule) if run.submitted_by == actor => Err(Error::PermissionDenied(format!(
            "{actor} submitted run {} and may not approve it: workspace rule {} requires four eyes (another user with the approver role must approve)",
            run.id, rule.workspaces
        ))),
        _ => Ok(()),
    }
}

/// Refuses a submission that the workspace and pool rules do not allow.
pub(super) async fn check_rules(
    shared: &Shared,
    r: &v1::SubmitRunRequest,
    pool: &str,
) -> Result<()> {
    let rules = Rules::load(&shared.store).await?;
    rules
        .check_pool(&r.workspace, pool)
        .and_then(|()| rules.check_module(&r.workspace, &r.source, &r.bundle_digest))
        .map_err(Error::PermissionDenied)?;
    if let Some(rule) = rules.four_eyes(&r.workspace).filter(|_| r.auto_approve) {
        return Err(Error::PermissionDenied(format!(
            "workspace rule {} requires four eyes: --auto-approve is refused; submit without it and have another user with the approver role approve",
            rule.workspaces
        )));
    }
    Ok(())
}

/// What a user does to a run that is under way: [`run_action`] performs it.
#[derive(Clone, Copy, Debug)]
pub(super) enum RunVerb {
    /// Apply the saved plan of a run that waits for approval.
    Approve,
    /// Refuse that plan (final).
    Reject,
    /// Stop the run.
    Cancel,
}

impl RunVerb {
    fn action(self) -> Action {
        match self {
            RunVerb::Approve => Action::Approve,
            RunVerb::Reject => Action::Reject,
            RunVerb::Cancel => Action::Cancel,
        }
    }
}

/// Approves, rejects or cancels a run (operator), recording who and why; answers the run.
pub(super) async fn run_action(
    shared: &Shared,
    req: Request<v1::RunActionRequest>,
    verb: RunVerb,
) -> Reply<v1::Run> {
    let run = shared.store.get_run(&req.get_ref().run_id).await?;
    let actor = authorize(
        shared,
        &req,
        verb.action(),
        Some(&run.workspace),
        Some(&req.get_ref().actor),
    )
    .await?;
    if let RunVerb::Approve = verb {
        four_eyes(shared, &run, &actor).await?;
    }
    let r = req.into_inner();
    let (store, id, reason) = (&shared.store, &r.run_id, &r.reason);
    match verb {
        RunVerb::Approve => {
            store.approve(id, &actor, reason, &shared.policy).await?;
            tracing::info!(run_id = %id, actor = %actor, "run approved");
        }
        RunVerb::Reject => {
            store.reject(id, &actor, reason).await?;
        }
        RunVerb::Cancel => {
            store.cancel(id, &actor, reason).await?;
            tracing::info!(run_id = %id, actor = %actor, "run cancel requested");
        }
    }
    Ok(Response::new(full_run(shared, id, false).await?))
}
