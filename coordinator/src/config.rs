//! Configuration: flags that also read `TOFUFLOW_*` environment variables, over an optional TOML
//! file, over defaults that work on one machine with a local RabbitMQ.

use clap::Parser;
use std::time::Duration;

fn dur(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30s or 5m: {e}"))
}

/// tofuflow-coordinator: keeps runs, leases and state; publishes tasks to RabbitMQ.
#[derive(Parser, Debug, Clone)]
#[command(name = "tofuflow-coordinator", version, args_override_self = true)]
pub struct Config {
    /// TOML file with any of these settings (flag names with '-' replaced by '_').
    #[arg(long, env = "TOFUFLOW_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Address of the gRPC API (agents and users). Port 0 picks a free port.
    #[arg(long, env = "TOFUFLOW_GRPC_LISTEN", default_value = "127.0.0.1:7700")]
    pub grpc_listen: String,

    /// Address of the HTTP side: OpenTofu state backend, /healthz, /readyz, /metrics.
    #[arg(long, env = "TOFUFLOW_HTTP_LISTEN", default_value = "127.0.0.1:7701")]
    pub http_listen: String,

    /// URL agents use to reach the HTTP side (state backend). Default: http://<http-listen>
    /// (https:// with --tls-cert).
    #[arg(long, env = "TOFUFLOW_PUBLIC_HTTP_URL")]
    pub public_http_url: Option<String>,

    /// sqlite://PATH (created on first start) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "TOFUFLOW_DATABASE_URL",
        default_value = "sqlite://tofuflow.db"
    )]
    pub database_url: String,

    /// RabbitMQ URL. Several nodes of one cluster: comma-separate them or repeat the flag; the
    /// publisher and the dead-letter connection use the first that answers and, when their
    /// connection breaks, the next live one.
    #[arg(
        long,
        env = "TOFUFLOW_AMQP_URL",
        value_delimiter = ',',
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: Vec<String>,

    /// Pools whose queues are declared at start (agents declare their own too).
    #[arg(
        long,
        env = "TOFUFLOW_POOLS",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub pools: Vec<String>,

    /// How long a lease lives without a heartbeat.
    #[arg(long, env = "TOFUFLOW_LEASE_TTL", value_parser = dur, default_value = "15s")]
    pub lease_ttl: Duration,

    /// How often agents heartbeat (told to them at registration).
    #[arg(long, env = "TOFUFLOW_HEARTBEAT_INTERVAL", value_parser = dur, default_value = "5s")]
    pub heartbeat_interval: Duration,

    /// How long a webhook delivery attempt may take (connecting, TLS, the answer's head)
    /// before it counts as failed and is retried.
    #[arg(long, env = "TOFUFLOW_WEBHOOK_TIMEOUT", value_parser = dur, default_value = "10s")]
    pub webhook_timeout: Duration,

    /// How often expired leases and overdue runs are looked for.
    #[arg(long, env = "TOFUFLOW_REAP_INTERVAL", value_parser = dur, default_value = "1s")]
    pub reap_interval: Duration,

    /// How long before an environment's TTL runs out the `ttl_near` reminder (webhook event,
    /// audit entry) goes out; 0: 10% of the TTL, at most 15 minutes.
    #[arg(long, env = "TOFUFLOW_TTL_REMINDER", value_parser = dur, default_value = "0s")]
    pub ttl_reminder: Duration,

    /// The wait after an expired environment's destroy run fails before the next one; doubled
    /// after each further failure, up to --ttl-retry-max-backoff.
    #[arg(long, env = "TOFUFLOW_TTL_RETRY_BACKOFF", value_parser = dur, default_value = "1m")]
    pub ttl_retry_backoff: Duration,

    /// The longest wait between an expired environment's destroy attempts.
    #[arg(long, env = "TOFUFLOW_TTL_RETRY_MAX_BACKOFF", value_parser = dur, default_value = "1h")]
    pub ttl_retry_max_backoff: Duration,

    /// Failed destroy attempts after which an expired environment is `teardown_failed`.
    #[arg(long, env = "TOFUFLOW_TTL_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub ttl_max_attempts: u32,

    /// How long a signed task message may be claimed; one that expires unclaimed is signed and
    /// queued again by the reaper (agents dead-letter the expired copy).
    #[arg(long, env = "TOFUFLOW_ENVELOPE_TTL", value_parser = dur, default_value = "1h")]
    pub envelope_ttl: Duration,

    /// How long a signing key signs task messages before a new one takes over; the old key
    /// keeps verifying until every message it signed has expired.
    #[arg(long, env = "TOFUFLOW_SIGNING_KEY_ROTATION", value_parser = dur, default_value = "24h")]
    pub signing_key_rotation: Duration,

    /// The issuer of tasks' OIDC ID tokens: their exact `iss`, and where clouds fetch
    /// /.well-known/openid-configuration and the JWKS. Clouds need an https URL they can reach.
    /// Default: the public HTTP URL (http://<http-listen>).
    #[arg(long, env = "TOFUFLOW_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// `aud` of ID tokens whose workspace has no identity configuration with an audience.
    /// Default: the issuer.
    #[arg(long, env = "TOFUFLOW_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,

    /// Lifetime of a task's ID token; a heartbeat brings a fresh one when less than half is
    /// left, for as long as the lease lives.
    #[arg(long, env = "TOFUFLOW_OIDC_TOKEN_TTL", value_parser = dur, default_value = "15m")]
    pub oidc_token_ttl: Duration,

    /// How long a key signs ID tokens before a new one takes over; the old key stays in the
    /// JWKS until every token it signed has expired.
    #[arg(long, env = "TOFUFLOW_OIDC_KEY_ROTATION", value_parser = dur, default_value = "7d")]
    pub oidc_key_rotation: Duration,

    /// Plan attempts before a run whose agents keep dying fails.
    #[arg(long, env = "TOFUFLOW_MAX_PLAN_ATTEMPTS", default_value_t = 3)]
    pub max_plan_attempts: u32,

    /// How long a task may wait in its queue for an agent before the run expires.
    #[arg(long, env = "TOFUFLOW_QUEUE_TIMEOUT", value_parser = dur, default_value = "24h")]
    pub queue_timeout: Duration,

    /// How long a plan waits for approval before the run expires.
    #[arg(long, env = "TOFUFLOW_APPROVAL_TIMEOUT", value_parser = dur, default_value = "72h")]
    pub approval_timeout: Duration,

    /// How long a finished run's log is kept after the run's last change; older logs are deleted
    /// by the reaper (each recorded as a `logs_pruned` audit entry; `run logs` then says so).
    /// 0 keeps logs forever.
    #[arg(long, env = "TOFUFLOW_LOG_RETENTION", value_parser = dur, default_value = "0s")]
    pub log_retention: Duration,

    /// How long one plan policy may evaluate one plan; a policy past it is stopped and the run
    /// fails ("policy NAME exceeded its time limit").
    #[arg(long, env = "TOFUFLOW_POLICY_TIMEOUT", value_parser = dur, default_value = "2s")]
    pub policy_timeout: Duration,

    /// Largest bundle accepted from `run submit`, in bytes.
    #[arg(long, env = "TOFUFLOW_MAX_BUNDLE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_bundle_bytes: u64,

    /// Most messages the dead-letter queue (tofuflow.dead) holds; beyond it the oldest are
    /// dropped.
    #[arg(long, env = "TOFUFLOW_DEAD_LETTER_MAX", default_value_t = tofuflow_proto::amqp::DEAD_LETTER_MAX, value_parser = clap::value_parser!(i64).range(1..))]
    pub dead_letter_max: i64,

    /// Static token(s) valid for every pool (comma-separated), an alternative to join tokens
    /// (`tofuflow agent join-token create`) for setups that configure agents declaratively.
    #[arg(
        long,
        env = "TOFUFLOW_AGENT_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub agent_token: Vec<String>,

    /// Token(s) valid for one pool only, as POOL=TOKEN (repeat, or comma-separated): an agent
    /// presenting one may register for that pool and no other. Several per pool for rotation.
    #[arg(
        long,
        env = "TOFUFLOW_AGENT_POOL_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub agent_pool_token: Vec<String>,

    /// TOML file of users for declarative setups: [[users]] name, role or roles
    /// (viewer|operator|approver|admin), workspaces (globs, default ["**"]), token_sha256.
    /// Works beside the API tokens kept in the database.
    #[arg(long, env = "TOFUFLOW_USERS_FILE")]
    pub users_file: Option<std::path::PathBuf>,

    /// Opens both APIs to anyone who reaches the ports, for local experiments only: no token is
    /// checked and users' names are taken as declared. Logged loudly at every start.
    #[arg(long, env = "TOFUFLOW_INSECURE_OPEN")]
    pub insecure_open: bool,

    /// Default lifetime of API tokens created with `tofuflow token create` (e.g. 90d, 12h).
    #[arg(long, env = "TOFUFLOW_TOKEN_TTL", default_value = "90d", value_parser = dur)]
    pub token_ttl: Duration,

    /// How long an agent's own credential lives without a heartbeat renewing it; an agent
    /// down for longer needs a new join token.
    #[arg(long, env = "TOFUFLOW_AGENT_CREDENTIAL_TTL", default_value = "24h", value_parser = dur)]
    pub agent_credential_ttl: Duration,

    /// Base64 of a 32-byte key: stored state is encrypted with AES-256-GCM under it.
    #[arg(long, env = "TOFUFLOW_STATE_KEY", hide_env_values = true)]
    pub state_key: Option<String>,

    /// Previous state keys (comma-separated base64), readable only; versions under them are
    /// re-encrypted with --state-key at start.
    #[arg(
        long,
        env = "TOFUFLOW_OLD_STATE_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub old_state_keys: Vec<String>,

    /// State versions kept per workspace (the newest N; 0 keeps all).
    #[arg(long, env = "TOFUFLOW_STATE_VERSIONS_KEEP", default_value_t = 100)]
    pub state_versions_keep: i64,

    /// Server certificate (PEM, the chain, leaf first): gRPC and HTTP are served over TLS.
    /// Needs --tls-key.
    #[arg(long, env = "TOFUFLOW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The server certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TOFUFLOW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA certificate(s) (PEM) for client certificates: agents must present one signed by it
    /// (mutual TLS); users may still connect without one. Needs --tls-cert.
    #[arg(long, env = "TOFUFLOW_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Write {"grpc": ADDR, "http": ADDR} here once listening (for scripts and tests).
    #[arg(long, env = "TOFUFLOW_READY_FILE")]
    pub ready_file: Option<std::path::PathBuf>,

    /// Log format: text or json. Levels come from TOFUFLOW_LOG (default info).
    #[arg(long, env = "TOFUFLOW_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

fn toml_scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

impl Config {
    /// Parses flags/env, then fills values not given there from the TOML file.
    pub fn load() -> Result<Config, String> {
        let cli = Config::parse();
        let Some(path) = cli.config.clone() else {
            return Ok(cli);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
        // Rebuild the argument list: file values first, then the real command line (which wins).
        let mut args = vec!["tofuflow-coordinator".to_string()];
        for (k, v) in table {
            // The environment beats the file: leave keys whose variable is set to clap.
            if std::env::var_os(format!("TOFUFLOW_{}", k.to_ascii_uppercase())).is_some() {
                continue;
            }
            let flag = format!("--{}", k.replace('_', "-"));
            // So does the command line: a list flag given there would otherwise be appended to
            // the file's list instead of replacing it.
            if std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
                continue;
            }
            match v {
                toml::Value::Array(items) => {
                    let joined: Vec<String> = items.iter().map(toml_scalar).collect();
                    args.push(flag);
                    args.push(joined.join(","));
                }
                toml::Value::String(s) => {
                    args.push(flag);
                    args.push(s);
                }
                other => {
                    args.push(flag);
                    args.push(toml_scalar(&other));
                }
            }
        }
        args.extend(std::env::args().skip(1));
        Config::try_parse_from(args).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// The state encryption keys from config.
    pub fn keys(&self) -> Result<crate::store::crypt::Keys, String> {
        let current = self
            .state_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(crate::store::crypt::Key::from_base64)
            .transpose()?;
        let old = self
            .old_state_keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| crate::store::crypt::Key::from_base64(k))
            .collect::<Result<Vec<_>, _>>()?;
        if current.is_none() && !old.is_empty() {
            return Err("--old-state-keys needs --state-key (the key to rotate to)".into());
        }
        Ok(crate::store::crypt::Keys { current, old })
    }

    /// How ID tokens are issued; `public_http_url` is the issuer when none is configured.
    pub fn oidc(&self, public_http_url: &str) -> Result<crate::oidc::OidcConfig, String> {
        let text = self
            .oidc_issuer
            .clone()
            .unwrap_or_else(|| public_http_url.trim_end_matches('/').to_string());
        let issuer = crate::oidc::Issuer::parse(&text)?;
        let ms = |d: Duration| d.as_millis() as i64;
        if self.oidc_token_ttl < Duration::from_secs(1) {
            return Err("--oidc-token-ttl must be at least 1s (e.g. 15m)".into());
        }
        if self.oidc_key_rotation < Duration::from_secs(1) {
            return Err("--oidc-key-rotation must be at least 1s (e.g. 7d)".into());
        }
        let audience = match self.oidc_audience.as_deref().map(str::trim) {
            Some("") => {
                return Err("--oidc-audience is empty: leave it out to use the issuer".into())
            }
            Some(a) => a.to_string(),
            None => issuer.as_str().to_string(),
        };
        Ok(crate::oidc::OidcConfig {
            issuer,
            default_audience: audience,
            token_ttl_ms: ms(self.oidc_token_ttl),
            rotation_ms: ms(self.oidc_key_rotation),
        })
    }

    /// The TTL knobs (`runs::ttl`).
    pub fn ttl_policy(&self) -> crate::runs::ttl::TtlPolicy {
        let ms = |d: Duration| d.as_millis() as i64;
        crate::runs::ttl::TtlPolicy {
            reminder_ms: ms(self.ttl_reminder),
            backoff_ms: ms(self.ttl_retry_backoff).max(1),
            max_backoff_ms: ms(self.ttl_retry_max_backoff).max(ms(self.ttl_retry_backoff)),
            max_attempts: self.ttl_max_attempts as i64,
        }
    }

    pub fn policy(&self) -> crate::store::Policy {
        crate::store::Policy {
            lease_ttl_ms: self.lease_ttl.as_millis() as i64,
            agent_credential_ttl_ms: self.agent_credential_ttl.as_millis() as i64,
            max_plan_attempts: self.max_plan_attempts,
            queue_timeout_ms: self.queue_timeout.as_millis() as i64,
            approval_timeout_ms: self.approval_timeout.as_millis() as i64,
            plan_policy_timeout_ms: self.policy_timeout.as_millis() as i64,
            log_retention_ms: self.log_retention.as_millis() as i64,
        }
    }
}
