//! Who may call the coordinator. Agents present an agent token (valid for every pool, or for one
//! pool only) and, once registered, their own identity (checked in `api::agent`); users present personal
//! tokens that map to a name and a role (viewer < operator < admin). Only SHA-256 hashes of
//! tokens are configured. With neither configured the API is open (the coordinator warns), and
//! users' names are taken as they declare them. What each role may do is decided in
//! [`authorize`].

pub mod authorize;

pub use authorize::{authorize, required_role, Action, Actor};

use crate::error::Error;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::{Request, Status};

/// The API a credential was presented to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The agents' gRPC service (agent token).
    Agent,
    /// The users' gRPC service (user token).
    User,
    /// The HTTP state backend (a task's lease credential).
    State,
}

impl Api {
    /// The label used in logs and in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Agent => "agent",
            Api::User => "user",
            Api::State => "state",
        }
    }
}

/// Failed authentications since start, by API: counted here, shown in `/metrics`
/// (`tofuflow_auth_failures_total`). One instance is shared by the gRPC checks and the HTTP
/// state backend.
#[derive(Debug, Default)]
pub struct Failures {
    agent: AtomicU64,
    user: AtomicU64,
    state: AtomicU64,
    /// The audit log's side of failures (aggregated `auth_failed` entries).
    pub audit: crate::audit::FailureLog,
}

impl Failures {
    fn counter(&self, api: Api) -> &AtomicU64 {
        match api {
            Api::Agent => &self.agent,
            Api::User => &self.user,
            Api::State => &self.state,
        }
    }

    /// Counts one failed authentication and logs it at warn level with the peer address and
    /// what was wrong. `why` must never contain the credential itself.
    pub fn record(&self, api: Api, peer: Option<SocketAddr>, why: &str) {
        self.counter(api).fetch_add(1, Ordering::Relaxed);
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        tracing::warn!(api = api.as_str(), %peer, reason = why, "authentication failed");
        self.audit.record(api.as_str(), &peer, why);
    }

    /// Failures so far for `api`.
    pub fn count(&self, api: Api) -> u64 {
        self.counter(api).load(Ordering::Relaxed)
    }
}

/// A user's role, ordered: each role may do all the one below it may.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?}: use viewer, operator or admin")),
        }
    }
}

/// The authenticated caller of a user-API request (in the request's extensions).
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub role: Role,
}

/// The pools an agent's token lets it register for (in the request's extensions).
#[derive(Clone, Debug, PartialEq)]
pub enum AgentGrant {
    /// An `--agent-token`: every pool.
    AnyPool,
    /// An `--agent-pool-token`: these pools only.
    Pools(Vec<String>),
}

impl AgentGrant {
    /// Whether an agent with this grant may take tasks of `pool`.
    pub fn covers(&self, pool: &str) -> bool {
        match self {
            AgentGrant::AnyPool => true,
            AgentGrant::Pools(p) => p.iter().any(|x| x == pool),
        }
    }
}

/// The configured agent tokens and users: checks the credentials of gRPC calls.
#[derive(Clone, Default)]
pub struct Auth {
    agent_tokens: Vec<String>,
    /// Token hash → the pools it is valid for.
    pool_tokens: HashMap<String, Vec<String>>,
    users: Option<HashMap<String, User>>,
    /// Failed authentications (shared with the HTTP side).
    pub failures: Arc<Failures>,
}

/// Parses `--agent-pool-token POOL=TOKEN` entries into token hash → pools.
fn pool_tokens(entries: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some((pool, token)) = e.split_once('=') else {
            return Err(
                "--agent-pool-token takes POOL=TOKEN (e.g. gpu=$(head -c24 /dev/urandom | base64))"
                    .into(),
            );
        };
        tofuflow_proto::amqp::valid_pool(pool.trim())?;
        if token.trim().len() < 16 {
            return Err(format!(
                "--agent-pool-token for pool {pool:?}: the token is too short (16 characters at least)"
            ));
        }
        m.entry(hash(token.trim()))
            .or_default()
            .push(pool.trim().to_string());
    }
    Ok(m)
}

#[derive(serde::Deserialize)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(serde::Deserialize)]
struct UserEntry {
    name: String,
    role: String,
    token_sha256: String,
}

fn hash(token: &str) -> String {
    crate::store::sha256_hex(token.as_bytes())
}

impl Auth {
    /// Reads the agent tokens, pool tokens and users file; an invalid one is refused with
    /// what to fix.
    pub fn load(
        agent_tokens: &[String],
        agent_pool_tokens: &[String],
        users_file: Option<&std::path::Path>,
    ) -> Result<Auth, String> {
        let pool_tokens = pool_tokens(agent_pool_tokens)?;
        let agent_tokens = agent_tokens
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(hash)
            .collect();
        let users = match users_file {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read users file {}: {e}", p.display()))?;
                let f: UsersFile = toml::from_str(&text)
                    .map_err(|e| format!("users file {} is not valid: {e}", p.display()))?;
                let mut m = HashMap::new();
                for u in f.users {
                    let role = u.role.parse()?;
                    let h = u.token_sha256.trim().to_ascii_lowercase();
                    if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(format!("user {:?}: token_sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)", u.name));
                    }
                    m.insert(h, User { name: u.name, role });
                }
                if m.is_empty() {
                    return Err(format!("users file {} lists no [[users]]", p.display()));
                }
                Some(m)
            }
        };
        Ok(Auth {
            agent_tokens,
            pool_tokens,
            users,
            failures: Arc::default(),
        })
    }

    /// True when no agent token is configured: anyone may register as an agent.
    pub fn agents_open(&self) -> bool {
        self.agent_tokens.is_empty() && self.pool_tokens.is_empty()
    }

    /// True when no users file is configured: users' names are taken as declared.
    pub fn users_open(&self) -> bool {
        self.users.is_none()
    }

    /// Checks the agent token of an agent-API call and attaches what it grants
    /// ([`AgentGrant`]); a failure is logged and counted.
    pub fn check_agent(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let grant = match self.agent_grant(&req) {
            Ok(g) => g,
            Err((why, msg)) => {
                self.failures.record(Api::Agent, req.remote_addr(), why);
                return Err(Error::Unauthenticated(msg.into()).into());
            }
        };
        req.extensions_mut().insert(grant);
        Ok(req)
    }

    /// What the request's agent token grants, or (what was wrong, what to tell the caller).
    fn agent_grant(&self, req: &Request<()>) -> Result<AgentGrant, (&'static str, &'static str)> {
        if self.agents_open() {
            return Ok(AgentGrant::AnyPool);
        }
        match tofuflow_proto::auth::bearer(req.metadata()).map(|t| hash(&t)) {
            None => Err(("missing agent token", "agent token required: start the agent with --token (TOFUFLOW_AGENT_TOKEN) matching the coordinator's --agent-token or --agent-pool-token")),
            Some(h) if self.agent_tokens.contains(&h) => Ok(AgentGrant::AnyPool),
            Some(h) => self
                .pool_tokens
                .get(&h)
                .map(|pools| AgentGrant::Pools(pools.clone()))
                .ok_or(("invalid agent token", "invalid agent token")),
        }
    }

    /// Checks a user token and attaches the user to the request.
    pub fn check_user(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let Some(users) = &self.users else {
            return Ok(req);
        };
        let user = match tofuflow_proto::auth::bearer(req.metadata()) {
            None => {
                self.failures
                    .record(Api::User, req.remote_addr(), "missing user token");
                return Err(Error::Unauthenticated(
                    "a user token is required: pass --token or set TOFUFLOW_TOKEN".into(),
                )
                .into());
            }
            Some(t) => users.get(&hash(&t)).cloned(),
        };
        let Some(user) = user else {
            self.failures
                .record(Api::User, req.remote_addr(), "invalid user token");
            return Err(Error::Unauthenticated("invalid user token".into()).into());
        };
        req.extensions_mut().insert(user);
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(t: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
        r
    }

    #[test]
    fn tokens_and_roles() {
        let dir = std::env::temp_dir().join(format!("tofuflow-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("users.toml");
        std::fs::write(
            &f,
            format!(
                "[[users]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
                hash("v-token")
            ),
        )
        .unwrap();
        let a = Auth::load(
            &["agent-secret".into()],
            &["gpu=gpu-pool-token-0123456789".into()],
            Some(&f),
        )
        .unwrap();
        let gpu = a
            .check_agent(with_token("gpu-pool-token-0123456789"))
            .unwrap();
        let g = gpu.extensions().get::<AgentGrant>().unwrap();
        assert!(
            g.covers("gpu") && !g.covers("default"),
            "a pool token is for its pool only"
        );
        assert!(Auth::load(&[], &["gpu=short".into()], None).is_err());
        assert!(Auth::load(&[], &["no-equals-sign-token-xxxxxxxx".into()], None).is_err());
        assert!(a.check_agent(Request::new(())).is_err());
        assert_eq!(
            a.check_agent(with_token("forged")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(a.check_agent(with_token("agent-secret")).is_ok());
        assert_eq!(a.failures.count(Api::Agent), 2, "missing and forged");
        assert_eq!(
            a.check_user(with_token("forged")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let req = a.check_user(with_token("v-token")).unwrap();
        assert_eq!(
            authorize(&req, false, Action::ReadRuns, None, Some("someone-else"))
                .unwrap()
                .name,
            "vera",
            "the token decides who, not the claim"
        );
        assert_eq!(
            authorize(&req, false, Action::Submit, None, None)
                .unwrap_err()
                .grpc_code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            authorize(&Request::new(()), true, Action::Rollback, None, Some("bob"))
                .unwrap()
                .name,
            "bob"
        );
        std::fs::write(
            &f,
            "[[users]]\nname = \"x\"\nrole = \"root\"\ntoken_sha256 = \"00\"\n",
        )
        .unwrap();
        assert!(Auth::load(&[], &[], Some(&f)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
