//! Who may call the coordinator. Users present API tokens: created with `tofuflow token create`
//! (or the bootstrap token of the first start) and stored hashed, or listed in a users file for
//! declarative setups; a user holds roles on workspace globs ([`Grant`]). Agents present a join
//! token (or a static agent token) to register, and from then on their own identity (checked in
//! `api::agent`). Only SHA-256 hashes of tokens are kept. The API is open only with
//! `--insecure-open`. What each role may do is decided in [`authorize`].

pub mod authorize;
pub mod glob;
pub mod roles;
pub mod rules;

pub use authorize::{authorize, permitted, Action, Actor, Caller};
pub use glob::WorkspaceGlob;
pub use roles::Role;
pub use rules::Rules;

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

/// A role held on the workspaces a glob matches.
#[derive(Clone, Debug)]
pub struct Grant {
    pub role: Role,
    pub workspaces: WorkspaceGlob,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.role, self.workspaces.as_str())
    }
}

/// An authenticated user and what they hold.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub grants: Vec<Grant>,
    /// The API token used (`None` for a users-file token).
    pub token_id: Option<String>,
}

/// What the interceptor found on a user-API call (in the request's extensions); the handler's
/// `authorize` turns it into a [`Caller`], looking API tokens up in the store.
#[derive(Clone, Debug)]
pub enum UserCredential {
    /// `--insecure-open`: nothing is checked.
    Open,
    /// A token of the users file.
    File(Principal),
    /// Some other bearer token: an API token if the store knows this hash.
    ApiToken { sha256: String },
}

/// What an agent-API call's credential grants (in the request's extensions).
#[derive(Clone, Debug, PartialEq)]
pub enum AgentGrant {
    /// `--insecure-open` or an `--agent-token`: every pool.
    AnyPool,
    /// An `--agent-pool-token`: these pools only.
    Pools(Vec<String>),
    /// The call carries a registered agent's identity (checked by `api::agent`): the pools it
    /// registered for, while it is neither revoked nor expired.
    Identity,
    /// Some other bearer token: a join token if the store knows this hash (registration only).
    JoinToken { sha256: String },
}

impl AgentGrant {
    /// Whether an agent with this grant may take tasks of `pool` without asking the store.
    pub fn covers(&self, pool: &str) -> bool {
        match self {
            AgentGrant::AnyPool | AgentGrant::Identity => true,
            AgentGrant::Pools(p) => p.iter().any(|x| x == pool),
            AgentGrant::JoinToken { .. } => false,
        }
    }
}

/// The configured agent tokens and users: checks the credentials of gRPC calls.
#[derive(Clone, Default)]
pub struct Auth {
    agent_tokens: Vec<String>,
    /// Token hash → the pools it is valid for.
    pool_tokens: HashMap<String, Vec<String>>,
    /// Token hash → the users file's user.
    users: HashMap<String, Principal>,
    /// `--insecure-open`: no credential is checked.
    open: bool,
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
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    /// One role (older files), or `roles`.
    role: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// The globs the roles hold on (default `**`).
    workspaces: Option<Vec<String>>,
    token_sha256: String,
}

impl UserEntry {
    /// The entry's token hash and user, checked.
    fn parse(self) -> Result<(String, Principal), String> {
        let who = format!("user {:?}", self.name);
        if self.name.trim().is_empty() {
            return Err("a user in the users file has an empty name".into());
        }
        let roles: Vec<String> = self.role.into_iter().chain(self.roles).collect();
        if roles.is_empty() {
            return Err(format!(
                "{who}: give a role (viewer, operator, approver or admin) or roles = [..]"
            ));
        }
        let globs = self.workspaces.unwrap_or_else(|| vec!["**".into()]);
        let mut grants = Vec::new();
        for r in &roles {
            let role: Role = r.parse().map_err(|e| format!("{who}: {e}"))?;
            for g in &globs {
                let workspaces = WorkspaceGlob::parse(g).map_err(|e| format!("{who}: {e}"))?;
                grants.push(Grant { role, workspaces });
            }
        }
        let h = self.token_sha256.trim().to_ascii_lowercase();
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{who}: token_sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)"
            ));
        }
        let p = Principal {
            name: self.name,
            grants,
            token_id: None,
        };
        Ok((h, p))
    }
}

/// The SHA-256 of a token, as stored.
pub fn hash(token: &str) -> String {
    crate::store::sha256_hex(token.as_bytes())
}

/// Reads a users file into token hash → user.
fn read_users(p: &std::path::Path) -> Result<HashMap<String, Principal>, String> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| format!("cannot read users file {}: {e}", p.display()))?;
    let f: UsersFile = toml::from_str(&text)
        .map_err(|e| format!("users file {} is not valid: {e}", p.display()))?;
    let mut m = HashMap::new();
    for u in f.users {
        let (h, p) = u.parse()?;
        m.insert(h, p);
    }
    if m.is_empty() {
        return Err(format!("users file {} lists no [[users]]", p.display()));
    }
    Ok(m)
}

impl Auth {
    /// Reads the agent tokens, pool tokens and users file; an invalid one is refused with
    /// what to fix. `open` is `--insecure-open`.
    pub fn load(
        agent_tokens: &[String],
        agent_pool_tokens: &[String],
        users_file: Option<&std::path::Path>,
        open: bool,
    ) -> Result<Auth, String> {
        let pool_tokens = pool_tokens(agent_pool_tokens)?;
        let agent_tokens = agent_tokens
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(hash)
            .collect();
        let users = match users_file {
            None => HashMap::new(),
            Some(p) => read_users(p)?,
        };
        Ok(Auth {
            agent_tokens,
            pool_tokens,
            users,
            open,
            failures: Arc::default(),
        })
    }

    /// True with `--insecure-open`: nothing is checked.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// True when a users file is configured.
    pub fn has_users_file(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks the credential of an agent-API call and attaches what it grants
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

    /// What the request's credential grants, or (what was wrong, what to tell the caller).
    fn agent_grant(&self, req: &Request<()>) -> Result<AgentGrant, (&'static str, &'static str)> {
        if self.open {
            return Ok(AgentGrant::AnyPool);
        }
        if tofuflow_proto::auth::agent_identity(req.metadata()).is_some() {
            return Ok(AgentGrant::Identity);
        }
        match tofuflow_proto::auth::bearer(req.metadata()).map(|t| hash(&t)) {
            None => Err(("missing agent token", "an agent credential is required: start the agent with --token (TOFUFLOW_AGENT_TOKEN) set to a join token from `tofuflow agent join-token create`")),
            Some(h) if self.agent_tokens.contains(&h) => Ok(AgentGrant::AnyPool),
            Some(h) => Ok(self
                .pool_tokens
                .get(&h)
                .map(|pools| AgentGrant::Pools(pools.clone()))
                .unwrap_or(AgentGrant::JoinToken { sha256: h })),
        }
    }

    /// Checks that a user-API call carries a token and attaches what it is
    /// ([`UserCredential`]); API tokens are looked up by the handler.
    pub fn check_user(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let cred = if self.open {
            UserCredential::Open
        } else {
            match tofuflow_proto::auth::bearer(req.metadata()).map(|t| hash(&t)) {
                None => {
                    self.failures
                        .record(Api::User, req.remote_addr(), "missing user token");
                    return Err(Error::Unauthenticated(
                        "a token is required: run `tofuflow login` or set TOFUFLOW_TOKEN (the coordinator's first start printed a bootstrap admin token)".into(),
                    )
                    .into());
                }
                Some(h) => self.credential_of(h),
            }
        };
        req.extensions_mut().insert(cred);
        Ok(req)
    }

    /// Attaches what a token known only by its SHA-256 stands for (a web session keeps the
    /// hash, never the token), as [`Auth::check_user`] does for a bearer token.
    pub fn check_user_hash(&self, mut req: Request<()>, sha256: &str) -> Request<()> {
        let cred = if self.open {
            UserCredential::Open
        } else {
            self.credential_of(sha256.to_string())
        };
        req.extensions_mut().insert(cred);
        req
    }

    /// A users-file user's credential when the hash is theirs, else an API token's to look up.
    fn credential_of(&self, sha256: String) -> UserCredential {
        match self.users.get(&sha256) {
            Some(p) => UserCredential::File(p.clone()),
            None => UserCredential::ApiToken { sha256 },
        }
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

    fn users_file(body: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("tofuflow-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("users.toml");
        std::fs::write(&f, body).unwrap();
        (dir, f)
    }

    #[test]
    fn agent_credentials() {
        let a = Auth::load(
            &["agent-secret".into()],
            &["gpu=gpu-pool-token-0123456789".into()],
            None,
            false,
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
        assert!(Auth::load(&[], &["gpu=short".into()], None, false).is_err());
        assert!(Auth::load(&[], &["no-equals-sign-token-xxxxxxxx".into()], None, false).is_err());
        assert_eq!(
            a.check_agent(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let other = a.check_agent(with_token("maybe-a-join-token")).unwrap();
        assert!(matches!(
            other.extensions().get::<AgentGrant>(),
            Some(AgentGrant::JoinToken { .. })
        ));
        assert!(a.check_agent(with_token("agent-secret")).is_ok());
        assert_eq!(a.failures.count(Api::Agent), 1, "missing");
    }

    #[test]
    fn users_file_roles_and_globs() {
        let (dir, f) = users_file(&format!(
            "[[users]]\nname = \"olga\"\nroles = [\"operator\", \"approver\"]\nworkspaces = [\"ml/*\"]\ntoken_sha256 = \"{}\"\n\n[[users]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
            hash("o-token"),
            hash("v-token")
        ));
        let a = Auth::load(&[], &[], Some(&f), false).unwrap();
        let req = a.check_user(with_token("o-token")).unwrap();
        let Some(UserCredential::File(p)) = req.extensions().get::<UserCredential>() else {
            panic!("a users-file token is recognised");
        };
        let c = Caller::User(p.clone());
        assert!(c.may(Action::Approve, Some("ml/a")) && c.may(Action::Submit, Some("ml/a")));
        assert!(!c.may(Action::Submit, Some("prod/a")));
        let req = a.check_user(with_token("unknown")).unwrap();
        assert!(matches!(
            req.extensions().get::<UserCredential>(),
            Some(UserCredential::ApiToken { .. })
        ));
        assert_eq!(
            a.check_user(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        for bad in [
            "[[users]]\nname = \"x\"\nrole = \"root\"\ntoken_sha256 = \"00\"\n",
            "[[users]]\nname = \"x\"\ntoken_sha256 = \"00\"\n",
            "[[users]]\nname = \"x\"\nrole = \"viewer\"\nworkspaces = [\"a b\"]\ntoken_sha256 = \"00\"\n",
        ] {
            std::fs::write(&f, bad).unwrap();
            assert!(Auth::load(&[], &[], Some(&f), false).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_checks_nothing() {
        let a = Auth::load(&[], &[], None, true).unwrap();
        let req = a.check_user(Request::new(())).unwrap();
        assert!(matches!(
            req.extensions().get::<UserCredential>(),
            Some(UserCredential::Open)
        ));
        assert!(a.check_agent(Request::new(())).is_ok());
    }
}
