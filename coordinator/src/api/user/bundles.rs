//! Module bundles: uploaded once, stored by content digest.

use super::{authorize, Reply, Shared};
use crate::auth::Action;
use crate::error::Error;
use tofuflow_proto::v1;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Streaming};

fn too_large(shared: &Shared) -> Error {
    Error::TooLarge(format!(
        "bundle larger than {} bytes: remove build output and .terraform/ from the module directory, or raise the coordinator's --max-bundle-bytes",
        shared.max_bundle_bytes
    ))
}

/// Stores an uploaded bundle (operator), refusing an empty one and one larger than
/// `--max-bundle-bytes`.
pub(super) async fn upload(
    shared: &Shared,
    req: Request<Streaming<v1::Chunk>>,
) -> Reply<v1::UploadBundleResponse> {
    authorize(shared, &req, Action::UploadBundle, None, None).await?;
    let mut s = req.into_inner();
    let mut data = Vec::new();
    while let Some(c) = s.next().await {
        data.extend_from_slice(&c?.data);
        if data.len() as u64 > shared.max_bundle_bytes {
            return Err(too_large(shared).into());
        }
    }
    store(shared, data).await
}

/// The same for a bundle that arrived whole (the HTTP API's upload).
pub(crate) async fn upload_bytes(
    shared: &Shared,
    req: Request<Vec<u8>>,
) -> Reply<v1::UploadBundleResponse> {
    authorize(shared, &req, Action::UploadBundle, None, None).await?;
    let data = req.into_inner();
    if data.len() as u64 > shared.max_bundle_bytes {
        return Err(too_large(shared).into());
    }
    store(shared, data).await
}

async fn store(shared: &Shared, data: Vec<u8>) -> Reply<v1::UploadBundleResponse> {
    if data.is_empty() {
        return Err(Error::InvalidInput("empty bundle".into()).into());
    }
    let (digest, existed) = shared.store.put_blob(&data).await?;
    Ok(Response::new(v1::UploadBundleResponse {
        digest,
        size: data.len() as u64,
        existed,
    }))
}
