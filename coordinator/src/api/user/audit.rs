//! The audit log, for admins: listing entries (by run, workspace, kind, position) and verifying
//! the hash chain on the server.

use super::{authorize, Reply, Shared};
use crate::api::convert::audit_to_pb;
use crate::audit::AuditKind;
use crate::auth::Action;
use crate::error::Error;
use crate::store::AuditFilter;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// Lists audit entries matching the request's filters, oldest first (admin).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListAuditRequest>,
) -> Reply<v1::ListAuditResponse> {
    authorize(
        shared,
        &req,
        Action::ReadAudit,
        None,
        Some(&req.get_ref().actor),
    )
    .await?;
    let r = req.into_inner();
    let kind = match r.kind.as_str() {
        "" => None,
        k => Some(k.parse::<AuditKind>().map_err(Error::InvalidInput)?),
    };
    let f = AuditFilter {
        run_id: r.run_id,
        workspace: r.workspace,
        kind,
        since_seq: r.since_seq.max(0),
        limit: match r.limit {
            0 => 100,
            n => n.min(1000) as i64,
        },
        latest: r.latest,
    };
    let entries = shared.store.audit_entries(&f).await?;
    Ok(Response::new(v1::ListAuditResponse {
        entries: entries.into_iter().map(audit_to_pb).collect(),
    }))
}

/// Walks the whole chain and answers where it first breaks, if it does (admin).
pub(super) async fn verify(
    shared: &Shared,
    req: Request<v1::VerifyAuditRequest>,
) -> Reply<v1::VerifyAuditResponse> {
    let actor = authorize(
        shared,
        &req,
        Action::ReadAudit,
        None,
        Some(&req.get_ref().actor),
    )
    .await?;
    let v = shared.store.verify_audit().await?;
    if let Some(b) = &v.broken {
        tracing::error!(%actor, bad_seq = b.seq(), reason = %b.reason(), "the audit log does not verify");
    }
    Ok(Response::new(v1::VerifyAuditResponse {
        ok: v.broken.is_none(),
        checked: v.checked,
        head_seq: v.head.0,
        head_sha256: v.head.1,
        bad_seq: v.broken.as_ref().map_or(0, |b| b.seq()),
        reason: v.broken.as_ref().map(|b| b.reason()).unwrap_or_default(),
    }))
}
