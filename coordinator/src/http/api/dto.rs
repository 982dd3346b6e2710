//! The API's JSON shapes (with their OpenAPI schemas), converted from and to the user
//! service's messages: the HTTP API answers exactly what the gRPC one does.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tofuflow_proto::v1;
use utoipa::{IntoParams, ToSchema};

/// A run: what it is, where it stands, its plan's counts, history, outputs (sensitive ones
/// masked unless asked for), state versions written and audit entries.
#[derive(Serialize, ToSchema)]
pub struct RunJson {
    pub id: String,
    pub workspace: String,
    pub pool: String,
    /// plan_and_apply, plan_only, destroy or drift_check.
    pub kind: String,
    /// pending, queued, planning, awaiting_approval, approved, applying, applied, failed, ...
    pub state: String,
    pub bundle_digest: String,
    pub plan_digest: String,
    pub auto_approve: bool,
    pub submitted_by: String,
    pub commit: String,
    pub pipeline_id: String,
    pub source: String,
    pub tags: BTreeMap<String, String>,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub has_changes: bool,
    pub summary: SummaryJson,
    /// The outputs as `tofu output -json` prints them (sensitive values masked).
    #[schema(value_type = Object)]
    pub outputs: serde_json::Value,
    pub error: String,
    pub limit_hit: String,
    pub variables: BTreeMap<String, String>,
    pub sensitive_variables: Vec<String>,
    pub plan_attempts: u32,
    pub transitions: Vec<TransitionJson>,
    pub state_versions: Vec<VersionRefJson>,
    pub audit_entries: Vec<AuditRefJson>,
    /// The verdicts of the plan policies attached to the workspace.
    pub policy_verdicts: Vec<PolicyVerdictJson>,
}

/// One plan policy's verdict on the run's plan.
#[derive(Serialize, ToSchema)]
pub struct PolicyVerdictJson {
    pub policy: String,
    pub version: i64,
    pub digest: String,
    /// pass, auto_approve, warn, deny or error.
    pub outcome: String,
    pub deny: Vec<String>,
    pub warn: Vec<String>,
    /// Why the policy gave no verdict (its time limit, a failure), or empty.
    pub error: String,
    pub duration_us: i64,
    pub evaluated_unix_ms: i64,
}

impl From<v1::PolicyVerdict> for PolicyVerdictJson {
    fn from(v: v1::PolicyVerdict) -> PolicyVerdictJson {
        PolicyVerdictJson {
            policy: v.policy,
            version: v.version,
            digest: v.digest,
            outcome: v.outcome,
            deny: v.deny,
            warn: v.warn,
            error: v.error,
            duration_us: v.duration_us,
            evaluated_unix_ms: v.evaluated_unix_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SummaryJson {
    pub add: u32,
    pub change: u32,
    pub destroy: u32,
}

/// One change of a run's state, with who and why.
#[derive(Serialize, ToSchema)]
pub struct TransitionJson {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub reason: String,
    pub unix_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct VersionRefJson {
    pub version: i64,
    pub serial: i64,
    pub sha256: String,
    pub created_unix_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AuditRefJson {
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    pub unix_ms: i64,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

fn kind_name(k: i32) -> String {
    match v1::RunKind::try_from(k) {
        Ok(v1::RunKind::PlanOnly) => "plan_only",
        Ok(v1::RunKind::Destroy) => "destroy",
        Ok(v1::RunKind::DriftCheck) => "drift_check",
        _ => "plan_and_apply",
    }
    .to_string()
}

/// The wire kind of a kind's name (`plan_and_apply` when empty).
pub fn kind_of(name: &str) -> Result<i32, String> {
    match name {
        "" | "plan_and_apply" => Ok(v1::RunKind::PlanAndApply as i32),
        "plan_only" => Ok(v1::RunKind::PlanOnly as i32),
        "destroy" => Ok(v1::RunKind::Destroy as i32),
        o => Err(format!(
            "unknown run kind {o:?}: use plan_and_apply, plan_only or destroy"
        )),
    }
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

impl From<v1::Run> for RunJson {
    fn from(r: v1::Run) -> RunJson {
        let s = r.summary.unwrap_or_default();
        RunJson {
            kind: kind_name(r.kind),
            summary: SummaryJson {
                add: s.add,
                change: s.change,
                destroy: s.destroy,
            },
            outputs: json_of(&r.outputs_json),
            tags: r.tags.into_iter().collect(),
            variables: r.variables.into_iter().collect(),
            transitions: r
                .transitions
                .into_iter()
                .map(TransitionJson::from)
                .collect(),
            state_versions: r
                .state_versions
                .into_iter()
                .map(|v| VersionRefJson {
                    version: v.version,
                    serial: v.serial,
                    sha256: v.sha256,
                    created_unix_ms: v.created_unix_ms,
                })
                .collect(),
            policy_verdicts: r
                .policy_verdicts
                .into_iter()
                .map(PolicyVerdictJson::from)
                .collect(),
            audit_entries: r
                .audit_entries
                .into_iter()
                .map(|a| AuditRefJson {
                    detail: json_of(&a.detail_json),
                    seq: a.seq,
                    kind: a.kind,
                    actor: a.actor,
                    unix_ms: a.unix_ms,
                })
                .collect(),
            id: r.id,
            workspace: r.workspace,
            pool: r.pool,
            state: r.state,
            bundle_digest: r.bundle_digest,
            plan_digest: r.plan_digest,
            auto_approve: r.auto_approve,
            submitted_by: r.submitted_by,
            commit: r.commit,
            pipeline_id: r.pipeline_id,
            source: r.source,
            created_unix_ms: r.created_unix_ms,
            updated_unix_ms: r.updated_unix_ms,
            has_changes: r.has_changes,
            error: r.error,
            limit_hit: r.limit_hit,
            sensitive_variables: r.sensitive_variables,
            plan_attempts: r.plan_attempts,
        }
    }
}

impl From<v1::Transition> for TransitionJson {
    fn from(t: v1::Transition) -> TransitionJson {
        TransitionJson {
            from: t.from_state,
            to: t.to_state,
            actor: t.actor,
            reason: t.reason,
            unix_ms: t.unix_ms,
        }
    }
}

/// A page of runs, newest first; `next` is the `before` of the next page (absent at the end).
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunJson>,
    pub next: Option<String>,
}

/// Filters and paging of the run list.
#[derive(IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    pub workspace: Option<String>,
    pub state: Option<String>,
    /// `key=value`; repeat the parameter for several (runs carrying all of them).
    pub tag: Vec<String>,
    /// Runs older than this run id (the previous page's `next`).
    pub before: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RunQuery {
    type Rejection = super::Problem;
    /// Reads the query string, `tag` repeatable.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, super::Problem> {
        let mut q = RunQuery::default();
        let raw = parts.uri.query().unwrap_or_default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "workspace" => q.workspace = Some(v),
                "state" => q.state = Some(v),
                "tag" => q.tag.push(v),
                "before" => q.before = Some(v),
                "limit" => q.limit = Some(limit_param(&v)?),
                other => {
                    return Err(super::Problem::bad_request(format!(
                        "unknown parameter {other:?}: use workspace, state, tag, before, limit"
                    )))
                }
            }
        }
        Ok(q)
    }
}

/// A run to start. The bundle is uploaded first (`POST /api/v1/bundles`) or already stored.
#[derive(Deserialize, ToSchema)]
pub struct SubmitBody {
    pub workspace: String,
    /// `sha256:…`, as the bundle upload answered.
    pub bundle_digest: String,
    #[serde(default)]
    pub pool: String,
    /// plan_and_apply (default), plan_only or destroy.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Variables whose values are secret even if the module does not say so.
    #[serde(default)]
    pub sensitive_variables: Vec<String>,
    /// Variables files (`.tfvars`), content in base64.
    #[serde(default)]
    pub var_files: Vec<VarFileBody>,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub pipeline_id: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A time to live in milliseconds for what the run applies, from its apply (0: none).
    #[serde(default)]
    pub ttl_ms: i64,
    /// Environment variables for this run's tasks only (e.g. an Airflow connection's fields):
    /// sealed at rest, given to its tasks with the lease, masked, erased when the run ends.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Keys of `env` that are not secret (not masked; no minimum length).
    #[serde(default)]
    pub env_plain: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct VarFileBody {
    pub name: String,
    pub content_base64: String,
}

impl SubmitBody {
    /// The gRPC request it stands for; `key` is the `Idempotency-Key` header.
    pub fn into_request(self, key: String) -> Result<v1::SubmitRunRequest, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut var_files = Vec::new();
        for f in self.var_files {
            let content = b64
                .decode(f.content_base64.trim())
                .map_err(|e| format!("var file {:?}: content_base64 is not base64: {e}", f.name))?;
            var_files.push(v1::VarFile {
                name: f.name,
                content,
            });
        }
        Ok(v1::SubmitRunRequest {
            kind: kind_of(&self.kind)?,
            workspace: self.workspace,
            bundle_digest: self.bundle_digest,
            pool: self.pool,
            variables: self.variables.into_iter().collect(),
            sensitive_variables: self.sensitive_variables,
            var_files,
            auto_approve: self.auto_approve,
            commit: self.commit,
            pipeline_id: self.pipeline_id,
            source: self.source,
            tags: self.tags.into_iter().collect(),
            idempotency_key: key,
            ttl_ms: self.ttl_ms,
            env: self.env.into_iter().collect(),
            env_plain: self.env_plain,
            ..Default::default()
        })
    }
}

/// Why (approve, reject, cancel).
#[derive(Deserialize, ToSchema, Default)]
pub struct ReasonBody {
    #[serde(default)]
    pub reason: String,
}

/// A stored bundle.
#[derive(Serialize, ToSchema)]
pub struct BundleJson {
    pub digest: String,
    pub size: u64,
    /// It was stored before (bundles are stored once per content).
    pub existed: bool,
}

/// One line of a run's log; `cursor` is its place in the run's log (phases and attempts in
/// order), for resuming after it.
#[derive(Serialize, ToSchema)]
pub struct LogLineJson {
    pub cursor: String,
    pub phase: String,
    pub attempt: u32,
    pub seq: u64,
    pub unix_ms: i64,
    /// stdout, stderr or system (tofuflow's own lines).
    pub stream: String,
    pub line: String,
}

impl LogLineJson {
    /// The `index`-th line of its run's log.
    pub fn new(index: u64, l: v1::LogLine) -> LogLineJson {
        LogLineJson {
            cursor: index.to_string(),
            stream: match v1::LogStream::try_from(l.stream) {
                Ok(v1::LogStream::Stderr) => "stderr",
                Ok(v1::LogStream::System) => "system",
                _ => "stdout",
            }
            .into(),
            phase: l.phase,
            attempt: l.attempt,
            seq: l.seq,
            unix_ms: l.unix_ms,
            line: l.line,
        }
    }
}

/// A page of log lines after a cursor; `complete` when the run has ended and this is the last.
#[derive(Serialize, ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLineJson>,
    /// The `after` of the next page.
    pub next: Option<String>,
    pub complete: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Lines after this cursor (a line's `cursor`, or the previous page's `next`).
    pub after: Option<String>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Show sensitive values (operator; recorded in the run's history).
    #[serde(default)]
    pub show_sensitive: bool,
}

/// One stored state version.
#[derive(Serialize, ToSchema)]
pub struct StateVersionJson {
    pub version: i64,
    pub serial: i64,
    pub lineage: String,
    pub sha256: String,
    pub size: i64,
    /// The run (and attempt) that wrote it; empty for a rollback or a manual push.
    pub run_id: String,
    pub attempt: i64,
    pub actor: String,
    pub created_unix_ms: i64,
}

impl From<v1::StateVersionInfo> for StateVersionJson {
    fn from(v: v1::StateVersionInfo) -> StateVersionJson {
        StateVersionJson {
            version: v.version,
            serial: v.serial,
            lineage: v.lineage,
            sha256: v.sha256,
            size: v.size,
            run_id: v.run_id,
            attempt: v.attempt,
            actor: v.actor,
            created_unix_ms: v.created_unix_ms,
        }
    }
}

/// A workspace's state: its versions (newest first), its audit trail and its lock.
#[derive(Serialize, ToSchema)]
pub struct StateJson {
    pub versions: Vec<StateVersionJson>,
    pub events: Vec<StateEventJson>,
    /// Who holds the lock ('' when unlocked) and the lock's info (JSON text).
    pub lock_owner: String,
    pub lock_info: String,
}

#[derive(Serialize, ToSchema)]
pub struct StateEventJson {
    pub version: i64,
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub unix_ms: i64,
}

impl From<v1::StateVersionList> for StateJson {
    fn from(l: v1::StateVersionList) -> StateJson {
        StateJson {
            versions: l.versions.into_iter().map(StateVersionJson::from).collect(),
            events: l
                .events
                .into_iter()
                .map(|e| StateEventJson {
                    version: e.version,
                    action: e.action,
                    actor: e.actor,
                    reason: e.reason,
                    unix_ms: e.unix_ms,
                })
                .collect(),
            lock_owner: l.lock_owner,
            lock_info: l.lock_info,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RollbackBody {
    /// The version whose content becomes current again.
    pub to_version: i64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct UnlockBody {
    #[serde(default)]
    pub reason: String,
    /// Release someone else's lock, a run's included (admin; recorded).
    #[serde(default)]
    pub force: bool,
}

#[derive(Serialize, ToSchema)]
pub struct LockJson {
    pub lock_id: String,
    pub owner: String,
    pub info: String,
}

impl From<v1::StateLockInfo> for LockJson {
    fn from(l: v1::StateLockInfo) -> LockJson {
        LockJson {
            lock_id: l.lock_id,
            owner: l.owner,
            info: l.info,
        }
    }
}

/// An agent: pools, labels (GPUs), capacity, what it runs, when it was last heard of.
#[derive(Serialize, ToSchema)]
pub struct AgentJson {
    pub id: String,
    pub name: String,
    pub pools: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub capacity: u32,
    pub running: u32,
    pub state: String,
    pub last_seen_unix_ms: i64,
    pub revoked_unix_ms: i64,
}

impl From<v1::Agent> for AgentJson {
    fn from(a: v1::Agent) -> AgentJson {
        AgentJson {
            id: a.id,
            name: a.name,
            pools: a.pools,
            labels: a.labels.into_iter().collect(),
            capacity: a.capacity,
            running: a.running,
            state: a.state,
            last_seen_unix_ms: a.last_seen_unix_ms,
            revoked_unix_ms: a.revoked_unix_ms,
        }
    }
}

/// One audit log entry, with its place in the hash chain.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryJson {
    pub seq: i64,
    pub unix_ms: i64,
    pub kind: String,
    pub actor: String,
    pub workspace: String,
    pub run_id: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub prev_sha256: String,
    pub sha256: String,
}

impl From<v1::AuditEntry> for AuditEntryJson {
    fn from(e: v1::AuditEntry) -> AuditEntryJson {
        AuditEntryJson {
            detail: json_of(&e.detail_json),
            seq: e.seq,
            unix_ms: e.unix_ms,
            kind: e.kind,
            actor: e.actor,
            workspace: e.workspace,
            run_id: e.run_id,
            prev_sha256: e.prev_sha256,
            sha256: e.sha256,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub run_id: Option<String>,
    pub workspace: Option<String>,
    /// run_submitted, run_approved, connection_read, ...
    pub kind: Option<String>,
    /// Entries after this sequence number, oldest first.
    pub since_seq: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Who the caller is and what they hold.
#[derive(Serialize, ToSchema)]
pub struct WhoAmIJson {
    /// Empty on an --insecure-open coordinator.
    pub name: String,
    pub open: bool,
    pub grants: Vec<GrantJson>,
    pub token_id: String,
    pub token_expires_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct GrantJson {
    pub role: String,
    pub workspaces: String,
}

impl From<v1::WhoAmIResponse> for WhoAmIJson {
    fn from(w: v1::WhoAmIResponse) -> WhoAmIJson {
        WhoAmIJson {
            name: w.name,
            open: w.open,
            grants: w
                .grants
                .into_iter()
                .map(|g| GrantJson {
                    role: g.role,
                    workspaces: g.workspaces,
                })
                .collect(),
            token_id: w.token_id,
            token_expires_ms: w.token_expires_ms,
        }
    }
}

/// A run's saved plan: counts and the changes (`tofu show -json`'s resource_changes,
/// resource_drift and output_changes) with sensitive values masked.
#[derive(Serialize, ToSchema)]
pub struct PlanJson {
    pub run_id: String,
    pub has_changes: bool,
    pub summary: SummaryJson,
    pub plan_digest: String,
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

impl From<v1::Plan> for PlanJson {
    fn from(p: v1::Plan) -> PlanJson {
        let s = p.summary.unwrap_or_default();
        PlanJson {
            changes: json_of(&p.changes_json),
            run_id: p.run_id,
            has_changes: p.has_changes,
            summary: SummaryJson {
                add: s.add,
                change: s.change,
                destroy: s.destroy,
            },
            plan_digest: p.plan_digest,
        }
    }
}

/// The audit chain's verification: whether every entry's hash and link hold, how many did,
/// the last good entry (keep it elsewhere to notice a rewritten log), the first bad one.
#[derive(Serialize, ToSchema)]
pub struct AuditVerifyJson {
    pub ok: bool,
    pub checked: u64,
    pub head_seq: i64,
    pub head_sha256: String,
    pub bad_seq: i64,
    pub reason: String,
}

impl From<v1::VerifyAuditResponse> for AuditVerifyJson {
    fn from(v: v1::VerifyAuditResponse) -> AuditVerifyJson {
        AuditVerifyJson {
            ok: v.ok,
            checked: v.checked,
            head_seq: v.head_seq,
            head_sha256: v.head_sha256,
            bad_seq: v.bad_seq,
            reason: v.reason,
        }
    }
}

/// A workflow run to start.
#[derive(Deserialize, ToSchema)]
pub struct StartWorkflowBody {
    /// The workflow file's text (HCL).
    pub definition: String,
    /// The file's name, as errors name it (default `workflow.hcl`).
    pub file_name: Option<String>,
    /// Each `source` the file names and the digest of the bundle uploaded for it.
    pub bundles: BTreeMap<String, String>,
    /// Destroy every target, dependants first.
    pub destroy: Option<bool>,
    /// `each`, `once` or `auto` (default: the file's).
    pub approval: Option<String>,
    /// The pool of stacks that name none (default `default`).
    pub pool: Option<String>,
    /// Tags on every run of the workflow run.
    pub tags: Option<BTreeMap<String, String>>,
    /// A time to live for what it creates, in milliseconds from its start, as `workflow run
    /// --ttl` (not with `destroy`).
    pub ttl_ms: Option<i64>,
}

impl StartWorkflowBody {
    /// The request `StartWorkflow` takes (the actor is the caller).
    pub fn into_request(self, idempotency_key: String) -> v1::StartWorkflowRequest {
        v1::StartWorkflowRequest {
            file_name: self.file_name.unwrap_or_else(|| "workflow.hcl".into()),
            definition: self.definition,
            bundles: self.bundles.into_iter().collect(),
            destroy: self.destroy.unwrap_or(false),
            approval: self.approval.unwrap_or_default(),
            pool: self.pool.unwrap_or_default(),
            tags: self.tags.unwrap_or_default().into_iter().collect(),
            actor: String::new(),
            ttl_ms: self.ttl_ms.unwrap_or(0),
            idempotency_key,
        }
    }
}

/// Filters and paging of workflow runs.
#[derive(IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct WorkflowsQuery {
    /// `key=value`; repeat the parameter for several (workflow runs carrying all of them).
    pub tag: Vec<String>,
    /// Only workflow runs older than this one.
    pub before: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for WorkflowsQuery {
    type Rejection = super::Problem;
    /// Reads the query string, `tag` repeatable.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, super::Problem> {
        let mut q = WorkflowsQuery::default();
        let raw = parts.uri.query().unwrap_or_default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "tag" => q.tag.push(v),
                "before" => q.before = Some(v),
                "limit" => q.limit = Some(limit_param(&v)?),
                other => {
                    return Err(super::Problem::bad_request(format!(
                        "unknown parameter {other:?}: use tag, before, limit"
                    )))
                }
            }
        }
        Ok(q)
    }
}

/// A `limit` query parameter.
fn limit_param(v: &str) -> Result<u32, super::Problem> {
    v.parse()
        .map_err(|_| super::Problem::bad_request(format!("limit {v:?} is not a number")))
}

/// `tag` query parameters (`key=value` each) as the filter the user API takes.
pub fn tag_filter(
    tags: &[String],
) -> Result<std::collections::HashMap<String, String>, super::Problem> {
    tags.iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    super::Problem::bad_request(format!("tag {t:?}: expected key=value"))
                })
        })
        .collect()
}

/// A rollout action's path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RolloutActionPath {
    /// The workflow run.
    pub id: String,
    /// The for_each stack whose rollout.
    pub stack: String,
    /// pause, resume, abort or retry-failed.
    pub action: String,
}

/// A target of a workflow run.
#[derive(Serialize, ToSchema)]
pub struct WorkflowTargetJson {
    pub key: String,
    pub stack: String,
    pub each_key: String,
    pub workspace: String,
    pub pool: String,
    /// waiting, running, succeeded, failed, skipped, cancelled.
    pub state: String,
    pub run_id: String,
    pub runs: Vec<String>,
    pub run_state: String,
    pub reason: String,
    pub depends_on: Vec<String>,
    /// Its wave in a rollout (0: none).
    pub wave: u32,
    pub bundle_digest: String,
}

/// A for_each stack's rollout.
#[derive(Serialize, ToSchema)]
pub struct RolloutJson {
    pub stack: String,
    /// running, paused, halted, aborted, done.
    pub state: String,
    pub wave: u32,
    pub waves: u32,
    pub failures: u32,
    pub max_failures: u32,
    pub max_parallel: u32,
    pub reason: String,
    pub resume_after_unix_ms: i64,
}

/// A workflow run.
#[derive(Serialize, ToSchema)]
pub struct WorkflowRunJson {
    pub id: String,
    pub file_name: String,
    /// awaiting_approval, running, succeeded, failed, cancelled.
    pub state: String,
    pub destroy: bool,
    pub approval: String,
    pub actor: String,
    pub tags: BTreeMap<String, String>,
    pub reason: String,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub bundles: BTreeMap<String, String>,
    pub targets: Vec<WorkflowTargetJson>,
    pub rollouts: Vec<RolloutJson>,
}

impl From<v1::WorkflowRun> for WorkflowRunJson {
    fn from(w: v1::WorkflowRun) -> WorkflowRunJson {
        WorkflowRunJson {
            id: w.id,
            file_name: w.file_name,
            state: w.state,
            destroy: w.destroy,
            approval: w.approval,
            actor: w.actor,
            tags: w.tags.into_iter().collect(),
            reason: w.reason,
            created_unix_ms: w.created_unix_ms,
            updated_unix_ms: w.updated_unix_ms,
            bundles: w.bundles.into_iter().collect(),
            targets: w
                .targets
                .into_iter()
                .map(|t| WorkflowTargetJson {
                    key: t.key,
                    stack: t.stack,
                    each_key: t.each_key,
                    workspace: t.workspace,
                    pool: t.pool,
                    state: t.state,
                    run_id: t.run_id,
                    runs: t.runs,
                    run_state: t.run_state,
                    reason: t.reason,
                    depends_on: t.depends_on,
                    wave: t.wave,
                    bundle_digest: t.bundle_digest,
                })
                .collect(),
            rollouts: w
                .rollouts
                .into_iter()
                .map(|r| RolloutJson {
                    stack: r.stack,
                    state: r.state,
                    wave: r.wave,
                    waves: r.waves,
                    failures: r.failures,
                    max_failures: r.max_failures,
                    max_parallel: r.max_parallel,
                    reason: r.reason,
                    resume_after_unix_ms: r.resume_after_unix_ms,
                })
                .collect(),
        }
    }
}

/// What a workflow rollback goes back to.
#[derive(Deserialize, ToSchema, Default)]
pub struct WorkflowRollbackBody {
    /// The succeeded workflow run to re-apply (default: the newest one before, same workspaces).
    pub to: Option<String>,
    /// `each`, `once` or `auto` (default: that run's).
    pub approval: Option<String>,
}
