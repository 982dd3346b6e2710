//! Bearer tokens on gRPC calls: the client side (an interceptor that adds
//! `authorization: Bearer <token>`, and once an agent has registered, its own identity) and the
//! parsing the coordinator does.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// gRPC metadata naming the calling agent (set after registration).
pub const AGENT_ID: &str = "tofuflow-agent-id";
/// gRPC metadata carrying the agent's secret (from its registration).
pub const AGENT_SECRET: &str = "tofuflow-agent-secret";

/// Adds `authorization: Bearer <token>` to every call (nothing when no token is set), and the
/// agent's identity once it has one.
#[derive(Clone, Default)]
pub struct Bearer {
    token: Option<MetadataValue<Ascii>>,
    agent: Option<(MetadataValue<Ascii>, MetadataValue<Ascii>)>,
}

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Bearer, String> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Bearer::default()),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer {
                    token: Some(v),
                    agent: None,
                })
                .map_err(|_| {
                    "the token contains characters that cannot go in a gRPC header".to_string()
                }),
        }
    }

    /// The same, also naming the agent `id` with the `secret` its registration returned.
    pub fn with_agent(&self, id: &str, secret: &str) -> Result<Bearer, String> {
        let bad = |_| "the agent id or secret cannot go in a gRPC header".to_string();
        Ok(Bearer {
            token: self.token.clone(),
            agent: Some((id.parse().map_err(bad)?, secret.parse().map_err(bad)?)),
        })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.token {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if let Some((id, secret)) = &self.agent {
            req.metadata_mut().insert(AGENT_ID, id.clone());
            req.metadata_mut().insert(AGENT_SECRET, secret.clone());
        }
        Ok(req)
    }
}

/// The agent identity a request claims: (agent id, secret), if both are present.
pub fn agent_identity(md: &tonic::metadata::MetadataMap) -> Option<(String, String)> {
    let get = |k: &str| {
        md.get(k)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Some((get(AGENT_ID)?, get(AGENT_SECRET)?))
}

/// The bearer token of a request, if any.
pub fn bearer(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}
