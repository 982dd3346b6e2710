//! A start request made into a workflow run to write: the file parsed and expanded, the
//! approval mode, pool and TTL settled, every source's bundle found, every stack's inputs
//! checked against its module's declarations. Used by the API's start (which also checks the
//! caller's rights and the rules) and by a schedule's tick (which replays the request its
//! admin stored). Reads: blobs.

use super::workflow::NewWorkflow;
use crate::error::{Error, Result};
use crate::runs::variables::{self, Declared};
use crate::store::Store;
use std::collections::BTreeMap;
use tofuflow_proto::v1;
use tofuflow_proto::workflow::{self as wf, Approval};

impl Store {
    /// The checked file and its targets.
    pub fn parse_workflow(
        &self,
        r: &v1::StartWorkflowRequest,
    ) -> Result<(wf::Workflow, Vec<wf::Target>)> {
        let file = wf::parse(&r.file_name, &r.definition)
            .map_err(|p| Error::InvalidInput(wf::describe(&p)))?;
        let targets =
            wf::expand(&file, &r.file_name).map_err(|p| Error::InvalidInput(wf::describe(&p)))?;
        Ok((file, targets))
    }

    /// The workflow run `r` asks for, recorded as `actor`.
    pub async fn workflow_from_request(
        &self,
        r: &v1::StartWorkflowRequest,
        actor: &str,
    ) -> Result<NewWorkflow> {
        let (file, targets) = self.parse_workflow(r)?;
        let approval = match r.approval.as_str() {
            "" => file.approval,
            a => Approval::parse(a).ok_or_else(|| {
                Error::InvalidInput(format!("approval {a:?}: use each, once or auto"))
            })?,
        };
        if r.ttl_ms < 0 || (r.ttl_ms > 0 && r.destroy) {
            return Err(Error::InvalidInput(
                "--ttl is a positive duration, for a workflow run that applies".into(),
            ));
        }
        let bundles = self.bundles_of(&file, &r.bundles).await?;
        let decls = self.declarations(&r.file_name, &file, &bundles).await?;
        Ok(NewWorkflow {
            file_name: r.file_name.clone(),
            definition: r.definition.clone(),
            bundles,
            decls,
            destroy: r.destroy,
            approval,
            pool: if r.pool.is_empty() {
                "default".to_string()
            } else {
                r.pool.clone()
            },
            actor: actor.to_string(),
            tags: r.tags.clone().into_iter().collect(),
            targets,
            ttl_ms: r.ttl_ms,
            idempotency: (!r.idempotency_key.is_empty()).then(|| crate::store::Idempotency {
                key: r.idempotency_key.clone(),
                request_sha256: request_sha256(r),
            }),
        })
    }

    /// The bundle of every source the file uses (each uploaded before).
    async fn bundles_of(
        &self,
        file: &wf::Workflow,
        given: &std::collections::HashMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for src in file.sources() {
            let digest = given.get(&src).ok_or_else(|| {
                Error::InvalidInput(format!("no bundle for source {src:?}: upload each module and name it in bundles (tofuflow workflow run does both)"))
            })?;
            if !self.has_blob(digest).await? {
                return Err(Error::Conflict(format!(
                    "bundle {digest} (source {src:?}) was not uploaded: upload it first"
                )));
            }
            out.insert(src, digest.clone());
        }
        Ok(out)
    }

    /// Each source's variable declarations; every stack's inputs must be declared by its
    /// module.
    async fn declarations(
        &self,
        file_name: &str,
        file: &wf::Workflow,
        bundles: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Declared>>> {
        let mut out = BTreeMap::new();
        for (src, digest) in bundles {
            let bundle = self.get_blob(digest).await?;
            let d = tokio::task::spawn_blocking(move || variables::declarations(&bundle))
                .await
                .map_err(|e| Error::Internal(format!("reading the module's declarations: {e}")))?;
            for s in file
                .stacks
                .iter()
                .filter(|s| &s.source == src && d.complete)
            {
                if let Some(i) = s.inputs.iter().find(|i| !d.vars.contains_key(&i.name)) {
                    let names: Vec<&str> = d.vars.keys().map(String::as_str).collect();
                    return Err(Error::InvalidInput(format!(
                        "{}:{}:{}: stack {:?}: input {:?} is not a variable of module {src} (it declares: {})",
                        file_name, i.pos.line, i.pos.column, s.name, i.name,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )));
                }
            }
            let kept = d
                .vars
                .into_iter()
                .filter(|(_, v)| v.sensitive || v.expression)
                .collect();
            out.insert(src.clone(), kept);
        }
        Ok(out)
    }
}

/// What a start asks for, in a canonical form (maps sorted), hashed: a retried start with the
/// same idempotency key must ask for the same.
fn request_sha256(r: &v1::StartWorkflowRequest) -> String {
    let sorted = |m: &std::collections::HashMap<String, String>| -> BTreeMap<String, String> {
        m.clone().into_iter().collect()
    };
    let canonical = serde_json::json!({
        "file_name": r.file_name, "definition": r.definition, "bundles": sorted(&r.bundles),
        "destroy": r.destroy, "approval": r.approval, "pool": r.pool, "tags": sorted(&r.tags),
        "actor": r.actor, "ttl_ms": r.ttl_ms,
    });
    crate::store::sha256_hex(canonical.to_string().as_bytes())
}
