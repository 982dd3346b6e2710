//! Typed decoding of stored rows: a damaged column is an error naming table and column.

use super::*;

pub(crate) fn run_from_row(keys: &crypt::Keys, r: &sqlx::any::AnyRow) -> Result<Run> {
    let id = s(r, "id")?;
    let aad = run_aad(&id);
    let open = |col: &str| -> Result<String> {
        keys.open_text(&aad, &s(r, col)?).map_err(Error::Internal)
    };
    let vf: Vec<(String, String)> = json_col(&open("var_files")?, "runs", "var_files")?;
    let var_files = vf
        .into_iter()
        .map(|(n, c)| {
            base64::engine::general_purpose::STANDARD
                .decode(c)
                .map(|c| (n, c))
                .map_err(|e| Error::Internal(format!("runs.var_files holds damaged base64: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Run {
        variables: json_col(&open("variables")?, "runs", "variables")?,
        var_files,
        outputs: open("outputs")?,
        variable_decls: json_col(&s(r, "sensitive_variables")?, "runs", "sensitive_variables")?,
        id,
        workspace: s(r, "workspace")?,
        pool: s(r, "pool")?,
        kind: RunKind::from_str(&s(r, "kind")?).map_err(Error::Internal)?,
        state: RunState::from_str(&s(r, "state")?).map_err(Error::Internal)?,
        bundle_digest: s(r, "bundle_digest")?,
        auto_approve: i(r, "auto_approve")? != 0,
        submitted_by: s(r, "submitted_by")?,
        commit: s(r, "commit_sha")?,
        pipeline_id: s(r, "pipeline_id")?,
        source: s(r, "source")?,
        traceparent: s(r, "traceparent")?,
        created_ms: i(r, "created_ms")?,
        updated_ms: i(r, "updated_ms")?,
        has_changes: i(r, "has_changes")? != 0,
        add: i(r, "add_count")?,
        change: i(r, "change_count")?,
        destroy: i(r, "destroy_count")?,
        error: s(r, "error")?,
        plan_digest: s(r, "plan_digest")?,
        plan_json_digest: s(r, "plan_json_digest")?,
        limits: json_col(&s(r, "limits")?, "runs", "limits")?,
        limit_hit: s(r, "limit_hit")?,
        tags: json_col(&s(r, "tags")?, "runs", "tags")?,
        drift: DriftOptions {
            refresh_only: i(r, "drift_refresh_only")? != 0,
            remediate: i(r, "drift_remediate")? != 0,
        },
    })
}

pub(crate) fn version_meta(r: &sqlx::any::AnyRow) -> Result<StateVersionMeta> {
    Ok(StateVersionMeta {
        version: i(r, "version")?,
        serial: i(r, "serial")?,
        lineage: s(r, "lineage")?,
        sha256: s(r, "sha256")?,
        size: i(r, "size")?,
        run_id: s(r, "run_id")?,
        attempt: i(r, "attempt")?,
        actor: s(r, "actor")?,
        created_ms: i(r, "created_ms")?,
    })
}

pub(crate) fn task_from_row(r: &sqlx::any::AnyRow) -> Result<Task> {
    Ok(Task {
        id: s(r, "id")?,
        run_id: s(r, "run_id")?,
        phase: Phase::from_str(&s(r, "phase")?).map_err(Error::Internal)?,
        attempt: i(r, "attempt")? as u32,
        state: s(r, "state")?.parse().map_err(|e: String| Error::Corrupt {
            table: "tasks",
            column: "state",
            detail: e,
        })?,
        pool: s(r, "pool")?,
        agent_id: s(r, "agent_id")?,
        epoch: i(r, "epoch")?,
        lease_expires_ms: i(r, "lease_expires_ms")?,
        cancel_requested: i(r, "cancel_requested")? != 0,
        lease_sha256: s(r, "lease_sha256")?,
        envelope_id: s(r, "envelope_id")?,
        envelope_expires_ms: i(r, "envelope_expires_ms")?,
    })
}
