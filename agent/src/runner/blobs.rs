//! Blobs through the coordinator: bundles and saved plans fetched (and verified against their
//! digest), artifacts uploaded, all under the task's lease.

use super::{Held, Runner};
use crate::bundle;
use crate::error::{Result, TaskError};
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

impl Runner {
    /// Fetches the blob `digest` names and checks the data is what it names.
    pub(super) async fn fetch_blob(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        digest: &str,
    ) -> Result<Vec<u8>> {
        let mut c = self.client.clone();
        let req = v1::FetchBlobRequest {
            agent_id: self.agent_id.clone(),
            task_id: spec.task_id.clone(),
            epoch: lease.epoch,
            digest: digest.to_string(),
            attempt: spec.attempt,
            lease_token: lease.lease_token.clone(),
        };
        let mut s = c
            .fetch_blob(req)
            .await
            .map_err(|e| TaskError::Fetch {
                digest: digest.to_string(),
                message: e.message().to_string(),
            })?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = s.next().await {
            data.extend_from_slice(
                &chunk
                    .map_err(|e| TaskError::FetchBroken {
                        digest: digest.to_string(),
                        message: e.message().to_string(),
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
        let mut c = self.client.clone();
        let r = c
            .upload_artifact(tokio_stream::iter(chunks))
            .await
            .map_err(|e| TaskError::Upload {
                kind: format!("{kind:?}"),
                message: e.message().to_string(),
            })?;
        Ok(r.into_inner().digest)
    }
}
