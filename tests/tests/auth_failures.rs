//! Failed authentications are visible: each is logged at warn level with the peer address and
//! what was wrong (never the credential), and counted per API in `/metrics`.

use std::time::Duration;
use tofuflow_e2e::{http_request, metric, users_file, wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::auth::Bearer;
use tofuflow_proto::v1;

const FORGED_AGENT: &str = "forged-agent-token-7f3c1d";
const FORGED_USER: &str = "forged-user-token-91ab2e";
const FORGED_STATE: &str = "forged-state-pass-44d0c9";

async fn channel(c: &Cluster) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(c.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Log lines of failed authentications of `api`.
fn failures_logged(c: &Cluster, api: &str) -> Vec<String> {
    std::fs::read_to_string(c.dir.join("coordinator.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("authentication failed") && l.contains(&format!("api=\"{api}\"")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_credentials_are_logged_with_the_peer_and_counted_per_api() {
    let tmp = std::env::temp_dir();
    let users = users_file(&tmp, &[("ada", "admin", "admin-token-5e1f0a")]);
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
    // Good credentials are not failures: a real agent registers and heartbeats, a user lists.
    c.agent_token = Some("agent-secret".into());
    c.agent(AgentOpts::default()).await;
    let mut ok_user = v1::user_service_client::UserServiceClient::with_interceptor(
        channel(&c).await,
        Bearer::new(Some("admin-token-5e1f0a")).unwrap(),
    );
    ok_user
        .list_runs(v1::ListRunsRequest::default())
        .await
        .expect("a valid token is accepted");

    // Agent API: a forged token, and none.
    for token in [Some(FORGED_AGENT), None] {
        let mut a = v1::agent_service_client::AgentServiceClient::with_interceptor(
            channel(&c).await,
            Bearer::new(token).unwrap(),
        );
        let e = a
            .register(v1::RegisterRequest {
                protocol_version: tofuflow_proto::PROTOCOL_VERSION,
                name: "intruder".into(),
                pools: vec!["default".into()],
                capacity: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
    // User API: a forged token, and none.
    for token in [Some(FORGED_USER), None] {
        let mut u = v1::user_service_client::UserServiceClient::with_interceptor(
            channel(&c).await,
            Bearer::new(token).unwrap(),
        );
        let e = u
            .list_runs(v1::ListRunsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
    // State backend: a made-up lease credential, and none.
    let url = format!("{}/state/auth/w", c.http_url());
    let (code, _) = http_request("GET", &url, Some(("task-x", FORGED_STATE)), None, &[]);
    assert_eq!(code, 403);
    let (code, _) = http_request("GET", &url, None, None, &[]);
    assert_eq!(code, 401);

    for (api, reasons) in [
        ("agent", ["invalid agent token", "missing agent token"]),
        ("user", ["invalid user token", "missing user token"]),
        (
            "state",
            ["invalid or expired credential", "missing credentials"],
        ),
    ] {
        let cc = &c;
        let lines = wait_for(
            &format!("two failed {api} authentications in the log"),
            Duration::from_secs(10),
            || async move { Some(failures_logged(cc, api)).filter(|l| l.len() >= 2) },
        )
        .await;
        assert_eq!(lines.len(), 2, "{api}: {lines:#?}");
        for (line, reason) in lines.iter().zip(reasons) {
            assert!(line.contains("WARN"), "logged at warn level: {line}");
            assert!(line.contains("peer=127.0.0.1:"), "names the peer: {line}");
            assert!(
                line.contains(reason),
                "says what was wrong ({reason}): {line}"
            );
        }
        assert_eq!(
            metric(
                &c,
                &format!("tofuflow_auth_failures_total{{api=\"{api}\"}}")
            ),
            Some(2.0),
            "{api} failures in /metrics"
        );
    }
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    for secret in [
        FORGED_AGENT,
        FORGED_USER,
        FORGED_STATE,
        "agent-secret",
        "admin-token-5e1f0a",
    ] {
        assert!(
            !log.contains(secret),
            "the credential {secret:?} appears in the coordinator's log"
        );
    }
}
