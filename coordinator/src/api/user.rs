//! The gRPC service users (the CLI) call: bundles, runs, approvals, logs, agents.

use super::Shared;
use crate::auth::{self, Action};
use crate::error::Error;
use crate::runs::variables::{self, Declared};
use crate::runs::{self, RunKind};
use crate::store::{self, NewRun};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;
use tofuflow_proto::v1::{self, user_service_server::UserService};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub struct UserApi {
    pub shared: Shared,
}

pub use tofuflow_proto::names::{valid_var_name, valid_workspace};

fn kind_to_pb(k: RunKind) -> v1::RunKind {
    match k {
        RunKind::PlanAndApply => v1::RunKind::PlanAndApply,
        RunKind::PlanOnly => v1::RunKind::PlanOnly,
        RunKind::Destroy => v1::RunKind::Destroy,
    }
}

pub fn limits_to_pb(l: &store::Limits) -> v1::TaskLimits {
    v1::TaskLimits {
        cpu_secs: l.cpu_secs,
        memory_bytes: l.memory_bytes,
        nproc: l.nproc,
        fsize_bytes: l.fsize_bytes,
        timeout_secs: l.timeout_secs,
    }
}

/// What stands in for a value that is not shown.
const HIDDEN: &str = "(sensitive)";

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
        transitions: transitions
            .into_iter()
            .map(|t| v1::Transition {
                from_state: t.from,
                to_state: t.to,
                actor: t.actor,
                reason: t.reason,
                unix_ms: t.at_ms,
            })
            .collect(),
        variables,
        sensitive_variables: sensitive.into_iter().collect(),
        plan_attempts,
        traceparent: r.traceparent.clone(),
        limits: Some(limits_to_pb(&r.limits)),
        limit_hit: r.limit_hit.clone(),
    }
}

type RunStream = Pin<Box<dyn Stream<Item = Result<v1::Run, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<v1::LogLine, Status>> + Send>>;
type StateStream = Pin<Box<dyn Stream<Item = Result<v1::StateChunk, Status>> + Send>>;

impl UserApi {
    /// Who is calling, if they may perform `action` (see [`auth::authorize`]).
    fn authorize<T>(
        &self,
        req: &Request<T>,
        action: Action,
        workspace: Option<&str>,
        claimed: Option<&str>,
    ) -> crate::error::Result<String> {
        auth::authorize(req, self.shared.users_open, action, workspace, claimed).map(|a| a.name)
    }

    async fn full_run(&self, id: &str) -> Result<v1::Run, Status> {
        self.full_run_as(id, false).await
    }

    async fn full_run_as(&self, id: &str, reveal: bool) -> Result<v1::Run, Status> {
        let r = self.shared.store.get_run(id).await?;
        let t = self.shared.store.transitions(id).await?;
        let n = self.shared.store.plan_attempts(id).await?;
        Ok(run_to_pb(&r, t, n, reveal))
    }

    /// The module's variable declarations that matter for this run (from its bundle), with the
    /// submitter's own sensitive marks; refuses variables the module does not declare.
    async fn variable_decls(
        &self,
        r: &mut v1::SubmitRunRequest,
    ) -> Result<BTreeMap<String, Declared>, Status> {
        let bundle = self.shared.store.get_blob(&r.bundle_digest).await?;
        let d = variables::declarations(&bundle);
        if d.complete {
            let optional = std::mem::take(&mut r.optional_variables);
            r.variables
                .retain(|k, _| d.vars.contains_key(k) || !optional.contains(k));
            if let Some(k) = r.variables.keys().find(|k| !d.vars.contains_key(*k)) {
                let names: Vec<&str> = d.vars.keys().map(String::as_str).collect();
                return Err(Error::InvalidInput(format!(
                    "variable {k:?} is not declared by the module (it declares: {}): check the name, or add a `variable \"{k}\" {{}}` block",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                )).into());
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
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn upload_bundle(
        &self,
        req: Request<Streaming<v1::Chunk>>,
    ) -> Result<Response<v1::UploadBundleResponse>, Status> {
        self.authorize(&req, Action::UploadBundle, None, None)?;
        let mut s = req.into_inner();
        let mut data = Vec::new();
        while let Some(c) = s.next().await {
            data.extend_from_slice(&c?.data);
            if data.len() as u64 > self.shared.max_bundle_bytes {
                return Err(Error::TooLarge(format!(
                    "bundle larger than {} bytes: remove build output and .terraform/ from the module directory, or raise the coordinator's --max-bundle-bytes",
                    self.shared.max_bundle_bytes
                )).into());
            }
        }
        if data.is_empty() {
            return Err(Error::InvalidInput("empty bundle".into()).into());
        }
        let (digest, existed) = self.shared.store.put_blob(&data).await?;
        Ok(Response::new(v1::UploadBundleResponse {
            digest,
            size: data.len() as u64,
            existed,
        }))
    }

    #[tracing::instrument(skip_all, fields(workspace = %req.get_ref().workspace, pool = %req.get_ref().pool))]
    async fn submit_run(
        &self,
        req: Request<v1::SubmitRunRequest>,
    ) -> Result<Response<v1::Run>, Status> {
        let actor = self.authorize(
            &req,
            Action::Submit,
            Some(&req.get_ref().workspace),
            Some(&req.get_ref().actor),
        )?;
        let mut r = req.into_inner();
        r.actor = actor;
        // The caller's trace (e.g. a pipeline's) becomes the parent of this run's spans.
        tofuflow_proto::telemetry::set_parent(&tracing::Span::current(), &r.traceparent);
        valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
        let pool = if r.pool.is_empty() {
            "default".to_string()
        } else {
            r.pool.clone()
        };
        crate::queue::valid_pool(&pool).map_err(Error::InvalidInput)?;
        for k in r.variables.keys() {
            valid_var_name(k).map_err(Error::InvalidInput)?;
        }
        if !self.shared.store.has_blob(&r.bundle_digest).await? {
            return Err(Error::Conflict(format!(
                "bundle {} was not uploaded: upload it first (tofuflow run submit does both)",
                r.bundle_digest
            ))
            .into());
        }
        if r.var_files.len() > 32 {
            return Err(Error::InvalidInput("at most 32 var files".into()).into());
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
                ))
                .into());
            }
        }
        let variable_decls = self.variable_decls(&mut r).await?;
        let kind = match v1::RunKind::try_from(r.kind).unwrap_or(v1::RunKind::Unspecified) {
            v1::RunKind::PlanOnly => RunKind::PlanOnly,
            v1::RunKind::Destroy => RunKind::Destroy,
            _ => RunKind::PlanAndApply,
        };
        let exported = tofuflow_proto::telemetry::traceparent_of(&tracing::Span::current());
        let traceparent = if let Some(tp) = exported {
            tp
        } else if tofuflow_proto::valid_traceparent(&r.traceparent) {
            r.traceparent.clone()
        } else {
            let id = uuid::Uuid::new_v4();
            let span = uuid::Uuid::new_v4();
            tofuflow_proto::new_traceparent(
                *id.as_bytes(),
                span.as_bytes()[..8].try_into().unwrap_or([1; 8]),
            )
        };
        let run = self
            .shared
            .store
            .submit(
                NewRun {
                    variable_decls,
                    limits: r
                        .limits
                        .map(|l| store::Limits {
                            cpu_secs: l.cpu_secs,
                            memory_bytes: l.memory_bytes,
                            nproc: l.nproc,
                            fsize_bytes: l.fsize_bytes,
                            timeout_secs: l.timeout_secs,
                        })
                        .unwrap_or_default(),
                    workspace: r.workspace.clone(),
                    pool,
                    kind,
                    bundle_digest: r.bundle_digest.clone(),
                    variables: r.variables.into_iter().collect::<BTreeMap<_, _>>(),
                    var_files: r
                        .var_files
                        .into_iter()
                        .map(|f| (f.name, f.content))
                        .collect(),
                    auto_approve: r.auto_approve,
                    actor: r.actor.clone(),
                    commit: r.commit.clone(),
                    pipeline_id: r.pipeline_id.clone(),
                    traceparent,
                },
                &self.shared.policy,
            )
            .await?;
        self.shared.wake.notify_one();
        tracing::info!(run_id = %run.id, actor = %r.actor, "run submitted");
        Ok(Response::new(self.full_run(&run.id).await?))
    }

    async fn get_run(&self, req: Request<v1::GetRunRequest>) -> Result<Response<v1::Run>, Status> {
        if !req.get_ref().show_sensitive {
            self.authorize(&req, Action::ReadRuns, None, None)?;
            return Ok(Response::new(
                self.full_run(&req.into_inner().run_id).await?,
            ));
        }
        // Seeing secrets is an operator's action, and it is recorded.
        let actor = self.authorize(
            &req,
            Action::ShowSensitive,
            None,
            Some(&req.get_ref().actor),
        )?;
        let id = req.into_inner().run_id;
        self.shared
            .store
            .record(
                &id,
                &actor,
                "sensitive values shown (run show --show-sensitive)",
            )
            .await?;
        tracing::warn!(run_id = %id, %actor, "sensitive values of a run shown");
        Ok(Response::new(self.full_run_as(&id, true).await?))
    }

    async fn list_runs(
        &self,
        req: Request<v1::ListRunsRequest>,
    ) -> Result<Response<v1::ListRunsResponse>, Status> {
        self.authorize(&req, Action::ReadRuns, None, None)?;
        let r = req.into_inner();
        if !r.state.is_empty() {
            r.state
                .parse::<runs::RunState>()
                .map_err(Error::InvalidInput)?;
        }
        let limit = if r.limit == 0 { 50 } else { r.limit.min(1000) } as i64;
        let list = self
            .shared
            .store
            .list_runs(&r.workspace, &r.state, limit)
            .await?;
        Ok(Response::new(v1::ListRunsResponse {
            runs: list
                .iter()
                .map(|x| run_to_pb(x, vec![], 0, false))
                .collect(),
        }))
    }

    type WatchRunStream = RunStream;

    async fn watch_run(
        &self,
        req: Request<v1::GetRunRequest>,
    ) -> Result<Response<RunStream>, Status> {
        self.authorize(&req, Action::ReadRuns, None, None)?;
        let id = req.into_inner().run_id;
        let first = self.full_run(&id).await?;
        let this = UserApi {
            shared: self.shared.clone(),
        };
        let mut changes = self.shared.store.subscribe();
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
                let Ok(r) = this.full_run(&id).await else {
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

    type RunLogsStream = LogStream;

    async fn run_logs(
        &self,
        req: Request<v1::RunLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        self.authorize(&req, Action::ReadRuns, None, None)?;
        let r = req.into_inner();
        let run = self.shared.store.get_run(&r.run_id).await?;
        let store = self.shared.store.clone();
        let mut changes = store.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut offset = 0i64;
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
                    let line = v1::LogLine {
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
                    };
                    if tx.send(Ok(line)).await.is_err() {
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

    async fn approve_run(
        &self,
        req: Request<v1::RunActionRequest>,
    ) -> Result<Response<v1::Run>, Status> {
        let actor = self.authorize(&req, Action::Approve, None, Some(&req.get_ref().actor))?;
        let mut r = req.into_inner();
        r.actor = actor;
        self.shared
            .store
            .approve(&r.run_id, &r.actor, &r.reason, &self.shared.policy)
            .await?;
        self.shared.wake.notify_one();
        tracing::info!(run_id = %r.run_id, actor = %r.actor, "run approved");
        Ok(Response::new(self.full_run(&r.run_id).await?))
    }

    async fn reject_run(
        &self,
        req: Request<v1::RunActionRequest>,
    ) -> Result<Response<v1::Run>, Status> {
        let actor = self.authorize(&req, Action::Reject, None, Some(&req.get_ref().actor))?;
        let mut r = req.into_inner();
        r.actor = actor;
        self.shared
            .store
            .reject(&r.run_id, &r.actor, &r.reason)
            .await?;
        Ok(Response::new(self.full_run(&r.run_id).await?))
    }

    async fn cancel_run(
        &self,
        req: Request<v1::RunActionRequest>,
    ) -> Result<Response<v1::Run>, Status> {
        let actor = self.authorize(&req, Action::Cancel, None, Some(&req.get_ref().actor))?;
        let mut r = req.into_inner();
        r.actor = actor;
        self.shared
            .store
            .cancel(&r.run_id, &r.actor, &r.reason)
            .await?;
        tracing::info!(run_id = %r.run_id, actor = %r.actor, "run cancel requested");
        Ok(Response::new(self.full_run(&r.run_id).await?))
    }

    async fn list_agents(
        &self,
        req: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        self.authorize(&req, Action::ListAgents, None, None)?;
        let agents = self.shared.store.agents().await?;
        Ok(Response::new(v1::ListAgentsResponse {
            agents: agents
                .into_iter()
                .map(|a| v1::Agent {
                    id: a.id,
                    name: a.name,
                    pools: a.pools,
                    labels: a.labels.into_iter().collect(),
                    capacity: a.capacity as u32,
                    state: a.state,
                    last_seen_unix_ms: a.last_seen_ms,
                    running: a.running as u32,
                })
                .collect(),
        }))
    }
    async fn list_state_versions(
        &self,
        req: Request<v1::StateRequest>,
    ) -> Result<Response<v1::StateVersionList>, Status> {
        self.authorize(
            &req,
            Action::ReadState,
            Some(&req.get_ref().workspace),
            None,
        )?;
        let r = req.into_inner();
        valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
        let st = &self.shared.store;
        let versions = st.list_state_versions(&r.workspace).await?;
        let events = st.state_events(&r.workspace).await?;
        let lock = st.state_lock(&r.workspace).await?;
        let (lock_owner, lock_info) = match lock {
            Some(l) => (
                serde_json::from_str::<serde_json::Value>(&l.info)
                    .ok()
                    .and_then(|v| v.get("Who").and_then(|w| w.as_str()).map(str::to_string))
                    .unwrap_or(l.task_id),
                l.info,
            ),
            None => (String::new(), String::new()),
        };
        Ok(Response::new(v1::StateVersionList {
            versions: versions.into_iter().map(version_to_pb).collect(),
            events: events
                .into_iter()
                .map(|e| v1::StateEventInfo {
                    version: e.version,
                    action: e.action,
                    actor: e.actor,
                    reason: e.reason,
                    unix_ms: e.at_ms,
                })
                .collect(),
            lock_owner,
            lock_info,
        }))
    }

    type GetStateStream = StateStream;

    async fn get_state(
        &self,
        req: Request<v1::StateRequest>,
    ) -> Result<Response<StateStream>, Status> {
        self.authorize(
            &req,
            Action::ReadState,
            Some(&req.get_ref().workspace),
            None,
        )?;
        let r = req.into_inner();
        valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
        let (meta, data) = self
            .shared
            .store
            .state_version(&r.workspace, (r.version > 0).then_some(r.version))
            .await?;
        let mut chunks: Vec<Result<v1::StateChunk, Status>> = data
            .chunks(tofuflow_proto::CHUNK_BYTES)
            .map(|c| {
                Ok(v1::StateChunk {
                    info: None,
                    data: c.to_vec(),
                })
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(Ok(v1::StateChunk::default()));
        }
        if let Some(Ok(first)) = chunks.first_mut() {
            first.info = Some(version_to_pb(meta));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn rollback_state(
        &self,
        req: Request<v1::RollbackStateRequest>,
    ) -> Result<Response<v1::StateVersionInfo>, Status> {
        let actor = self.authorize(
            &req,
            Action::Rollback,
            Some(&req.get_ref().workspace),
            Some(&req.get_ref().actor),
        )?;
        let mut r = req.into_inner();
        r.actor = actor;
        valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
        let v = self
            .shared
            .store
            .rollback_state(&r.workspace, r.to_version, &r.actor, &r.reason)
            .await?;
        tracing::warn!(workspace = %r.workspace, to = r.to_version, new_version = v, actor = %r.actor, "state rolled back");
        let (meta, _) = self
            .shared
            .store
            .state_version(&r.workspace, Some(v))
            .await?;
        Ok(Response::new(version_to_pb(meta)))
    }

    async fn lock_state(
        &self,
        req: Request<v1::StateLockRequest>,
    ) -> Result<Response<v1::StateLockInfo>, Status> {
        let actor = self.authorize(
            &req,
            Action::LockState,
            Some(&req.get_ref().workspace),
            Some(&req.get_ref().actor),
        )?;
        let mut r = req.into_inner();
        r.actor = actor;
        valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
        match self
            .shared
            .store
            .lock_state_human(&r.workspace, &r.actor, &r.reason)
            .await?
        {
            Ok(id) => Ok(Response::new(v1::StateLockInfo {
                lock_id: id,
                owner: r.actor,
                info: String::new(),
            })),
            Err(held) => Err(Error::Conflict(format!(
                "workspace {:?} is already locked: {}",
                r.workspace, held.info
            ))
            .into()),
        }
    }

    async fn unlock_state(
        &self,
        req: Request<v1::StateLockRequest>,
    ) -> Result<Response<v1::StateLockInfo>, Status> {
        let action = if req.get_ref().force {
            Action::ForceUnlock
        } else {
            Action::UnlockState
        };
        let actor = self.authorize(
            &req,
            action,
            Some(&req.get_ref().workspace),
            Some(&req.get_ref().actor),
        )?;
        let mut r = req.into_inner();
        r.actor = actor;
        valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
        let owner = self
            .shared
            .store
            .unlock_state_human(&r.workspace, &r.actor, r.force, &r.reason)
            .await?;
        if r.force {
            tracing::warn!(workspace = %r.workspace, actor = %r.actor, previous_owner = %owner, "state lock force-released");
        }
        Ok(Response::new(v1::StateLockInfo {
            lock_id: String::new(),
            owner,
            info: String::new(),
        }))
    }

    async fn list_dead_letters(
        &self,
        req: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        self.dead_letters_list(req).await
    }

    async fn purge_dead_letters(
        &self,
        req: Request<v1::PurgeDeadLettersRequest>,
    ) -> Result<Response<v1::PurgeDeadLettersResponse>, Status> {
        self.dead_letters_purge(req).await
    }
}

impl UserApi {
    /// Lists dead messages (admin): they stay in the queue, in order.
    async fn dead_letters_list(
        &self,
        req: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        self.authorize(
            &req,
            Action::ReadDeadLetters,
            None,
            Some(&req.get_ref().actor),
        )?;
        let limit = match req.get_ref().limit {
            0 => 100,
            n => n.min(1000),
        };
        let dl = &self.shared.dead_letters;
        let (messages, total) = dl.list(limit).await?;
        Ok(Response::new(v1::ListDeadLettersResponse {
            messages,
            total: total.into(),
            max_length: dl.max() as u64,
        }))
    }

    /// Empties the dead-letter queue (admin), recorded in the log with who and why.
    async fn dead_letters_purge(
        &self,
        req: Request<v1::PurgeDeadLettersRequest>,
    ) -> Result<Response<v1::PurgeDeadLettersResponse>, Status> {
        let actor = self.authorize(
            &req,
            Action::PurgeDeadLetters,
            None,
            Some(&req.get_ref().actor),
        )?;
        let reason = req.into_inner().reason;
        let purged = self.shared.dead_letters.purge().await?;
        tracing::warn!(%actor, %reason, purged, queue = tofuflow_proto::amqp::DEAD_QUEUE, "dead letters purged");
        Ok(Response::new(v1::PurgeDeadLettersResponse {
            purged: purged.into(),
        }))
    }
}

fn version_to_pb(m: store::StateVersionMeta) -> v1::StateVersionInfo {
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

fn is_done(state: &str, kind: i32) -> bool {
    let k = match v1::RunKind::try_from(kind).unwrap_or(v1::RunKind::Unspecified) {
        v1::RunKind::PlanOnly => RunKind::PlanOnly,
        v1::RunKind::Destroy => RunKind::Destroy,
        _ => RunKind::PlanAndApply,
    };
    state
        .parse::<runs::RunState>()
        .map(|s| runs::is_terminal(s, k))
        .unwrap_or(true)
}
