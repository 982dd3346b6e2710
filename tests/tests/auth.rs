//! Tokens: only agents with the agent token can register and claim; users are who their token
//! says, with roles (viewer, operator, approver, admin); forged tokens are rejected.

use std::time::Duration;
use tofuflow_e2e::{bin_dir, example, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

fn sha(t: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(t.as_bytes())?;
            c.wait_with_output()
        });
    String::from_utf8(out.unwrap().stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn cli(c: &Cluster, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(bin_dir().join("tofuflow"));
    cmd.args(args)
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env_remove("TOFUFLOW_TOKEN");
    if let Some(t) = token {
        cmd.env("TOFUFLOW_TOKEN", t);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_decide_who_may_do_what_and_forged_ones_are_rejected() {
    let users = std::env::temp_dir().join(format!(
        "tofuflow-users-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &users,
        format!(
            "[[users]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n\n[[users]]\nname = \"olga\"\nroles = [\"operator\", \"approver\"]\ntoken_sha256 = \"{}\"\n\n[[users]]\nname = \"ada\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n",
            sha("v-token"),
            sha("o-token"),
            sha("a-token")
        ),
    )
    .unwrap();
    let mut c = Cluster::start_with(
        Db::Sqlite,
        &["default"],
        &[
            "--agent-token",
            "agent-secret",
            "--users-file",
            users.to_str().unwrap(),
        ],
    )
    .await;
    std::fs::remove_file(&users).unwrap();

    // An agent with a forged token cannot register.
    let forged = std::process::Command::new(bin_dir().join("tofuflow-agent"))
        .args([
            "--coordinator",
            &c.grpc_url(),
            "--amqp-url",
            &c.amqp_url,
            "--tofu-bin",
        ])
        .arg(bin_dir().join("tofu-double"))
        .arg("--work-root")
        .arg(c.dir.join("forged"))
        .env("TOFUFLOW_AGENT_TOKEN", "forged")
        .output()
        .unwrap();
    assert_eq!(forged.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&forged.stderr).contains("invalid agent token"),
        "{}",
        String::from_utf8_lossy(&forged.stderr)
    );
    // Nor can a bare gRPC caller claim tasks (and with them state credentials).
    let ch = tonic::transport::Endpoint::from_shared(c.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut a = v1::agent_service_client::AgentServiceClient::new(ch);
    let e = a
        .claim(v1::ClaimRequest {
            agent_id: "x".into(),
            task_id: "t".into(),
            attempt: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    c.agent_token = Some("agent-secret".into());
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let g = gpu.to_str().unwrap();

    let (code, _, err) = cli(&c, None, &["run", "list"]);
    assert!(code == 1 && err.contains("a token is required"), "{err}");
    let (code, _, err) = cli(&c, Some("forged"), &["run", "list"]);
    assert!(code == 1 && err.contains("invalid user token"), "{err}");
    let (code, _, _) = cli(&c, Some("v-token"), &["run", "list"]);
    assert_eq!(code, 0, "a viewer may look");
    let (code, _, err) = cli(&c, Some("v-token"), &["run", "submit", g, "-w", "auth/w"]);
    assert!(
        code == 1 && err.contains("needs the operator or admin role"),
        "{err}"
    );

    // The token, not --user, decides who is recorded.
    let (code, id, err) = cli(
        &c,
        Some("o-token"),
        &["run", "submit", g, "-w", "auth/w", "--user", "mallory"],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let (code, _, err) = cli(&c, Some("o-token"), &["run", "wait", &id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&c, Some("v-token"), &["run", "approve", &id]);
    assert!(
        code == 1 && err.contains("needs the approver or admin role"),
        "{err}"
    );
    let (code, _, err) = cli(
        &c,
        Some("o-token"),
        &["run", "approve", &id, "--wait", "--user", "mallory"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(&c, Some("v-token"), &["run", "show", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "applied");
    assert_eq!(v["submitted_by"], "olga");
    assert!(v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["to"] == "approved" && t["actor"] == "olga"));
    assert!(
        !out.contains("mallory"),
        "a declared name never replaces the token's user"
    );

    // State: operators lock; only admins roll back or force-unlock.
    assert_eq!(cli(&c, Some("o-token"), &["state", "lock", "auth/w"]).0, 0);
    let (code, _, err) = cli(
        &c,
        Some("o-token"),
        &["state", "rollback", "auth/w", "--to", "1"],
    );
    assert!(code == 1 && err.contains("needs the admin role"), "{err}");
    let (code, _, err) = cli(
        &c,
        Some("o-token"),
        &["state", "unlock", "auth/w", "--force"],
    );
    assert!(code == 1 && err.contains("needs the admin role"), "{err}");
    let (code, _, err) = cli(
        &c,
        Some("a-token"),
        &["state", "unlock", "auth/w", "--force", "--reason", "test"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(
        &c,
        Some("v-token"),
        &["state", "list", "auth/w", "-o", "json"],
    );
    assert!(
        out.contains("\"force-unlock\"") && out.contains("\"ada\""),
        "{out}"
    );
    let _ = Duration::from_secs(0);
}
