//! Blobs through the coordinator: bundles and saved plans fetched (and verified against their
//! digest), artifacts uploaded, all under the task's lease.

use super::{Held, Runner};
use crate::bundle;
use crate::error::{Result, TaskError};
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

impl Runner {
    /// Fetches the blob `digest` names and checks the data is what it names. A coordinator that
    /// cannot be reached (`Unavailable`) is tried again, once per coordinator: the client moves
    /// on to the next one after such a failure (`failover`).
    pub(super) async fn fetch_blob(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        digest: &str,
    ) -> Result<Vec<u8>> {
        let req = v1::FetchBlobRequest {
            agent_id: self.agent_id.clone(),
            task_id: spec.task_id.clone(),
            epoch: lease.epoch,
            digest: digest.to_string(),
            attempt: spec.attempt,
            lease_token: lease.lease_token.clone(),
        };
        let mut tries = self.cfg.coordinator.len();
        loop {
            match self.fetch_once(req.clone(), digest).await {
                Err(TaskError::Fetch { code, .. } | TaskError::FetchBroken { code, .. })
                    if code == tonic::Code::Unavailable && tries > 0 =>
                {
                    tries -= 1;
                    tracing::warn!(%digest, "blob fetch failed (coordinator unreachable): trying again");
                }
                other => return other,
            }
        }
    }

    /// One attempt at [`Runner::fetch_blob`].
    async fn fetch_once(&self, req: v1::FetchBlobRequest, digest: &str) -> Result<Vec<u8>> {
        let mut c = self.client.clone();
        let mut s = c
            .fetch_blob(req)
            .await
            .map_err(|e| TaskError::Fetch {
                digest: digest.to_string(),
                message: e.message().to_string(),
                code: e.code(),
            })?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = s.next().await {
            data.extend_from_slice(
                &chunk
                    .map_err(|e| TaskError::FetchBroken {
                        digest: digest.to_string(),
                        message: e.message().to_string(),
                        code: e.code(),
                    })?
                    .data,
            );
        }
        bundle::verify(digest, &data)?;
        Ok(data)
    }

    /// Uploads an artifact of the task; returns its digest.
    pub(super) async fn upload(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        kind: v1::ArtifactKind,
        data: Vec<u8>,
    ) -> Result<String> {
        let mut chunks: Vec<v1::ArtifactChunk> = data
            .chunks(tofuflow_proto::CHUNK_BYTES)
            .map(|c| v1::ArtifactChunk {
                data: c.to_vec(),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(v1::ArtifactChunk::default());
        }
        chunks[0].task_id = spec.task_id.clone();
        chunks[0].attempt = spec.attempt;
        chunks[0].epoch = lease.epoch;
        chunks[0].lease_token = lease.lease_token.clone();
        chunks[0].kind = kind as i32;
        // The chunks are in memory: an upload that found no coordinator is sent again (to
        // the next one), once per coordinator.
        let mut tries = self.cfg.coordinator.len();
        loop {
            let mut c = self.client.clone();
            match c.upload_artifact(tokio_stream::iter(chunks.clone())).await {
                Ok(r) => return Ok(r.into_inner().digest),
                Err(e) if e.code() == tonic::Code::Unavailable && tries > 0 => {
                    tries -= 1;
                    tracing::warn!(error = %e.message(), "artifact upload failed (coordinator unreachable): trying again");
                }
                Err(e) => {
                    return Err(TaskError::Upload {
                        kind: format!("{kind:?}"),
                        message: e.message().to_string(),
                    })
                }
            }
        }
    }
}
