//! The gRPC service agents call: register, heartbeat, claim, fetch blobs, report events, upload
//! artifacts, complete, reject a task.
//!
//! Who is calling: the agent token (checked by `auth::Auth::check_agent`) says which pools the
//! caller may register for; after registering, every call names the agent and carries the secret
//! its registration returned ([`AgentApi::caller`]); every call about a task also carries that
//! task's lease secret (`store::LeaseProof`). A holder of the agent token therefore cannot act for
//! another agent, nor touch a lease it was not granted.

use super::convert::{self, task_spec};
use super::Shared;
use crate::auth::AgentGrant;
use crate::error::Error;
use crate::lifecycle::{ClaimOutcome, HeldLease};
use crate::store::{sha256_hex, AgentCredential, LeaseProof};
use std::collections::BTreeMap;
use std::pin::Pin;
use tofuflow_proto::v1::{self, agent_service_server::AgentService};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// The agent service over the coordinator's shared state.
pub struct AgentApi {
    /// What every handler needs.
    pub shared: Shared,
}

impl AgentApi {
    pub fn new(shared: Shared) -> AgentApi {
        AgentApi { shared }
    }

    /// A registered agent's credential: from the cache, else the store (then cached). A cached
    /// one past its expiry is read again (heartbeats renew it in the store).
    async fn credential(&self, id: &str) -> crate::error::Result<AgentCredential> {
        let cache = &self.shared.agent_credentials;
        let now = crate::store::now_ms();
        if let Some(c) = cache.lock().ok().and_then(|m| m.get(id).cloned()) {
            if c.expires_ms == 0 || c.expires_ms > now {
                return Ok(c);
            }
        }
        let c = self
            .shared
            .store
            .agent_credential(id)
            .await?
            .ok_or_else(|| Error::Unauthenticated(format!("unknown agent {id}: join again")))?;
        if let Ok(mut m) = cache.lock() {
            m.insert(id.to_string(), c.clone());
        }
        Ok(c)
    }

    /// The authenticated agent of a call: the id and secret in its metadata must match a
    /// registration that is neither revoked nor expired, and a static token must still cover
    /// that agent's pools. `claimed` is the agent id the request body names (the caller's own,
    /// or empty).
    async fn caller<T>(&self, req: &Request<T>, claimed: &str) -> crate::error::Result<String> {
        self.identify(req, claimed, false).await
    }

    /// [`Self::caller`], letting a revoked agent through when `revoked_ok` (its heartbeat is
    /// answered "revoked" so it stops).
    async fn identify<T>(
        &self,
        req: &Request<T>,
        claimed: &str,
        revoked_ok: bool,
    ) -> crate::error::Result<String> {
        let Some((id, secret)) = tofuflow_proto::auth::agent_identity(req.metadata()) else {
            return Err(Error::Unauthenticated(
                "agent identity missing: register first (the agent sends the id and secret its registration returned)".into()));
        };
        let c = self.credential(&id).await?;
        if c.secret_sha256.is_empty() || c.secret_sha256 != sha256_hex(secret.as_bytes()) {
            self.refused(req, "forged agent credential");
            return Err(Error::Unauthenticated(format!(
                "wrong secret for agent {id}: only the agent that registered can act as it"
            )));
        }
        if c.revoked_ms > 0 && !revoked_ok {
            return Err(Error::PermissionDenied(format!(
                "agent {id} was revoked by an admin: it must join again with a new join token"
            )));
        }
        if c.expires_ms > 0 && c.expires_ms <= crate::store::now_ms() {
            return Err(Error::Unauthenticated(format!(
                "the credential of agent {id} expired (no heartbeat renewed it): join again with a join token"
            )));
        }
        let grant = req.extensions().get::<AgentGrant>();
        if let Some(p) = c.pools.iter().find(|p| !grant.is_some_and(|g| g.covers(p))) {
            return Err(Error::PermissionDenied(format!(
                "this agent token is not valid for pool {p:?}"
            )));
        }
        if !claimed.is_empty() && claimed != id {
            return Err(Error::PermissionDenied(format!(
                "agent {id} cannot act as agent {claimed}"
            )));
        }
        Ok(id)
    }

    /// The id a registration gets: a new one, or the agent's own when it names it and proves
    /// it with its secret (a revoked agent cannot come back under its old id).
    async fn registration_id(
        &self,
        req: &Request<v1::RegisterRequest>,
    ) -> crate::error::Result<String> {
        let want = &req.get_ref().agent_id;
        if want.is_empty() {
            return Ok(uuid::Uuid::new_v4().to_string());
        }
        let Some(c) = self.shared.store.agent_credential(want).await? else {
            return Ok(want.clone());
        };
        let ok = !c.secret_sha256.is_empty()
            && tofuflow_proto::auth::agent_identity(req.metadata())
                .is_some_and(|(i, s)| &i == want && sha256_hex(s.as_bytes()) == c.secret_sha256);
        if !ok {
            return Err(Error::PermissionDenied(format!(
                "agent id {want} is registered by another agent: register without an id"
            )));
        }
        if c.revoked_ms > 0 {
            return Err(Error::PermissionDenied(format!(
                "agent {want} was revoked by an admin: join again without its old identity (delete its identity.json) using a new join token"
            )));
        }
        Ok(want.clone())
    }

    /// Counts and logs a refused agent credential.
    fn refused<T>(&self, req: &Request<T>, why: &str) {
        self.shared
            .failures
            .record(crate::auth::Api::Agent, req.remote_addr(), why);
    }

    /// The pools a registration's credential allows: a static token's, a join token's (valid,
    /// unexpired, unrevoked), or, for an agent re-registering with its identity, its own.
    async fn allowed_pools(
        &self,
        req: &Request<v1::RegisterRequest>,
    ) -> crate::error::Result<Option<Vec<String>>> {
        match req.extensions().get::<AgentGrant>().cloned() {
            None => Err(Error::Unauthenticated("no agent credential".into())),
            Some(AgentGrant::AnyPool) => Ok(None),
            Some(AgentGrant::Pools(p)) => Ok(Some(p)),
            Some(AgentGrant::Identity) => {
                self.caller(req, &req.get_ref().agent_id).await?;
                let id = tofuflow_proto::auth::agent_identity(req.metadata())
                    .map(|(i, _)| i)
                    .unwrap_or_default();
                Ok(Some(self.credential(&id).await?.pools))
            }
            Some(AgentGrant::JoinToken { sha256 }) => {
                let t = self.shared.store.join_token_by_hash(&sha256).await?;
                let why = match &t {
                    None => "invalid agent token",
                    Some(t) if t.revoked_ms > 0 => "revoked join token",
                    Some(t) if t.expires_ms <= crate::store::now_ms() => "expired join token",
                    Some(t) => return Ok(Some(t.pools.clone())),
                };
                self.refused(req, why);
                Err(Error::Unauthenticated(format!(
                    "{why}: create a join token with `tofuflow agent join-token create --pool POOL` and start the agent with --token (TOFUFLOW_AGENT_TOKEN)"
                )))
            }
        }
    }
}

fn check_protocol(v: u32) -> crate::error::Result<()> {
    if v != tofuflow_proto::PROTOCOL_VERSION {
        return Err(Error::Conflict(format!(
            "protocol version {v} is not supported (coordinator speaks {}): run agents and coordinator of the same release",
            tofuflow_proto::PROTOCOL_VERSION
        )));
    }
    Ok(())
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<v1::Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    #[tracing::instrument(skip_all, fields(agent = %req.get_ref().name))]
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        check_protocol(req.get_ref().protocol_version)?;
        let allowed = self.allowed_pools(&req).await?;
        let r = req.get_ref();
        if r.pools.is_empty() {
            return Err(Error::InvalidInput(
                "an agent needs at least one pool (--pool NAME)".into(),
            )
            .into());
        }
        for p in &r.pools {
            crate::queue::valid_pool(p).map_err(Error::InvalidInput)?;
            if allowed.as_ref().is_some_and(|a| !a.contains(p)) {
                return Err(Error::PermissionDenied(format!(
                    "this agent's credential is not valid for pool {p:?}: join with a token created by `tofuflow agent join-token create --pool {p}`"
                )).into());
            }
        }
        let id = self.registration_id(&req).await?;
        let with = match req.extensions().get::<AgentGrant>() {
            Some(AgentGrant::JoinToken { .. }) => "a join token",
            Some(AgentGrant::Identity) => "its own identity",
            Some(AgentGrant::Pools(_)) => "a pool token",
            _ => "an agent token (or an open coordinator)",
        };
        let r = req.into_inner();
        let secret = crate::store::secret();
        let hash = sha256_hex(secret.as_bytes());
        let labels: BTreeMap<String, String> = r.labels.into_iter().collect();
        let expires = crate::store::now_ms() + self.shared.policy.agent_credential_ttl_ms;
        self.shared
            .store
            .register_agent(&crate::store::NewAgent {
                id: &id,
                name: &r.name,
                pools: &r.pools,
                labels: &labels,
                capacity: r.capacity,
                secret_sha256: &hash,
                credential_expires_ms: expires,
            })
            .await?;
        if let Ok(mut m) = self.shared.agent_credentials.lock() {
            m.remove(&id);
        }
        tracing::info!(agent_id = %id, pools = ?r.pools, capacity = r.capacity, "agent registered");
        let detail =
            serde_json::json!({"agent_id": id, "name": r.name, "pools": r.pools, "with": with});
        let entry = crate::audit::AuditEntry::new(
            crate::audit::AuditKind::AgentJoined,
            &format!("agent {}", r.name),
        );
        self.shared.store.audit_now(entry.detail(detail)).await?;
        Ok(Response::new(v1::RegisterResponse {
            agent_id: id,
            heartbeat_interval_ms: self.shared.heartbeat_interval_ms,
            lease_ttl_ms: self.shared.policy.lease_ttl_ms as u32,
            agent_secret: secret,
            agent_secret_expires_ms: expires,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let agent_id = self.identify(&req, &req.get_ref().agent_id, true).await?;
        let r = req.into_inner();
        check_protocol(r.protocol_version)?;
        if let Some(n) = &r.envelope_rejections {
            self.shared
                .dead_letters
                .count_rejections(&agent_id, [n.tampered, n.expired, n.replayed]);
        }
        let leases: Vec<HeldLease> = r
            .leases
            .iter()
            .map(|l| HeldLease {
                task_id: l.task_id.clone(),
                attempt: l.attempt,
                epoch: l.epoch as i64,
                token: l.lease_token.clone(),
            })
            .collect();
        let answer = self
            .shared
            .store
            .heartbeat(&agent_id, &leases, r.draining, &self.shared.policy)
            .await?;
        if !answer.lost.is_empty() {
            tracing::warn!(agent_id = %r.agent_id, lost = ?answer.lost, "heartbeat for leases that are gone");
        }
        if answer.revoked {
            tracing::warn!(%agent_id, "heartbeat of a revoked agent: told to stop");
            if let Ok(mut m) = self.shared.agent_credentials.lock() {
                m.remove(&agent_id);
            }
        }
        Ok(Response::new(v1::HeartbeatResponse {
            cancel_task_ids: answer.cancel,
            lost_task_ids: answer.lost,
            revoked: answer.revoked,
            id_tokens: convert::renewed_to_pb(answer.renewed),
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %req.get_ref().task_id, attempt = req.get_ref().attempt, agent_id = %req.get_ref().agent_id))]
    async fn claim(
        &self,
        req: Request<v1::ClaimRequest>,
    ) -> Result<Response<v1::ClaimResponse>, Status> {
        if let Some(tp) = tofuflow_proto::telemetry::from_metadata(req.metadata()) {
            tofuflow_proto::telemetry::set_parent(&tracing::Span::current(), &tp);
        }
        let agent_id = self.caller(&req, &req.get_ref().agent_id).await?;
        let r = req.into_inner();
        match self
            .shared
            .store
            .claim(
                &agent_id,
                &r.task_id,
                r.attempt,
                &r.envelope_id,
                &self.shared.policy,
            )
            .await?
        {
            ClaimOutcome::Granted(g) => {
                tracing::info!(run_id = %g.run.id, epoch = g.epoch, "lease granted");
                Ok(Response::new(v1::ClaimResponse {
                    granted: true,
                    reason: String::new(),
                    epoch: g.epoch as u64,
                    lease_ttl_ms: self.shared.policy.lease_ttl_ms as u32,
                    spec: Some(task_spec(&g, &self.shared.public_http_url)),
                    lease_token: g.lease_token.clone(),
                    replayed: false,
                }))
            }
            ClaimOutcome::Refused(reason) => {
                tracing::info!(%reason, "claim refused");
                Ok(Response::new(v1::ClaimResponse {
                    granted: false,
                    reason,
                    ..Default::default()
                }))
            }
            ClaimOutcome::Replayed(reason) => {
                tracing::warn!(%reason, envelope_id = %r.envelope_id, "claim of a replayed envelope refused");
                Ok(Response::new(v1::ClaimResponse {
                    granted: false,
                    reason,
                    replayed: true,
                    ..Default::default()
                }))
            }
        }
    }

    type FetchBlobStream = ChunkStream;

    async fn fetch_blob(
        &self,
        req: Request<v1::FetchBlobRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let agent_id = self.caller(&req, &req.get_ref().agent_id).await?;
        let r = req.into_inner();
        // Only a live lease may read, and only the blobs of its own run.
        let t = self
            .shared
            .store
            .check_lease(LeaseProof {
                task_id: &r.task_id,
                attempt: r.attempt,
                epoch: r.epoch as i64,
                agent_id: &agent_id,
                token: &r.lease_token,
            })
            .await?;
        let run = self.shared.store.get_run(&t.run_id).await?;
        if r.digest != run.bundle_digest && r.digest != run.plan_digest {
            return Err(Error::PermissionDenied(format!(
                "blob {} does not belong to run {}",
                r.digest, run.id
            ))
            .into());
        }
        let data = self.shared.store.get_blob(&r.digest).await?;
        let chunks: Vec<Result<v1::Chunk, Status>> = data
            .chunks(tofuflow_proto::CHUNK_BYTES)
            .map(|c| Ok(v1::Chunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn report_events(
        &self,
        req: Request<Streaming<v1::EventBatch>>,
    ) -> Result<Response<v1::ReportEventsResponse>, Status> {
        let agent_id = self.caller(&req, "").await?;
        let mut s = req.into_inner();
        let mut stored = 0;
        while let Some(batch) = s.next().await {
            let b = batch?;
            if b.events.len() > 10_000 {
                return Err(
                    Error::InvalidInput("too many events in one batch (max 10000)".into()).into(),
                );
            }
            let proof = LeaseProof {
                task_id: &b.task_id,
                attempt: b.attempt,
                epoch: b.epoch as i64,
                agent_id: &agent_id,
                token: &b.lease_token,
            };
            stored += self
                .shared
                .store
                .add_events(proof, &convert::log_lines(&b.events))
                .await?;
        }
        Ok(Response::new(v1::ReportEventsResponse { stored }))
    }

    async fn upload_artifact(
        &self,
        req: Request<Streaming<v1::ArtifactChunk>>,
    ) -> Result<Response<v1::UploadArtifactResponse>, Status> {
        let agent_id = self.caller(&req, "").await?;
        let mut s = req.into_inner();
        let mut head: Option<v1::ArtifactChunk> = None;
        let mut data = Vec::new();
        while let Some(c) = s.next().await {
            let c = c?;
            data.extend_from_slice(&c.data);
            if data.len() as u64 > self.shared.max_bundle_bytes {
                return Err(Error::TooLarge(
                    "artifact larger than the coordinator's --max-bundle-bytes".into(),
                )
                .into());
            }
            if head.is_none() {
                head = Some(c);
            }
        }
        let head = head.ok_or_else(|| Error::InvalidInput("empty artifact upload".into()))?;
        let proof = LeaseProof {
            task_id: &head.task_id,
            attempt: head.attempt,
            epoch: head.epoch as i64,
            agent_id: &agent_id,
            token: &head.lease_token,
        };
        self.shared.store.check_lease(proof).await?;
        let (digest, _) = self.shared.store.put_blob(&data).await?;
        let kind = convert::artifact_from_pb(head.kind)?;
        self.shared.store.set_artifact(proof, kind, &digest).await?;
        Ok(Response::new(v1::UploadArtifactResponse {
            digest,
            size: data.len() as u64,
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %req.get_ref().task_id, attempt = req.get_ref().attempt))]
    async fn complete(
        &self,
        req: Request<v1::CompleteRequest>,
    ) -> Result<Response<v1::CompleteResponse>, Status> {
        let agent_id = self.caller(&req, &req.get_ref().agent_id).await?;
        let mut r = req.into_inner();
        r.agent_id = agent_id;
        self.shared
            .store
            .complete_task(&crate::runs::TaskReport::from(&r), &self.shared.policy)
            .await?;
        tracing::info!(outcome = r.outcome, "task completed");
        Ok(Response::new(v1::CompleteResponse {}))
    }

    async fn reject_task(
        &self,
        req: Request<v1::RejectTaskRequest>,
    ) -> Result<Response<v1::RejectTaskResponse>, Status> {
        let agent_id = self.caller(&req, &req.get_ref().agent_id).await?;
        let r = req.into_inner();
        let reason = format!(
            "agent {agent_id} could not use the task message: {}",
            r.reason
        );
        let failed = self
            .shared
            .store
            .reject_task(&r.task_id, r.attempt, &reason, &agent_id)
            .await?;
        tracing::warn!(task_id = %r.task_id, attempt = r.attempt, failed, reason = %r.reason, "task message rejected by agent");
        Ok(Response::new(v1::RejectTaskResponse {}))
    }

    /// The public keys task messages are verified with (the agent caches them and asks again
    /// when a message names a key it does not know).
    async fn signing_keys(
        &self,
        req: Request<v1::SigningKeysRequest>,
    ) -> Result<Response<v1::SigningKeysResponse>, Status> {
        self.caller(&req, &req.get_ref().agent_id).await?;
        let keys = self.shared.store.signing_public_keys().await?;
        Ok(Response::new(v1::SigningKeysResponse {
            keys: keys
                .into_iter()
                .map(|k| v1::SigningKey {
                    key_id: k.key_id,
                    public_key: k.public_key,
                    verify_until_unix_ms: k.verify_until_ms,
                })
                .collect(),
            now_unix_ms: crate::store::now_ms(),
        }))
    }
}
