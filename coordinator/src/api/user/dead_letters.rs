//! The dead-letter queue, for admins.

use super::{authorize, Reply, Shared};
use crate::auth::Action;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// Lists dead messages (admin): they stay in the queue, in order.
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListDeadLettersRequest>,
) -> Reply<v1::ListDeadLettersResponse> {
    authorize(
        shared,
        &req,
        Action::ReadDeadLetters,
        None,
        Some(&req.get_ref().actor),
    )
    .await?;
    let limit = match req.get_ref().limit {
        0 => 100,
        n => n.min(1000),
    };
    let dl = &shared.dead_letters;
    let (messages, total) = dl.list(limit).await?;
    Ok(Response::new(v1::ListDeadLettersResponse {
        messages,
        total: total.into(),
        max_length: dl.max() as u64,
    }))
}

/// Empties the dead-letter queue (admin), recorded in the log with who and why.
pub(super) async fn purge(
    shared: &Shared,
    req: Request<v1::PurgeDeadLettersRequest>,
) -> Reply<v1::PurgeDeadLettersResponse> {
    let actor = authorize(
        shared,
        &req,
        Action::PurgeDeadLetters,
        None,
        Some(&req.get_ref().actor),
    )
    .await?;
    let reason = req.into_inner().reason;
    let purged = shared.dead_letters.purge().await?;
    tracing::warn!(%actor, %reason, purged, queue = tofuflow_proto::amqp::DEAD_QUEUE, "dead letters purged");
    Ok(Response::new(v1::PurgeDeadLettersResponse {
        purged: purged.into(),
    }))
}
