//! Drift checks (`lifecycle/drift.rs`), the workspace summary and schedules of checks or of a
//! workflow run (`lifecycle/schedule.rs`). A check by hand needs the right to submit on its workspace; the
//! workspace list shows what the caller may read; schedules act on globs of workspaces for
//! the coordinator itself, so adding and removing them is an admin's (the right to set rules).

use super::{
    authorize, authorize_caller, authorize_change, authorize_recorded, caller, Reply, Shared,
};
use crate::api::convert::{run_to_pb, schedule_to_pb, tick_to_pb, workspace_to_pb};
use crate::audit::{AuditEntry, AuditKind};
use crate::auth::Action;
use crate::error::Error;
use crate::lifecycle::schedule::NewSchedule;
use crate::store::DriftOptions;
use tofuflow_proto::names::valid_workspace;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// Queues a drift check of a workspace now (operator on it).
pub(super) async fn check(shared: &Shared, req: Request<v1::CheckDriftRequest>) -> Reply<v1::Run> {
    let ws = req.get_ref().workspace.clone();
    valid_workspace(&ws).map_err(Error::InvalidInput)?;
    let actor = authorize_recorded(shared, &req, Action::Submit, Some(&ws)).await?;
    let r = req.into_inner();
    let options = DriftOptions {
        refresh_only: r.refresh_only,
        remediate: r.remediate,
    };
    let run = shared
        .store
        .check_drift(&ws, options, &actor, &shared.policy)
        .await?;
    tracing::info!(workspace = %ws, run = %run.id, by = %actor, "drift check queued");
    Ok(Response::new(run_to_pb(&run, vec![], 0, false)))
}

/// Every workspace the caller may read, with its last apply and drift status (viewer).
pub(super) async fn workspaces(
    shared: &Shared,
    req: Request<v1::ListWorkspacesRequest>,
) -> Reply<v1::ListWorkspacesResponse> {
    let (caller, _) = authorize_caller(shared, &req, Action::ReadRuns, None, None).await?;
    let drifted_only = req.get_ref().drifted_only;
    let all = shared.store.workspaces().await?;
    Ok(Response::new(v1::ListWorkspacesResponse {
        workspaces: all
            .into_iter()
            .filter(|w| caller.may(Action::ReadRuns, Some(&w.name)))
            .map(workspace_to_pb)
            .filter(|w| !drifted_only || w.drift == "drifted")
            .collect(),
    }))
}

/// Sets or clears a workspace's TTL (operator on it): every later apply there starts (or
/// restarts) its environment's deadline.
pub(super) async fn set_ttl(
    shared: &Shared,
    req: Request<v1::SetWorkspaceTtlRequest>,
) -> Reply<v1::Workspace> {
    let ws = req.get_ref().workspace.clone();
    valid_workspace(&ws).map_err(Error::InvalidInput)?;
    let actor = authorize_recorded(shared, &req, Action::Submit, Some(&ws)).await?;
    let ttl_ms = req.get_ref().ttl_ms;
    if ttl_ms < 0 {
        return Err(Error::InvalidInput(
            "a TTL is a positive duration such as 4h (0 clears it)".into(),
        )
        .into());
    }
    shared.store.set_workspace_ttl(&ws, ttl_ms, &actor).await?;
    tracing::info!(workspace = %ws, ttl_ms, by = %actor, "workspace TTL set");
    let all = shared.store.workspaces().await?;
    let w = all.into_iter().find(|w| w.name == ws).unwrap_or_default();
    Ok(Response::new(workspace_to_pb(
        crate::store::WorkspaceSummary { name: ws, ..w },
    )))
}

/// Adds a schedule of drift checks or of a workflow run (admin; a workflow's start request is
/// checked as a start checks it, with the caller's rights, now).
pub(super) async fn add_schedule(
    shared: &Shared,
    req: Request<v1::AddScheduleRequest>,
) -> Reply<v1::Schedule> {
    let actor = authorize_change(shared, &req, Action::ManageRules).await?;
    if let Some(w) = &req.get_ref().workflow {
        let c = caller(shared, &req).await?;
        super::workflows::prepare(shared, &c, w).await?;
    }
    let r = req.into_inner();
    let sc = shared
        .store
        .create_schedule(NewSchedule {
            name: r.name,
            cron: r.cron,
            timezone: r.timezone,
            workspace: r.workspace,
            options: DriftOptions {
                refresh_only: r.refresh_only,
                remediate: r.remediate,
            },
            missed: r.missed,
            actor: actor.clone(),
            workflow: r.workflow,
        })
        .await?;
    tracing::info!(schedule = %sc.name, cron = %sc.cron, timezone = %sc.timezone, by = %actor, "schedule added");
    Ok(Response::new(schedule_to_pb(sc)))
}

/// Every schedule (viewer).
pub(super) async fn schedules(
    shared: &Shared,
    req: Request<v1::ListSchedulesRequest>,
) -> Reply<v1::ListSchedulesResponse> {
    authorize(shared, &req, Action::ReadRuns, None, None).await?;
    let all = shared.store.schedules().await?;
    Ok(Response::new(v1::ListSchedulesResponse {
        schedules: all.into_iter().map(schedule_to_pb).collect(),
    }))
}

/// Removes a schedule (admin); its settled ticks stay.
pub(super) async fn remove_schedule(
    shared: &Shared,
    req: Request<v1::ScheduleRequest>,
) -> Reply<v1::Schedule> {
    let actor = authorize_change(shared, &req, Action::ManageRules).await?;
    let sc = shared.store.remove_schedule(&req.get_ref().name).await?;
    shared
        .store
        .audit_now(
            AuditEntry::new(AuditKind::ScheduleRemoved, &actor)
                .workspace(&sc.workspace)
                .detail(serde_json::json!({"schedule": sc.name})),
        )
        .await?;
    Ok(Response::new(schedule_to_pb(sc)))
}

/// A schedule's settled ticks, newest first (viewer).
pub(super) async fn ticks(
    shared: &Shared,
    req: Request<v1::ScheduleRequest>,
) -> Reply<v1::ListScheduleTicksResponse> {
    authorize(shared, &req, Action::ReadRuns, None, None).await?;
    let ticks = shared
        .store
        .schedule_ticks(&req.get_ref().name, 500)
        .await?;
    Ok(Response::new(v1::ListScheduleTicksResponse {
        ticks: ticks.into_iter().map(tick_to_pb).collect(),
    }))
}
