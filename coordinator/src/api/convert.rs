//! Every conversion between the wire types of `tofuflow_proto::v1` and the coordinator's own:
//! prost types stop here. Masking of sensitive values for display happens here too, so no
//! handler can forget it.

use crate::runs::{variables, Phase, RunKind};
use crate::store::{self, ClaimGrant};
use tofuflow_proto::v1;

/// What stands in for a value that is not shown.
const HIDDEN: &str = "(sensitive)";

/// The wire form of a run kind.
pub fn kind_to_pb(k: RunKind) -> v1::RunKind {
    match k {
        RunKind::PlanAndApply => v1::RunKind::PlanAndApply,
        RunKind::PlanOnly => v1::RunKind::PlanOnly,
        RunKind::DriftCheck => v1::RunKind::DriftCheck,
        RunKind::Destroy => v1::RunKind::Destroy,
    }
}

/// The run kind of a wire value; unspecified or unknown values mean plan and apply.
pub fn kind_from_pb(kind: i32) -> RunKind {
    match v1::RunKind::try_from(kind).unwrap_or(v1::RunKind::Unspecified) {
        v1::RunKind::PlanOnly => RunKind::PlanOnly,
        v1::RunKind::DriftCheck => RunKind::DriftCheck,
        v1::RunKind::Destroy => RunKind::Destroy,
        _ => RunKind::PlanAndApply,
    }
}

/// The wire form of a task phase.
pub fn phase_to_pb(p: Phase) -> v1::Phase {
    match p {
        Phase::Plan => v1::Phase::Plan,
        Phase::Apply => v1::Phase::Apply,
    }
}

/// The wire form of a run's task limits.
pub fn limits_to_pb(l: &store::Limits) -> v1::TaskLimits {
    v1::TaskLimits {
        cpu_secs: l.cpu_secs,
        memory_bytes: l.memory_bytes,
        nproc: l.nproc,
        fsize_bytes: l.fsize_bytes,
        timeout_secs: l.timeout_secs,
    }
}

/// The task limits a submitter asked for; none asked means no limits of the run's own.
pub fn limits_from_pb(l: Option<v1::TaskLimits>) -> store::Limits {
    l.map(|l| store::Limits {
        cpu_secs: l.cpu_secs,
        memory_bytes: l.memory_bytes,
        nproc: l.nproc,
        fsize_bytes: l.fsize_bytes,
        timeout_secs: l.timeout_secs,
    })
    .unwrap_or_default()
}

/// `tofu output -json` text with the values of sensitive outputs hidden.
fn mask_outputs(outputs: &str) -> String {
    if outputs.trim().is_empty() {
        return String::new();
    }
    let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(outputs) else {
        return format!("\"{HIDDEN}\"");
    };
    for o in m.values_mut() {
        if o.get("sensitive").and_then(|s| s.as_bool()) == Some(true) {
            o["value"] = serde_json::Value::String(HIDDEN.into());
        }
    }
    serde_json::Value::Object(m).to_string()
}

/// The wire form of one recorded transition.
fn transition_to_pb(t: store::Transition) -> v1::Transition {
    v1::Transition {
        from_state: t.from,
        to_state: t.to,
        actor: t.actor,
        reason: t.reason,
        unix_ms: t.at_ms,
    }
}

/// A run as the API shows it; unless `reveal`, sensitive variable values and outputs are
/// replaced by "(sensitive)".
pub fn run_to_pb(
    r: &store::Run,
    transitions: Vec<store::Transition>,
    plan_attempts: u32,
    reveal: bool,
) -> v1::Run {
    let sensitive = r.sensitive();
    let variables = r
        .variables
        .iter()
        .map(|(k, v)| {
            let shown = if reveal || !sensitive.contains(k) {
                v.clone()
            } else {
                HIDDEN.to_string()
            };
            (k.clone(), shown)
        })
        .collect();
    v1::Run {
        tags: r.tags.clone().into_iter().collect(),
        id: r.id.clone(),
        workspace: r.workspace.clone(),
        pool: r.pool.clone(),
        kind: kind_to_pb(r.kind) as i32,
        state: r.state.as_str().to_string(),
        bundle_digest: r.bundle_digest.clone(),
        auto_approve: r.auto_approve,
        submitted_by: r.submitted_by.clone(),
        commit: r.commit.clone(),
        pipeline_id: r.pipeline_id.clone(),
        source: r.source.clone(),
        created_unix_ms: r.created_ms,
        updated_unix_ms: r.updated_ms,
        summary: Some(v1::ChangeSummary {
            add: r.add as u32,
            change: r.change as u32,
            destroy: r.destroy as u32,
        }),
        has_changes: r.has_changes,
        outputs_json: if reveal {
            r.outputs.clone()
        } else {
            mask_outputs(&r.outputs)
        },
        error: r.error.clone(),
        plan_digest: r.plan_digest.clone(),
        transitions: transitions.into_iter().map(transition_to_pb).collect(),
        variables,
        sensitive_variables: sensitive.into_iter().collect(),
        plan_attempts,
        traceparent: r.traceparent.clone(),
        limits: Some(limits_to_pb(&r.limits)),
        limit_hit: r.limit_hit.clone(),
        state_versions: Vec::new(),
        audit_entries: Vec::new(),
        policy_verdicts: Vec::new(),
    }
}

/// The wire form of an audit entry, whole.
pub fn audit_to_pb(r: crate::audit::AuditRecord) -> v1::AuditEntry {
    v1::AuditEntry {
        seq: r.seq,
        unix_ms: r.at_ms,
        kind: r.kind,
        actor: r.actor,
        workspace: r.workspace,
        run_id: r.run_id,
        detail_json: r.detail,
        prev_sha256: r.prev_sha256,
        sha256: r.sha256,
    }
}

/// An audit entry as a run links to it.
pub fn audit_ref_to_pb(r: crate::audit::AuditRecord) -> v1::AuditRef {
    v1::AuditRef {
        seq: r.seq,
        kind: r.kind,
        actor: r.actor,
        unix_ms: r.at_ms,
        detail_json: r.detail,
    }
}

/// A state version as a run links to it.
pub fn version_ref_to_pb(workspace: &str, m: store::StateVersionMeta) -> v1::StateVersionRef {
    v1::StateVersionRef {
        workspace: workspace.to_string(),
        version: m.version,
        serial: m.serial,
        sha256: m.sha256,
        created_unix_ms: m.created_ms,
    }
}

/// The wire form of one stored log line (phase 0 is the plan, everything after the apply).
pub fn log_line_to_pb(l: store::LogRow) -> v1::LogLine {
    v1::LogLine {
        phase: if l.phase_order == 0 {
            "plan".into()
        } else {
            "apply".into()
        },
        attempt: l.attempt as u32,
        seq: l.seq as u64,
        unix_ms: l.unix_ms,
        stream: l.stream as i32,
        line: l.line,
    }
}

/// The wire form of a registered agent.
pub fn agent_to_pb(a: store::Agent) -> v1::Agent {
    v1::Agent {
        id: a.id,
        name: a.name,
        pools: a.pools,
        labels: a.labels.into_iter().collect(),
        capacity: a.capacity as u32,
        state: a.state,
        last_seen_unix_ms: a.last_seen_ms,
        running: a.running as u32,
        revoked_unix_ms: a.revoked_ms,
    }
}

/// The wire form of a state version's metadata.
pub fn version_to_pb(m: store::StateVersionMeta) -> v1::StateVersionInfo {
    v1::StateVersionInfo {
        version: m.version,
        serial: m.serial,
        lineage: m.lineage,
        sha256: m.sha256,
        size: m.size,
        run_id: m.run_id,
        attempt: m.attempt,
        actor: m.actor,
        created_unix_ms: m.created_ms,
    }
}

/// The wire form of an entry of a workspace's state audit trail.
pub fn state_event_to_pb(e: store::StateEvent) -> v1::StateEventInfo {
    v1::StateEventInfo {
        version: e.version,
        action: e.action,
        actor: e.actor,
        reason: e.reason,
        unix_ms: e.at_ms,
    }
}

/// What an agent needs to run a granted task: the run's bundle, variables and secrets, the
/// plan for an apply, limits, and a state-backend credential for the run's workspace at
/// `public_http_url`.
pub fn task_spec(g: &ClaimGrant, public_http_url: &str) -> v1::TaskSpec {
    let run = &g.run;
    let address = format!(
        "{}/state/{}",
        public_http_url.trim_end_matches('/'),
        run.workspace
    );
    v1::TaskSpec {
        run_id: run.id.clone(),
        task_id: g.task.id.clone(),
        attempt: g.task.attempt,
        phase: phase_to_pb(g.task.phase) as i32,
        workspace: run.workspace.clone(),
        bundle_digest: run.bundle_digest.clone(),
        destroy: run.kind == RunKind::Destroy,
        // Values reach tofu in a variables file, never as `-var` arguments.
        variables: Default::default(),
        var_files: var_files(run),
        secrets: variables::secrets(&run.variables, &run.var_files, &run.sensitive()),
        plan_digest: if g.task.phase == Phase::Apply {
            run.plan_digest.clone()
        } else {
            String::new()
        },
        backend: Some(v1::StateBackend {
            address: address.clone(),
            lock_address: address.clone(),
            unlock_address: address,
            username: g.task.id.clone(),
            password: g.token.clone(),
        }),
        traceparent: run.traceparent.clone(),
        env: Default::default(),
        limits: Some(limits_to_pb(&run.limits)),
        identity: Some(identity_to_pb(&g.identity)),
        connections: g.connections.iter().map(connection_grant_to_pb).collect(),
        drift_check: run.kind == RunKind::DriftCheck,
        refresh_only: run.kind == RunKind::DriftCheck && run.drift.refresh_only,
    }
}

/// A task's ID token and cloud settings, for its claim answer.
fn identity_to_pb(i: &crate::lifecycle::IssuedIdentity) -> v1::TaskIdentity {
    let gcp = i.gcp.clone();
    let az = i.azure.clone();
    v1::TaskIdentity {
        id_token: i.token.clone(),
        expires_unix_ms: i.window.expires_ms,
        aws_role_arn: i.aws_role_arn.clone().unwrap_or_default(),
        gcp_audience: gcp.as_ref().map(|g| g.audience.clone()).unwrap_or_default(),
        gcp_service_account: gcp.and_then(|g| g.service_account).unwrap_or_default(),
        azure_client_id: az.as_ref().map(|a| a.client_id.clone()).unwrap_or_default(),
        azure_tenant_id: az.as_ref().map(|a| a.tenant_id.clone()).unwrap_or_default(),
        azure_subscription_id: az.map(|a| a.subscription_id).unwrap_or_default(),
    }
}

/// Fresh ID tokens, for a heartbeat answer.
pub fn renewed_to_pb(r: Vec<crate::lifecycle::RenewedToken>) -> Vec<v1::RenewedIdToken> {
    r.into_iter()
        .map(|t| v1::RenewedIdToken {
            task_id: t.task_id,
            id_token: t.token,
            expires_unix_ms: t.window.expires_ms,
        })
        .collect()
}

/// An identity configuration, as the user API shows it.
pub fn identity_config_to_pb(i: &crate::oidc::Identity) -> v1::Identity {
    let f = i.fields();
    v1::Identity {
        name: f.name,
        workspaces: f.workspaces,
        audience: f.audience,
        aws_role_arn: f.aws_role_arn,
        aws_plan_role_arn: f.aws_plan_role_arn,
        aws_apply_role_arn: f.aws_apply_role_arn,
        gcp_audience: f.gcp_audience,
        gcp_service_account: f.gcp_service_account,
        azure_client_id: f.azure_client_id,
        azure_tenant_id: f.azure_tenant_id,
        azure_subscription_id: f.azure_subscription_id,
        updated_by: i.updated_by.clone(),
        updated_unix_ms: i.updated_ms,
    }
}

/// An identity configuration as a user typed it (checked by `oidc::Identity::check`).
pub fn identity_fields(r: &v1::Identity) -> crate::oidc::identities::IdentityFields {
    crate::oidc::identities::IdentityFields {
        name: r.name.clone(),
        workspaces: r.workspaces.clone(),
        audience: r.audience.clone(),
        aws_role_arn: r.aws_role_arn.clone(),
        aws_plan_role_arn: r.aws_plan_role_arn.clone(),
        aws_apply_role_arn: r.aws_apply_role_arn.clone(),
        gcp_audience: r.gcp_audience.clone(),
        gcp_service_account: r.gcp_service_account.clone(),
        azure_client_id: r.azure_client_id.clone(),
        azure_tenant_id: r.azure_tenant_id.clone(),
        azure_subscription_id: r.azure_subscription_id.clone(),
    }
}

/// One connection's values for the claim answer (the only place they leave the store).
fn connection_grant_to_pb(g: &store::GrantedConnection) -> v1::ConnectionGrant {
    v1::ConnectionGrant {
        name: g.name.clone(),
        version: g.version as u64,
        env: g.values.env.clone().into_iter().collect(),
        files: g.values.files.clone().into_iter().collect(),
        plain_keys: g.values.plain.clone(),
    }
}

/// A connection as the API shows it: names, globs, history; values of plain keys only.
pub fn connection_to_pb(c: store::Connection) -> v1::Connection {
    let key = |k: store::ConnectionKey| v1::ConnectionKey {
        value: c.plain_values.get(&k.name).cloned().unwrap_or_default(),
        name: k.name,
        file: k.file,
        plain: k.plain,
    };
    v1::Connection {
        phases: c.phases.iter().map(|p| phase_to_pb(*p) as i32).collect(),
        keys: c.keys.clone().into_iter().map(key).collect(),
        versions: c
            .versions
            .into_iter()
            .map(|v| v1::ConnectionVersion {
                version: v.version as u64,
                created_by: v.created_by,
                created_ms: v.created_ms,
                keys: v.keys.into_iter().map(|k| k.name).collect(),
            })
            .collect(),
        name: c.name,
        workspaces: c.workspaces,
        description: c.description,
        version: c.version as u64,
        updated_by: c.updated_by,
        updated_ms: c.updated_ms,
        last_used_ms: c.last_used_ms,
    }
}

/// A webhook as the API shows it (never its secret), with `deliveries` when given.
pub fn webhook_to_pb(w: store::Webhook, deliveries: Vec<store::Delivery>) -> v1::Webhook {
    v1::Webhook {
        name: w.name,
        url: w.url,
        workspaces: w.workspaces,
        events: w.events,
        format: w.format,
        enabled: w.enabled,
        allow_private: w.allow_private,
        created_by: w.created_by,
        created_unix_ms: w.created_ms,
        updated_unix_ms: w.updated_ms,
        deliveries: deliveries.into_iter().map(delivery_to_pb).collect(),
    }
}

/// A webhook delivery with its attempts.
pub fn delivery_to_pb(d: store::Delivery) -> v1::WebhookDelivery {
    v1::WebhookDelivery {
        tries: d
            .tries
            .into_iter()
            .map(|a| v1::WebhookAttempt {
                attempt: a.attempt as u32,
                started_unix_ms: a.started_ms,
                duration_ms: a.duration_ms,
                status_code: a.status_code as u32,
                answer_excerpt: a.answer_excerpt,
                error: a.error,
            })
            .collect(),
        id: d.id,
        webhook: d.webhook,
        event: d.event,
        run_id: d.run_id,
        workspace: d.workspace,
        state: d.state,
        attempts: d.attempts as u32,
        give_up_after: d.give_up_after as u32,
        next_attempt_unix_ms: d.next_ms,
        created_unix_ms: d.created_ms,
        done_unix_ms: d.done_ms,
        body: d.body,
    }
}

/// A request's values, checked by the store.
pub fn connection_values(v: Option<&v1::ConnectionValues>) -> store::ConnectionValues {
    let Some(v) = v else {
        return store::ConnectionValues::default();
    };
    store::ConnectionValues {
        env: v.env.clone().into_iter().collect(),
        files: v.files.clone().into_iter().collect(),
        plain: v.plain_keys.clone(),
    }
}

/// The task's variables files: the run's `-var` values first (as one file), then its own files,
/// in the order given.
fn var_files(run: &store::Run) -> Vec<v1::VarFile> {
    let mut files = Vec::with_capacity(run.var_files.len() + 1);
    if !run.variables.is_empty() {
        files.push(v1::VarFile {
            name: variables::VARS_FILE.into(),
            content: variables::render(&run.variables, &run.variable_decls).into_bytes(),
        });
    }
    files.extend(run.var_files.iter().map(|(n, c)| v1::VarFile {
        name: n.clone(),
        content: c.clone(),
    }));
    files
}

/// An agent's completion, as the lifecycle takes it.
impl From<&v1::CompleteRequest> for crate::runs::TaskReport {
    fn from(r: &v1::CompleteRequest) -> crate::runs::TaskReport {
        let sm = r.summary.unwrap_or_default();
        crate::runs::TaskReport {
            agent_id: r.agent_id.clone(),
            task_id: r.task_id.clone(),
            attempt: r.attempt,
            epoch: r.epoch as i64,
            lease_token: r.lease_token.clone(),
            outcome: match v1::Outcome::try_from(r.outcome) {
                Ok(v1::Outcome::Succeeded) => crate::runs::TaskOutcome::Succeeded,
                Ok(v1::Outcome::Cancelled) => crate::runs::TaskOutcome::Cancelled,
                _ => crate::runs::TaskOutcome::Failed,
            },
            has_changes: r.has_changes,
            summary: crate::runs::ChangeSummary {
                add: sm.add,
                change: sm.change,
                destroy: sm.destroy,
            },
            outputs_json: r.outputs_json.clone(),
            error: r.error.clone(),
            exit_code: r.exit_code,
            limit_hit: r.limit_hit.clone(),
        }
    }
}

/// A batch's log lines, as the lifecycle takes them.
pub fn log_lines(events: &[v1::Event]) -> Vec<crate::runs::LogLine> {
    events
        .iter()
        .map(|e| crate::runs::LogLine {
            seq: e.seq,
            unix_ms: e.unix_ms,
            stream: e.stream as i64,
            line: e.line.clone(),
        })
        .collect()
}

/// An uploaded artifact's kind; unspecified is refused.
pub fn artifact_from_pb(kind: i32) -> crate::error::Result<crate::runs::Artifact> {
    match v1::ArtifactKind::try_from(kind) {
        Ok(v1::ArtifactKind::PlanFile) => Ok(crate::runs::Artifact::PlanFile),
        Ok(v1::ArtifactKind::PlanJson) => Ok(crate::runs::Artifact::PlanJson),
        _ => Err(crate::error::Error::InvalidInput(
            "artifact kind is required".into(),
        )),
    }
}

/// The wire form of an API token (never the token).
pub fn token_to_pb(t: store::ApiToken) -> v1::TokenInfo {
    v1::TokenInfo {
        id: t.id,
        user: t.user,
        description: t.description,
        created_by: t.created_by,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        last_used_ms: t.last_used_ms,
        revoked_ms: t.revoked_ms,
    }
}

/// The wire form of a role grant.
pub fn grant_to_pb(g: store::RoleGrantRow) -> v1::RoleGrant {
    v1::RoleGrant {
        user: g.user,
        role: g.role,
        workspaces: g.workspaces,
        granted_by: g.granted_by,
        granted_ms: g.granted_ms,
    }
}

/// The wire form of a workspace rule.
pub fn workspace_rule_to_pb(r: store::WorkspaceRule) -> v1::WorkspaceRule {
    v1::WorkspaceRule {
        workspaces: r.workspaces,
        four_eyes: r.four_eyes,
        sources: r.sources,
        bundle_digests: r.digests,
        pools: r.pools,
        updated_by: r.updated_by,
        updated_ms: r.updated_ms,
    }
}

/// The wire form of a pool rule.
pub fn pool_rule_to_pb(r: store::PoolRule) -> v1::PoolRule {
    v1::PoolRule {
        pool: r.pool,
        workspaces: r.workspaces,
        updated_by: r.updated_by,
        updated_ms: r.updated_ms,
    }
}

/// The wire form of a join token (never the token).
pub fn join_token_to_pb(t: store::JoinToken) -> v1::JoinTokenInfo {
    v1::JoinTokenInfo {
        id: t.id,
        pools: t.pools,
        created_by: t.created_by,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
    }
}

/// A workflow run and its targets (`run_states`: the state of each target's current run).
pub fn workflow_to_pb(
    w: &crate::store::WorkflowRun,
    targets: &[crate::workflows::Target],
    run_states: &std::collections::BTreeMap<String, String>,
) -> v1::WorkflowRun {
    v1::WorkflowRun {
        id: w.id.clone(),
        file_name: w.file_name.clone(),
        state: w.state.as_str().into(),
        destroy: w.destroy,
        approval: w.approval.as_str().into(),
        actor: w.actor.clone(),
        tags: w.tags.clone().into_iter().collect(),
        reason: w.reason.clone(),
        created_unix_ms: w.created_ms,
        updated_unix_ms: w.updated_ms,
        bundles: w.bundles.clone().into_iter().collect(),
        rollouts: Vec::new(),
        targets: targets
            .iter()
            .map(|t| v1::WorkflowTarget {
                key: t.key.clone(),
                stack: t.stack.clone(),
                each_key: t.each.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
                workspace: t.workspace.clone(),
                pool: t.pool.clone(),
                state: t.state.as_str().into(),
                run_id: t.run_id.clone(),
                runs: t.runs.clone(),
                reason: t.reason.clone(),
                depends_on: t.deps.clone(),
                run_state: run_states.get(&t.run_id).cloned().unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
    }
}

/// An environment with a TTL.
pub fn environment_to_pb(e: store::Environment) -> v1::Environment {
    v1::Environment {
        workspace: e.workspace,
        state: e.state.as_str().to_string(),
        ttl_ms: e.ttl_ms,
        expires_unix_ms: e.expires_ms,
        set_by: e.set_by,
        source_run: e.source_run,
        workflow_run: e.workflow_run,
        destroy_run: e.destroy_run,
        attempts: e.attempts.max(0) as u32,
        next_attempt_unix_ms: e.next_attempt_ms,
        last_error: e.last_error,
        reminder_sent: e.reminder_sent,
        updated_unix_ms: e.updated_ms,
    }
}

/// A workspace's summary for `workspace list`.
pub fn workspace_to_pb(w: store::WorkspaceSummary) -> v1::Workspace {
    let d = w.drift.unwrap_or_default();
    let drift = if d.last_check_run.is_empty() {
        "unchecked"
    } else if d.drifted_since_ms > 0 {
        "drifted"
    } else if !d.last_check_error.is_empty() {
        "check_failed"
    } else {
        "in_sync"
    };
    v1::Workspace {
        name: w.name,
        last_run: w.last_run,
        last_run_state: w.last_run_state,
        last_applied_unix_ms: w.last_applied_ms,
        last_applied_run: w.last_applied_run,
        last_checked_unix_ms: d.last_checked_ms,
        last_check_run: d.last_check_run,
        drift: drift.to_string(),
        drifted_since_unix_ms: d.drifted_since_ms,
        remediation_run: d.remediation_run,
        expires_unix_ms: w.expires_ms,
        last_check_error: d.last_check_error,
        ttl_ms: w.ttl_ms,
    }
}

pub fn schedule_to_pb(s: store::Schedule) -> v1::Schedule {
    v1::Schedule {
        name: s.name,
        cron: s.cron,
        timezone: s.timezone,
        workspace: s.workspace,
        refresh_only: s.options.refresh_only,
        remediate: s.options.remediate,
        missed: s.missed.as_str().to_string(),
        next_tick_unix_ms: s.next_tick_ms,
        last_tick_unix_ms: s.last_tick_ms,
        created_by: s.created_by,
        created_unix_ms: s.created_ms,
        workflow_file: if s.workflow.is_empty() {
            String::new()
        } else {
            <v1::StartWorkflowRequest as prost::Message>::decode(s.workflow.as_slice())
                .map(|w| w.file_name)
                .unwrap_or_else(|_| "(unreadable)".into())
        },
    }
}

pub fn tick_to_pb(t: store::ScheduleTick) -> v1::ScheduleTick {
    v1::ScheduleTick {
        schedule: t.schedule,
        tick_unix_ms: t.tick_ms,
        outcome: t.outcome,
        settled_unix_ms: t.settled_ms,
        runs: t.runs,
        detail: t.detail,
    }
}

/// A plan policy; its source only when `with_source` (`GetPolicy`, answers to changes).
pub fn plan_policy_to_pb(
    p: store::PlanPolicy,
    package: String,
    with_source: bool,
) -> v1::PlanPolicy {
    v1::PlanPolicy {
        name: p.name,
        workspaces: p.workspaces,
        source: if with_source { p.source } else { String::new() },
        digest: p.digest,
        version: p.version,
        description: p.description,
        updated_by: p.updated_by,
        created_unix_ms: p.created_ms,
        updated_unix_ms: p.updated_ms,
        package,
    }
}

/// One policy's verdict on a run's plan.
pub fn policy_verdict_to_pb(v: store::PolicyVerdict) -> v1::PolicyVerdict {
    v1::PolicyVerdict {
        policy: v.policy,
        version: v.version,
        digest: v.digest,
        outcome: v.outcome.as_str().to_string(),
        deny: v.deny,
        warn: v.warn,
        error: v.error,
        duration_us: v.duration_us,
        evaluated_unix_ms: v.evaluated_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_outputs_are_masked_and_unreadable_ones_hidden_whole() {
        let out = r#"{"a":{"sensitive":true,"value":"s3cret"},"b":{"sensitive":false,"value":1}}"#;
        let masked = mask_outputs(out);
        assert!(
            !masked.contains("s3cret") && masked.contains(HIDDEN),
            "{masked}"
        );
        assert!(masked.contains("\"value\":1"), "{masked}");
        assert_eq!(mask_outputs("not json"), format!("\"{HIDDEN}\""));
        assert_eq!(mask_outputs("  "), "");
    }

    #[test]
    fn kinds_round_trip_and_unknown_means_plan_and_apply() {
        for k in [
            RunKind::PlanAndApply,
            RunKind::PlanOnly,
            RunKind::Destroy,
            RunKind::DriftCheck,
        ] {
            assert_eq!(kind_from_pb(kind_to_pb(k) as i32), k);
        }
        assert_eq!(kind_from_pb(999), RunKind::PlanAndApply);
    }
}
