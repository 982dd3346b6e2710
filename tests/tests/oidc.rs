//! Dynamic credentials: every task gets an OIDC ID token the clouds accept. Checked with a
//! standard JWT library (`jsonwebtoken`) against the JWKS the coordinator serves: the claims
//! per phase, the issuer in flag, discovery and token alike, renewal by heartbeat before
//! expiry, key rotation with overlap; and through a real agent, the file and the AWS variables
//! a module sees, with the token masked in the stored logs.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tofuflow_e2e::{
    claim_next, finish_plan_with_changes, wait_for, AgentOpts, Claimed, Cluster, Db,
};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(90);
const STATE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A module with one resource (nothing in it matters to a fake agent).
fn module(c: &Cluster) -> PathBuf {
    let dir = c.dir.join("module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "resource \"terraform_data\" \"x\" {}\n",
    )
    .unwrap();
    dir
}

/// A JSON document the coordinator's HTTP side serves.
fn get_json(c: &Cluster, path: &str) -> serde_json::Value {
    let (code, body) = c.get(path).unwrap();
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
}

/// The key ids the JWKS lists now.
fn kids(c: &Cluster) -> Vec<String> {
    get_json(c, "/.well-known/jwks")["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Verifies `token` (RS256, issuer, audience, expiry) with the key the served JWKS lists for
/// its `kid`; returns its claims.
fn verify(
    c: &Cluster,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<serde_json::Value, String> {
    let header = decode_header(token).map_err(|e| e.to_string())?;
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.ok_or("no kid in the header")?;
    let jwks = get_json(c, "/.well-known/jwks");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    let dk =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    decode::<serde_json::Value>(token, &dk, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn token_of(claimed: &Claimed) -> String {
    let id = claimed
        .spec
        .identity
        .as_ref()
        .expect("the claim answer carries an identity");
    assert!(!id.id_token.is_empty(), "a token with every claim");
    id.id_token.clone()
}

async fn claims_per_phase_verify_against_the_served_jwks(db: Db) {
    let c = Cluster::start(db).await;
    let issuer = c.http_url();
    let set = c.cli(&[
        "identity",
        "set",
        "ml-aws",
        "--workspace",
        "ml/*",
        "--audience",
        "sts.amazonaws.com",
        "--aws-plan-role-arn",
        "arn:aws:iam::123456789012:role/read",
        "--aws-apply-role-arn",
        "arn:aws:iam::123456789012:role/write",
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let id = c.submit(
        &module(&c),
        "ml/gpu-a100",
        &[
            "--auto-approve",
            "--commit",
            "abc123",
            "--pipeline",
            "dag-7",
        ],
    );

    let mut plan = claim_next(&c, "default", "fake").await;
    let claims = verify(&c, &token_of(&plan), &issuer, "sts.amazonaws.com").unwrap();
    assert_eq!(claims["sub"], "workspace:ml/gpu-a100:run_phase:plan");
    assert_eq!(claims["run_phase"], "plan");
    assert_eq!(claims["workspace"], "ml/gpu-a100");
    assert_eq!(claims["run_id"], id.as_str());
    assert_eq!(claims["task_id"], plan.spec.task_id.as_str());
    assert_eq!(claims["actor"], "tester");
    assert_eq!(claims["commit"], "abc123");
    assert_eq!(claims["pipeline"], "dag-7");
    assert_eq!(claims["bundle_digest"], plan.spec.bundle_digest.as_str());
    assert_eq!(claims["nbf"], claims["iat"]);
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(life, 15 * 60, "the default --oidc-token-ttl");
    let ident = plan.spec.identity.clone().unwrap();
    assert_eq!(ident.aws_role_arn, "arn:aws:iam::123456789012:role/read");
    assert!(
        verify(&c, &token_of(&plan), &issuer, "someone-else").is_err(),
        "aud is checked"
    );
    assert!(
        verify(&c, &token_of(&plan), "https://other", "sts.amazonaws.com").is_err(),
        "iss is checked"
    );

    finish_plan_with_changes(&mut plan).await;
    let apply = claim_next(&c, "default", "fake").await;
    let claims = verify(&c, &token_of(&apply), &issuer, "sts.amazonaws.com").unwrap();
    assert_eq!(claims["sub"], "workspace:ml/gpu-a100:run_phase:apply");
    assert_eq!(claims["run_phase"], "apply");
    assert_eq!(
        apply.spec.identity.unwrap().aws_role_arn,
        "arn:aws:iam::123456789012:role/write"
    );
    assert_ne!(claims["jti"], serde_json::Value::Null);

    // A workspace no configuration matches: the default audience (the issuer), no cloud.
    c.submit(&module(&c), "prod/db", &[]);
    let other = claim_next(&c, "default", "fake").await;
    let claims = verify(&c, &token_of(&other), &issuer, &issuer).unwrap();
    assert_eq!(claims["sub"], "workspace:prod/db:run_phase:plan");
    assert!(claims.get("commit").is_none() && claims.get("pipeline").is_none());
    assert_eq!(other.spec.identity.unwrap().aws_role_arn, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_per_phase_verify_against_the_served_jwks_sqlite() {
    claims_per_phase_verify_against_the_served_jwks(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_per_phase_verify_against_the_served_jwks_postgres() {
    claims_per_phase_verify_against_the_served_jwks(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_is_the_same_in_the_flag_the_discovery_document_and_the_token() {
    let issuer = "https://tofuflow.example.test/ci";
    let c = Cluster::start_with(Db::Sqlite, &["default"], &["--oidc-issuer", issuer]).await;
    let d = get_json(&c, "/.well-known/openid-configuration");
    assert_eq!(d["issuer"], issuer);
    assert_eq!(d["jwks_uri"], format!("{issuer}/.well-known/jwks"));
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert!(d["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&"run_phase".into()));
    assert_eq!(
        get_json(&c, "/.well-known/jwks"),
        get_json(&c, "/.well-known/jwks.json")
    );
    c.submit(&module(&c), "ml/a", &[]);
    let t = claim_next(&c, "default", "fake").await;
    let claims = verify(&c, &token_of(&t), issuer, issuer).unwrap();
    assert_eq!(claims["iss"], d["issuer"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_issuer_stops_the_coordinator_with_the_reason() {
    let out = std::process::Command::new(tofuflow_e2e::bin_dir().join("tofuflow-coordinator"))
        .args([
            "--oidc-issuer",
            "https://ci.example.com/",
            "--database-url",
            "sqlite::memory:",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--oidc-issuer") && err.contains("trailing slash"),
        "{err}"
    );
}

/// One heartbeat of the fake agent holding `t`: the fresh token it brings for that task.
async fn heartbeat(t: &Claimed) -> Option<v1::RenewedIdToken> {
    let r = t.heartbeat_with(&t.lease_token).await;
    assert!(r.lost_task_ids.is_empty(), "the lease lives");
    r.id_tokens
        .into_iter()
        .find(|x| x.task_id == t.spec.task_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heartbeat_brings_a_fresh_token_before_the_old_one_expires() {
    let c = Cluster::start_with(Db::Sqlite, &["default"], &["--oidc-token-ttl", "4s"]).await;
    let issuer = c.http_url();
    c.submit(&module(&c), "ml/long", &[]);
    let t = claim_next(&c, "default", "fake").await;
    let first = token_of(&t);
    let old = verify(&c, &first, &issuer, &issuer).unwrap();
    assert_eq!(
        old["exp"].as_i64().unwrap() - old["iat"].as_i64().unwrap(),
        4
    );
    // The first heartbeats (the token is young) bring nothing; one past half its life does.
    let renewed = wait_for(
        "a heartbeat with a renewed token",
        Duration::from_secs(10),
        || heartbeat(&t),
    )
    .await;
    let received = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        received < old["exp"].as_i64().unwrap(),
        "renewed before the old token expired"
    );
    assert_ne!(renewed.id_token, first);
    let new = verify(&c, &renewed.id_token, &issuer, &issuer).unwrap();
    assert!(new["exp"].as_i64() > old["exp"].as_i64());
    assert_eq!(new["sub"], old["sub"]);
    assert_eq!(new["task_id"], old["task_id"]);
    assert_ne!(new["jti"], old["jti"]);
    assert_eq!(renewed.expires_unix_ms, new["exp"].as_i64().unwrap() * 1000);
}

async fn old_tokens_verify_until_expiry_after_rotation(extra: &[&str]) {
    let mut args = vec!["--oidc-key-rotation", "3s", "--oidc-token-ttl", "8s"];
    args.extend_from_slice(extra);
    let c = Cluster::start_with(Db::Sqlite, &["default"], &args).await;
    let issuer = c.http_url();
    c.submit(&module(&c), "ml/a", &[]);
    let first = token_of(&claim_next(&c, "default", "fake").await);
    let old_kid = decode_header(&first).unwrap().kid.unwrap();
    let old = verify(&c, &first, &issuer, &issuer).unwrap();
    let exp = old["exp"].as_i64().unwrap();
    // The key rotates: a new one is listed beside the old one, which still verifies.
    wait_for("a new key in the JWKS", Duration::from_secs(15), || {
        let k = kids(&c);
        let old_kid = old_kid.clone();
        async move { (k.len() >= 2 && k.contains(&old_kid)).then_some(()) }
    })
    .await;
    verify(&c, &first, &issuer, &issuer).expect("an old token verifies while it lives");
    c.submit(&module(&c), "ml/b", &[]);
    let second = token_of(&claim_next(&c, "default", "fake").await);
    let new_kid = decode_header(&second).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid, "new tokens carry the new key's kid");
    verify(&c, &second, &issuer, &issuer).unwrap();
    // The old key leaves the JWKS, but not before its last token expired.
    let started = Instant::now();
    wait_for(
        "the old key to leave the JWKS",
        Duration::from_secs(30),
        || {
            let gone = !kids(&c).contains(&old_kid);
            async move { gone.then_some(()) }
        },
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        now >= exp,
        "the old key was dropped {}s before its token expired (waited {:?})",
        exp - now,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_key_rotation_old_tokens_verify_until_expiry_and_new_ones_carry_the_new_kid() {
    old_tokens_verify_until_expiry_after_rotation(&["--state-key", STATE_KEY]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_process_keys_rotate_with_the_same_overlap() {
    old_tokens_verify_until_expiry_after_rotation(&[]).await;
}

const CHECK: &str = r#"set -e
test "$AWS_ROLE_ARN" = "arn:aws:iam::123456789012:role/tofu-apply"
test -n "$TOFUFLOW_ID_TOKEN_FILE"
test "$AWS_WEB_IDENTITY_TOKEN_FILE" = "$TOFUFLOW_ID_TOKEN_FILE"
test -s "$TOFUFLOW_ID_TOKEN_FILE"
test "$(stat -c %a "$TOFUFLOW_ID_TOKEN_FILE")" = 600
test "$AWS_ROLE_SESSION_NAME" = "tofuflow-$TOFUFLOW_RUN_ID"
test -z "$GOOGLE_APPLICATION_CREDENTIALS"
cp "$TOFUFLOW_ID_TOKEN_FILE" "$SEEN"
echo "the token: $(cat "$TOFUFLOW_ID_TOKEN_FILE")"
echo CHECKS PASSED
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_real_task_sees_its_token_file_and_aws_variables_and_its_log_never_shows_the_token() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--state-key", STATE_KEY]).await;
    c.agent(AgentOpts::default()).await;
    let set = c.cli(&[
        "identity",
        "set",
        "ml",
        "--workspace",
        "ml/**",
        "--aws-plan-role-arn",
        "arn:aws:iam::123456789012:role/tofu-plan",
        "--aws-apply-role-arn",
        "arn:aws:iam::123456789012:role/tofu-apply",
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let seen = c.dir.join("trace").join("seen-token");
    let dir = c.dir.join("aws-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("check.sh"), CHECK).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!("resource \"terraform_data\" \"aws\" {{\n  provisioner \"local-exec\" {{\n    command = \"bash ./check.sh\"\n    environment = {{\n      SEEN = \"{}\"\n    }}\n  }}\n}}\n", seen.display()),
    )
    .unwrap();
    let id = c.submit(&dir, "ml/gpu/a100", &["--auto-approve"]);
    let r = c.wait_state(&id, &["applied", "failed"], T).await;
    let log = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert_eq!(r.state, "applied", "the module's checks failed:\n{log}");
    assert!(log.contains("CHECKS PASSED"), "{log}");
    assert!(
        log.contains("the token: (sensitive)"),
        "the printed token is masked:\n{log}"
    );
    let token = std::fs::read_to_string(&seen).unwrap();
    assert!(
        token.len() > 100 && token.starts_with("eyJ"),
        "a JWT: {token:.20}"
    );
    let claims = verify(&c, &token, &c.http_url(), &c.http_url()).unwrap();
    assert_eq!(claims["sub"], "workspace:ml/gpu/a100:run_phase:apply");
    let raw = String::from_utf8_lossy(&c.cli(&["run", "logs", &id, "--raw"]).stdout).to_string();
    for (what, text) in [
        ("run logs", log.clone()),
        ("run logs --raw", raw),
        (
            "coordinator log",
            std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap(),
        ),
        (
            "agent log",
            std::fs::read_to_string(c.dir.join("agent-0.log")).unwrap(),
        ),
    ] {
        assert!(
            !text.contains(token.trim()),
            "the token leaked into the {what}"
        );
        let signature = token.trim().rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "the token's signature leaked into the {what}"
        );
    }
}

const WAIT_FOR_RENEWAL: &str = r#"set -e
first="$(cat "$TOFUFLOW_ID_TOKEN_FILE")"
echo "first token: $first"
for i in $(seq 1 200); do
  now="$(cat "$TOFUFLOW_ID_TOKEN_FILE")"
  if [ -n "$now" ] && [ "$now" != "$first" ]; then break; fi
  sleep 0.1
done
test "$now" != "$first"
test "$(stat -c %a "$TOFUFLOW_ID_TOKEN_FILE")" = 600
echo "renewed token: $now"
printf '%s\n%s\n' "$first" "$now" > "$SEEN"
echo RENEWED IN PLACE
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_long_apply_sees_its_token_file_renewed_in_place_and_both_tokens_masked() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--oidc-token-ttl", "4s"]).await;
    c.agent(AgentOpts::default()).await;
    let seen = c.dir.join("trace").join("seen-tokens");
    let dir = c.dir.join("long-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wait.sh"), WAIT_FOR_RENEWAL).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!("resource \"terraform_data\" \"long\" {{\n  provisioner \"local-exec\" {{\n    command = \"bash ./wait.sh\"\n    environment = {{\n      SEEN = \"{}\"\n    }}\n  }}\n}}\n", seen.display()),
    )
    .unwrap();
    let id = c.submit(&dir, "ml/long", &["--auto-approve"]);
    let r = c.wait_state(&id, &["applied", "failed"], T).await;
    let log = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert_eq!(r.state, "applied", "the token file was not renewed:\n{log}");
    assert!(log.contains("first token: (sensitive)"), "{log}");
    assert!(log.contains("renewed token: (sensitive)"), "{log}");
    let tokens = std::fs::read_to_string(&seen).unwrap();
    let tokens: Vec<&str> = tokens.lines().collect();
    assert_eq!(tokens.len(), 2);
    for t in &tokens {
        assert!(!log.contains(t), "a token leaked into the run's log");
    }
    let (a, b) = (
        verify(&c, tokens[0], &c.http_url(), &c.http_url()).ok(),
        verify(&c, tokens[1], &c.http_url(), &c.http_url()).unwrap(),
    );
    assert_eq!(b["run_phase"], "apply");
    if let Some(a) = a {
        assert!(b["exp"].as_i64() > a["exp"].as_i64());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_configurations_are_an_admins_to_change_anyones_to_read_and_audited() {
    let c = Cluster::start(Db::Sqlite).await;
    let admin = c.client().await;
    let mut a = admin.clone();
    a.grant_role(v1::RoleGrantRequest {
        user: "vic".into(),
        role: "operator".into(),
        workspaces: "**".into(),
    })
    .await
    .unwrap();
    let vic = a
        .create_token(v1::CreateTokenRequest {
            user: "vic".into(),
            ttl_ms: 0,
            description: "oidc test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let wanted = v1::Identity {
        name: "gcp".into(),
        workspaces: "data/**".into(),
        gcp_audience: "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/p/providers/tofuflow".into(),
        gcp_service_account: "tofu@proj.iam.gserviceaccount.com".into(),
        ..Default::default()
    };
    let mut operator = c.client_as(Some(&vic)).await;
    let refused = operator.set_identity(wanted.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let set = a.set_identity(wanted).await.unwrap().into_inner();
    assert_eq!(set.updated_by, "tester");
    let bad = c.cli(&[
        "identity",
        "set",
        "x",
        "--workspace",
        "**",
        "--aws-role-arn",
        "arn:aws:iam::1:role/x",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--aws-role-arn"),
        "the wrong flag is named"
    );

    let listed = operator
        .list_identities(v1::ListIdentitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.identities.len(), 1);
    let shown = c.cli(&["identity", "show", "gcp"]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("tofu@proj.iam.gserviceaccount.com") && shown.contains("data/**"),
        "{shown}"
    );
    let listed = String::from_utf8_lossy(&c.cli(&["identity", "list"]).stdout).to_string();
    assert!(
        listed.contains("gcp") && listed.contains("(coordinator default)"),
        "{listed}"
    );

    // A task of a matching workspace gets the Google settings.
    c.submit(&module(&c), "data/etl", &[]);
    let t = claim_next(&c, "default", "fake").await;
    let id = t.spec.identity.unwrap();
    assert_eq!(id.gcp_service_account, "tofu@proj.iam.gserviceaccount.com");
    assert!(id.gcp_audience.ends_with("/providers/tofuflow"));

    let deleted = c.cli(&["identity", "delete", "gcp"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let gone = c.cli(&["identity", "show", "gcp"]);
    assert!(!gone.status.success());
    let audit = c.cli(&["audit", "list", "--kind", "identity_changed", "-o", "json"]);
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();
    assert_eq!(
        audit.matches("identity_changed").count(),
        2,
        "set and delete:\n{audit}"
    );
    assert!(
        audit.contains("\"deleted\":true") || audit.contains("\"deleted\": true"),
        "{audit}"
    );
}

const CHECK_GCP_AZURE: &str = r#"set -e
t="$TOFUFLOW_ID_TOKEN_FILE"
test -s "$t"
test -z "$AWS_ROLE_ARN"
test -z "$AWS_WEB_IDENTITY_TOKEN_FILE"
g="$GOOGLE_APPLICATION_CREDENTIALS"
test -s "$g"
test "$(stat -c %a "$g")" = 600
grep -q '"type": "external_account"' "$g"
grep -q "\"file\": \"$t\"" "$g"
grep -q 'serviceAccounts/tofu@proj.iam.gserviceaccount.com:generateAccessToken' "$g"
if grep -q "$(cut -c1-40 "$t")" "$g"; then echo "the token is in the credentials file"; exit 1; fi
test "$ARM_USE_OIDC" = true
test "$ARM_OIDC_TOKEN_FILE_PATH" = "$t"
test "$AZURE_FEDERATED_TOKEN_FILE" = "$t"
test "$ARM_CLIENT_ID" = 11111111-1111-1111-1111-111111111111
test "$ARM_TENANT_ID" = 22222222-2222-2222-2222-222222222222
test "$ARM_SUBSCRIPTION_ID" = 33333333-3333-3333-3333-333333333333
echo CLOUDS SET UP
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_real_task_gets_the_google_credentials_file_and_the_azure_variables() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let set = c.cli(&[
        "identity",
        "set",
        "data",
        "--workspace",
        "data/etl",
        "--gcp-audience",
        "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/p/providers/tofuflow",
        "--gcp-service-account",
        "tofu@proj.iam.gserviceaccount.com",
        "--azure-client-id",
        "11111111-1111-1111-1111-111111111111",
        "--azure-tenant-id",
        "22222222-2222-2222-2222-222222222222",
        "--azure-subscription-id",
        "33333333-3333-3333-3333-333333333333",
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let dir = c.dir.join("clouds-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("check.sh"), CHECK_GCP_AZURE).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "resource \"terraform_data\" \"clouds\" {\n  provisioner \"local-exec\" {\n    command = \"bash ./check.sh\"\n  }\n}\n",
    )
    .unwrap();
    let id = c.submit(&dir, "data/etl", &["--auto-approve"]);
    let r = c.wait_state(&id, &["applied", "failed"], T).await;
    let log = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert_eq!(r.state, "applied", "the module's checks failed:\n{log}");
    assert!(log.contains("CLOUDS SET UP"), "{log}");
    assert!(
        log.contains("set up for Google, Azure"),
        "the task's log says so:\n{log}"
    );
}
