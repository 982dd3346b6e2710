//! The task's OIDC ID token (dynamic credentials): the file `id_token` in the task's secrets
//! directory, named by `TOFUFLOW_ID_TOKEN_FILE`, and, per the workspace's identity
//! configuration, exactly the variables and files the cloud providers read
//! (`../shared/reference/identity.md`):
//! - AWS: `AWS_ROLE_ARN` (the role of the task's phase), `AWS_WEB_IDENTITY_TOKEN_FILE`,
//!   `AWS_ROLE_SESSION_NAME` = `tofuflow-<run id>`;
//! - Google: an `external_account` credentials file whose `credential_source.file` is the
//!   token, named by `GOOGLE_APPLICATION_CREDENTIALS`;
//! - Azure: `ARM_USE_OIDC=true`, `ARM_OIDC_TOKEN_FILE_PATH`, `ARM_CLIENT_ID`,
//!   `ARM_TENANT_ID`, `ARM_SUBSCRIPTION_ID`, and `AZURE_FEDERATED_TOKEN_FILE` (azapi, kubelogin).
//!
//! The providers read the file again whenever they refresh their session, so a token renewed
//! by a heartbeat ([`TokenSlot::renew`]) replaces the file in place (a new file renamed over
//! the old one in the same directory: a reader sees the old token or the new one, never half)
//! and a long apply never loses its credentials. Every token is masked before the file holding
//! it exists; none is ever logged.

use super::secrets::SecretsDir;
use crate::error::Result;
use crate::report::{LineSink, Reporter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tofuflow_proto::v1;

/// The token file's name in the secrets directory.
pub const TOKEN_FILE: &str = "id_token";
/// The Google credentials file's name in the secrets directory.
pub const GCP_FILE: &str = "gcp-credentials.json";

/// Google's security token service and the impersonation endpoint (identity.md, B.1).
const GCP_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
const GCP_JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The Google `external_account` credentials file for a token at `token_path` (it holds no
/// secret: only where the token is).
pub fn gcp_credentials(id: &v1::TaskIdentity, token_path: &str) -> String {
    let mut v = serde_json::json!({
        "type": "external_account",
        "audience": id.gcp_audience,
        "subject_token_type": GCP_JWT_TYPE,
        "token_url": GCP_TOKEN_URL,
        "credential_source": {"file": token_path, "format": {"type": "text"}},
    });
    if !id.gcp_service_account.is_empty() {
        v["service_account_impersonation_url"] = format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            id.gcp_service_account
        )
        .into();
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// The variables tofu gets for `id` of run `run_id`, the token being at `token_path` and the
/// Google credentials (when configured) at `gcp_path`.
pub fn variables(
    id: &v1::TaskIdentity,
    run_id: &str,
    token_path: &str,
    gcp_path: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    set("TOFUFLOW_ID_TOKEN_FILE", token_path);
    if !id.aws_role_arn.is_empty() {
        set("AWS_ROLE_ARN", &id.aws_role_arn);
        set("AWS_WEB_IDENTITY_TOKEN_FILE", token_path);
        set("AWS_ROLE_SESSION_NAME", &session_name(run_id));
    }
    if let Some(p) = gcp_path {
        set("GOOGLE_APPLICATION_CREDENTIALS", p);
    }
    if !id.azure_client_id.is_empty() {
        set("ARM_USE_OIDC", "true");
        set("ARM_OIDC_TOKEN_FILE_PATH", token_path);
        set("ARM_CLIENT_ID", &id.azure_client_id);
        set("ARM_TENANT_ID", &id.azure_tenant_id);
        set("ARM_SUBSCRIPTION_ID", &id.azure_subscription_id);
        set("AZURE_FEDERATED_TOKEN_FILE", token_path);
    }
    env
}

/// `tofuflow-<run id>`, within AWS's 64 characters of `[\w+=,.@-]`.
fn session_name(run_id: &str) -> String {
    let clean: String = run_id
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                true => c,
                false => '-',
            },
        )
        .collect();
    let mut s = format!("tofuflow-{clean}");
    s.truncate(64);
    s
}

/// Writes the token (and the Google credentials file) into the task's secrets directory,
/// makes `slot` rewrite the token on renewal from now on, and returns the variables tofu gets.
/// A task without a token (an older coordinator) gets nothing.
pub(super) fn apply(
    spec: &v1::TaskSpec,
    dir: &SecretsDir,
    slot: &TokenSlot,
    rep: &Reporter,
) -> Result<BTreeMap<String, String>> {
    let Some(id) = spec.identity.as_ref().filter(|i| !i.id_token.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let token = slot.attach(dir).unwrap_or_else(|| id.id_token.clone());
    let token_path = dir.write(TOKEN_FILE, token.as_bytes())?;
    let token_path = token_path.display().to_string();
    let gcp_path = match id.gcp_audience.is_empty() {
        true => None,
        false => Some(dir.write(GCP_FILE, gcp_credentials(id, &token_path).as_bytes())?),
    };
    let gcp_path = gcp_path.map(|p| p.display().to_string());
    let env = variables(id, &spec.run_id, &token_path, gcp_path.as_deref());
    let mut clouds = Vec::new();
    for (key, cloud) in [
        ("AWS_ROLE_ARN", "AWS"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "Google"),
        ("ARM_CLIENT_ID", "Azure"),
    ] {
        if env.contains_key(key) {
            clouds.push(cloud);
        }
    }
    rep.system(format!(
        "tofuflow: OIDC ID token in $TOFUFLOW_ID_TOKEN_FILE (renewed while the lease lives){}",
        match clouds.is_empty() {
            true => String::new(),
            false => format!("; set up for {}", clouds.join(", ")),
        }
    ));
    Ok(env)
}

/// Where a task's token lives, for renewals that heartbeats bring: the secrets directory once
/// the task has one, and the log sink whose masker must know every token.
#[derive(Default)]
pub struct TokenSlot {
    inner: std::sync::Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// A token renewed before the file existed.
    pending: Option<String>,
    /// The secrets directory (as the agent sees it) and its owner.
    file: Option<(PathBuf, Option<(u32, u32)>)>,
    sink: Option<LineSink>,
}

impl TokenSlot {
    /// Masks renewed tokens in this task's log from now on.
    pub fn set_sink(&self, sink: LineSink) {
        if let Ok(mut s) = self.inner.lock() {
            s.sink = Some(sink);
        }
    }

    /// Forgets the task's log sink and token file (the task has ended): a renewal that still
    /// comes is dropped. The reporter cannot finish while the sink is kept here.
    pub fn detach(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *s = SlotState::default();
    }

    /// Rewrites the token file in `dir` on renewal from now on; returns a token renewed
    /// before (to write instead of the claim's).
    fn attach(&self, dir: &SecretsDir) -> Option<String> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.file = Some((dir.host_path().to_path_buf(), dir.owner()));
        s.pending.take()
    }

    /// Takes a renewed token: masked first, then written over the old file (or kept until the
    /// file exists; dropped once the task has ended). A failed write is logged; the old token stays until it expires.
    pub fn renew(&self, token: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = &s.sink {
            sink.add_secrets(&[token.to_string()]);
        }
        match &s.file {
            Some((dir, owner)) => {
                if let Err(e) = replace(dir, *owner, token.as_bytes()) {
                    tracing::warn!(error = %e, "cannot write the renewed ID token; the task keeps the old one until it expires");
                }
            }
            None if s.sink.is_some() => s.pending = Some(token.to_string()),
            None => {}
        }
    }
}

/// Replaces `dir/id_token` atomically: a new 0600 file of the run user, renamed over the old.
fn replace(dir: &Path, owner: Option<(u32, u32)>, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{TOKEN_FILE}.renewed"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    drop(f);
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(
            &tmp,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
    }
    std::fs::rename(&tmp, dir.join(TOKEN_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> v1::TaskIdentity {
        v1::TaskIdentity {
            id_token: "eyJ.x.y".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_alone_sets_only_its_file() {
        let env = variables(&identity(), "r1", "/w/secrets/id_token", None);
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            [(
                "TOFUFLOW_ID_TOKEN_FILE".to_string(),
                "/w/secrets/id_token".to_string()
            )]
        );
    }

    #[test]
    fn aws_gets_the_role_the_token_file_and_a_session_name() {
        let mut id = identity();
        id.aws_role_arn = "arn:aws:iam::123456789012:role/plan".into();
        let env = variables(&id, "5f0c", "/t", None);
        assert_eq!(env["AWS_ROLE_ARN"], "arn:aws:iam::123456789012:role/plan");
        assert_eq!(env["AWS_WEB_IDENTITY_TOKEN_FILE"], "/t");
        assert_eq!(env["AWS_ROLE_SESSION_NAME"], "tofuflow-5f0c");
        assert_eq!(env.len(), 4);
        assert_eq!(session_name(&"x/y".repeat(40)).len(), 64);
        assert!(session_name("a/b").ends_with("a-b"));
    }

    #[test]
    fn azure_gets_exactly_the_arm_variables_and_the_federated_token_file() {
        let mut id = identity();
        id.azure_client_id = "c".into();
        id.azure_tenant_id = "t".into();
        id.azure_subscription_id = "s".into();
        let env = variables(&id, "r", "/t", None);
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "ARM_CLIENT_ID",
                "ARM_OIDC_TOKEN_FILE_PATH",
                "ARM_SUBSCRIPTION_ID",
                "ARM_TENANT_ID",
                "ARM_USE_OIDC",
                "AZURE_FEDERATED_TOKEN_FILE",
                "TOFUFLOW_ID_TOKEN_FILE"
            ]
        );
        assert_eq!(env["ARM_USE_OIDC"], "true");
        assert_eq!(env["ARM_OIDC_TOKEN_FILE_PATH"], "/t");
        assert_eq!(env["AZURE_FEDERATED_TOKEN_FILE"], "/t");
    }

    #[test]
    fn google_gets_an_external_account_file_reading_the_token() {
        let mut id = identity();
        id.gcp_audience =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/pr"
                .into();
        let v: serde_json::Value = serde_json::from_str(&gcp_credentials(&id, "/t")).unwrap();
        assert_eq!(v["type"], "external_account");
        assert_eq!(v["audience"], id.gcp_audience);
        assert_eq!(
            v["subject_token_type"],
            "urn:ietf:params:oauth:token-type:jwt"
        );
        assert_eq!(v["token_url"], "https://sts.googleapis.com/v1/token");
        assert_eq!(v["credential_source"]["file"], "/t");
        assert_eq!(v["credential_source"]["format"]["type"], "text");
        assert!(v.get("service_account_impersonation_url").is_none());
        assert!(
            !gcp_credentials(&id, "/t").contains("eyJ"),
            "no token inside"
        );
        id.gcp_service_account = "tofu@p.iam.gserviceaccount.com".into();
        let v: serde_json::Value = serde_json::from_str(&gcp_credentials(&id, "/t")).unwrap();
        assert_eq!(
            v["service_account_impersonation_url"],
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/tofu@p.iam.gserviceaccount.com:generateAccessToken"
        );
        let env = variables(&id, "r", "/t", Some("/g.json"));
        assert_eq!(env["GOOGLE_APPLICATION_CREDENTIALS"], "/g.json");
        assert!(!env.contains_key("GOOGLE_CREDENTIALS"));
    }

    #[test]
    fn a_renewal_replaces_the_file_in_place() {
        use std::os::unix::fs::PermissionsExt;
        let d =
            std::env::temp_dir().join(format!("tofuflow-idt-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(TOKEN_FILE), "old").unwrap();
        replace(&d, None, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(d.join(TOKEN_FILE)).unwrap(), "new");
        let mode = std::fs::metadata(d.join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary file left"
        );
        let slot = TokenSlot::default();
        slot.renew("ended");
        assert_eq!(
            slot.inner.lock().unwrap().pending,
            None,
            "no task, nothing kept"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
