//! The access-control commands as a user runs them: the built `tofuflow` binary against an
//! in-process stand-in of the coordinator's user API that records what it was asked and with
//! which token.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::{UserService, UserServiceServer};
use tokio::io::AsyncWriteExt;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// What the stand-in was asked: (method, bearer token, the request as `{:?}`).
type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

type Replies<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The stand-in coordinator: `tfu_alice` is alice's token, `tfu_bob` bob's; others are refused.
#[derive(Clone, Default)]
struct Fake {
    calls: Calls,
}

impl Fake {
    fn check<T: std::fmt::Debug>(&self, r: &Request<T>, method: &str) -> Result<String, Status> {
        let token = tofuflow_proto::auth::bearer(r.metadata()).unwrap_or_default();
        self.calls.lock().unwrap().push((
            method.to_string(),
            token.clone(),
            format!("{:?}", r.get_ref()),
        ));
        match token.as_str() {
            "tfu_alice" => Ok("alice".into()),
            "tfu_bob" => Ok("bob".into()),
            _ => Err(Status::unauthenticated("invalid or missing token")),
        }
    }
}

macro_rules! fake_service {
    (
        absent { $( $a:ident($areq:ty) -> $aresp:ty; )* }
        answered { $( $n:ident($req:ty) -> $resp:ty = $body:expr; )* }
    ) => {
        #[tonic::async_trait]
        impl UserService for Fake {
            type WatchRunStream = Replies<v1::Run>;
            type RunLogsStream = Replies<v1::LogLine>;
            type GetStateStream = Replies<v1::StateChunk>;

            async fn upload_bundle(
                &self,
                _r: Request<Streaming<v1::Chunk>>,
            ) -> Result<Response<v1::UploadBundleResponse>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            async fn watch_run(
                &self,
                _r: Request<v1::GetRunRequest>,
            ) -> Result<Response<Self::WatchRunStream>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            async fn run_logs(
                &self,
                _r: Request<v1::RunLogsRequest>,
            ) -> Result<Response<Self::RunLogsStream>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            async fn get_state(
                &self,
                _r: Request<v1::StateRequest>,
            ) -> Result<Response<Self::GetStateStream>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            $(
                async fn $a(&self, _r: Request<$areq>) -> Result<Response<$aresp>, Status> {
                    Err(Status::unimplemented("not in this test"))
                }
            )*
            $(
                async fn $n(&self, r: Request<$req>) -> Result<Response<$resp>, Status> {
                    let who = self.check(&r, stringify!($n))?;
                    let answer: fn(String, $req) -> $resp = $body;
                    Ok(Response::new(answer(who, r.into_inner())))
                }
            )*
        }
    };
}

fake_service! {
    absent {
        submit_run(v1::SubmitRunRequest) -> v1::Run;
        get_run(v1::GetRunRequest) -> v1::Run;
        list_runs(v1::ListRunsRequest) -> v1::ListRunsResponse;
        approve_run(v1::RunActionRequest) -> v1::Run;
        reject_run(v1::RunActionRequest) -> v1::Run;
        cancel_run(v1::RunActionRequest) -> v1::Run;
        list_state_versions(v1::StateRequest) -> v1::StateVersionList;
        rollback_state(v1::RollbackStateRequest) -> v1::StateVersionInfo;
        lock_state(v1::StateLockRequest) -> v1::StateLockInfo;
        unlock_state(v1::StateLockRequest) -> v1::StateLockInfo;
        list_dead_letters(v1::ListDeadLettersRequest) -> v1::ListDeadLettersResponse;
        purge_dead_letters(v1::PurgeDeadLettersRequest) -> v1::PurgeDeadLettersResponse;
    }
    answered {
        who_am_i(v1::WhoAmIRequest) -> v1::WhoAmIResponse = |who, _| v1::WhoAmIResponse {
            grants: vec![v1::RoleGrant {
                user: who.clone(),
                role: "operator".into(),
                workspaces: "ml/**".into(),
                granted_by: "admin".into(),
                granted_ms: 951_782_400_000,
            }],
            name: who,
            open: false,
            token_id: "tok-1".into(),
            token_expires_ms: 0,
        };
        list_agents(v1::ListAgentsRequest) -> v1::ListAgentsResponse = |_, _| v1::ListAgentsResponse {
            agents: vec![v1::Agent {
                id: "agent-1".into(),
                name: "gpu-node".into(),
                pools: vec!["gpu".into()],
                state: "idle".into(),
                revoked_unix_ms: 951_782_400_000,
                ..Default::default()
            }],
        };
        create_token(v1::CreateTokenRequest) -> v1::CreateTokenResponse = |who, r| v1::CreateTokenResponse {
            info: Some(v1::TokenInfo {
                id: "tok-2".into(),
                user: if r.user.is_empty() { who } else { r.user },
                description: r.description,
                ..Default::default()
            }),
            token: "tfu_new".into(),
        };
        list_tokens(v1::ListTokensRequest) -> v1::ListTokensResponse = |who, _| v1::ListTokensResponse {
            tokens: vec![v1::TokenInfo {
                id: "tok-1".into(),
                user: who,
                description: "laptop".into(),
                created_ms: 951_782_400_000,
                ..Default::default()
            }],
        };
        revoke_token(v1::RevokeTokenRequest) -> v1::TokenInfo = |who, r| v1::TokenInfo { id: r.id, user: who, ..Default::default() };
        grant_role(v1::RoleGrantRequest) -> v1::RoleGrant = |_, r| v1::RoleGrant { user: r.user, role: r.role, workspaces: r.workspaces, ..Default::default() };
        revoke_role(v1::RoleGrantRequest) -> v1::RoleGrant = |_, r| v1::RoleGrant { user: r.user, role: r.role, workspaces: r.workspaces, ..Default::default() };
        list_roles(v1::ListRolesRequest) -> v1::ListRolesResponse = |_, _| v1::ListRolesResponse::default();
        set_workspace_rule(v1::WorkspaceRule) -> v1::WorkspaceRule = |who, r| v1::WorkspaceRule { updated_by: who, ..r };
        delete_workspace_rule(v1::DeleteWorkspaceRuleRequest) -> v1::WorkspaceRule = |_, r| v1::WorkspaceRule { workspaces: r.workspaces, ..Default::default() };
        list_workspace_rules(v1::ListRulesRequest) -> v1::ListWorkspaceRulesResponse = |_, _| v1::ListWorkspaceRulesResponse::default();
        set_pool_rule(v1::PoolRule) -> v1::PoolRule = |who, r| v1::PoolRule { updated_by: who, ..r };
        list_pool_rules(v1::ListRulesRequest) -> v1::ListPoolRulesResponse = |_, _| v1::ListPoolRulesResponse::default();
        create_join_token(v1::CreateJoinTokenRequest) -> v1::CreateJoinTokenResponse = |_, r| v1::CreateJoinTokenResponse {
            info: Some(v1::JoinTokenInfo { id: "join-1".into(), pools: r.pools, ..Default::default() }),
            token: "tfu_join".into(),
        };
        list_join_tokens(v1::ListRulesRequest) -> v1::ListJoinTokensResponse = |_, _| v1::ListJoinTokensResponse::default();
        revoke_join_token(v1::RevokeTokenRequest) -> v1::JoinTokenInfo = |_, r| v1::JoinTokenInfo { id: r.id, ..Default::default() };
        revoke_agent(v1::RevokeAgentRequest) -> v1::Agent = |_, r| v1::Agent { id: r.agent_id, revoked_unix_ms: 1, ..Default::default() };
    }
}

/// A stand-in coordinator on a free port and a private home for the CLI's config file.
struct Env {
    url: String,
    calls: Calls,
    home: PathBuf,
}

impl Env {
    async fn start(name: &str) -> Env {
        let fake = Fake::default();
        let calls = fake.calls.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(UserServiceServer::new(fake))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let home = std::env::temp_dir().join(format!("tofuflow-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        Env { url, calls, home }
    }

    fn config(&self) -> PathBuf {
        self.home.join("xdg").join("tofuflow").join("config.toml")
    }

    /// Runs `tofuflow ARGS` with `stdin`, extra environment `env`, and nothing from the caller's.
    async fn cli(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tofuflow"));
        cmd.args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("xdg"))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    /// The last call's (method, token, request).
    fn last(&self) -> (String, String, String) {
        self.calls.lock().unwrap().last().cloned().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn login_checks_the_token_then_keeps_it_private_and_flags_and_env_win_over_it() {
    let env = Env::start("login").await;
    let out = env
        .cli(&["--coordinator", &env.url, "login"], "tfu_alice\n", &[])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("alice") && stdout.contains("ml/**"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("tfu_alice"),
        "login printed the token: {stdout}"
    );
    assert_eq!(env.last().0, "who_am_i");
    assert_eq!(env.last().1, "tfu_alice");
    let saved = std::fs::read_to_string(env.config()).unwrap();
    assert!(
        saved.contains(&format!("coordinator = \"{}\"", env.url)),
        "{saved}"
    );
    assert!(saved.contains("token = \"tfu_alice\""), "{saved}");
    assert_eq!(mode(&env.config()), 0o600);
    assert_eq!(mode(env.config().parent().unwrap()), 0o700);

    // The saved coordinator and token are used when nothing else is given.
    let out = env.cli(&["whoami"], "", &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("alice"));
    assert_eq!(env.last().1, "tfu_alice");

    // The environment beats the file, and the flag beats the environment.
    let out = env
        .cli(&["whoami"], "", &[("TOFUFLOW_TOKEN", "tfu_bob")])
        .await;
    assert!(text(&out.stdout).contains("bob"), "{}", text(&out.stdout));
    assert_eq!(env.last().1, "tfu_bob");
    let out = env
        .cli(
            &["whoami", "--token", "tfu_alice"],
            "",
            &[("TOFUFLOW_TOKEN", "tfu_bob")],
        )
        .await;
    assert!(text(&out.stdout).contains("alice"));
    assert_eq!(env.last().1, "tfu_alice");
    let out = env
        .cli(
            &["whoami", "-o", "json"],
            "",
            &[("TOFUFLOW_COORDINATOR", "http://127.0.0.1:1")],
        )
        .await;
    assert!(
        !out.status.success(),
        "the environment's coordinator was not used"
    );

    // Logging out removes the token but keeps the coordinator.
    let out = env.cli(&["logout"], "", &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let saved = std::fs::read_to_string(env.config()).unwrap();
    assert!(
        !saved.contains("token =") && !saved.contains("tfu_"),
        "{saved}"
    );
    assert!(saved.contains("coordinator ="), "{saved}");
    let out = env.cli(&["whoami"], "", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no token was given") && err.contains("tofuflow login"),
        "{err}"
    );
    assert_eq!(env.last().1, "");
}

#[tokio::test]
async fn a_refused_token_is_not_saved() {
    let env = Env::start("refused").await;
    let out = env
        .cli(&["--coordinator", &env.url, "login"], "tfu_wrong\n", &[])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("refused this token") && err.contains("nothing was saved"),
        "{err}"
    );
    assert!(!err.contains("tfu_wrong"), "{err}");
    assert!(!env.config().exists());
    let out = env
        .cli(&["--coordinator", &env.url, "login"], "\n", &[])
        .await;
    assert!(text(&out.stderr).contains("no token given"));
}

#[tokio::test]
async fn new_tokens_are_alone_on_the_last_line() {
    let env = Env::start("create").await;
    let base = ["--coordinator", env.url.as_str(), "--token", "tfu_alice"];
    let args = |more: &[&'static str]| -> Vec<String> {
        base.iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let env = &env;
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            env.cli(&a, "", &[]).await
        }
    };

    let out = run(args(&[
        "token",
        "create",
        "--user",
        "bob",
        "--ttl",
        "30d",
        "--description",
        "ci",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().last(), Some("tfu_new"));
    let (method, _, req) = env.last();
    assert_eq!(method, "create_token");
    assert!(
        req.contains("user: \"bob\"") && req.contains("ttl_ms: 2592000000"),
        "{req}"
    );

    let out = run(args(&["-o", "json", "token", "create"])).await;
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["token"], "tfu_new");
    assert_eq!(j["user"], "alice");

    let out = run(args(&[
        "agent",
        "join-token",
        "create",
        "--pool",
        "gpu,cpu",
        "--ttl",
        "2h",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().last(), Some("tfu_join"));
    let (method, _, req) = env.last();
    assert_eq!(method, "create_join_token");
    assert!(
        req.contains("[\"gpu\", \"cpu\"]") && req.contains("ttl_ms: 7200000"),
        "{req}"
    );

    // Listing never shows a token, only ids.
    let out = run(args(&["token", "list", "--all"])).await;
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ID") && stdout.contains("tok-1") && stdout.contains("laptop"));
    assert!(env.last().2.contains("user: \"*\""));
}

#[tokio::test]
async fn grants_rules_pools_and_revocations_send_what_was_asked() {
    let env = Env::start("rules").await;
    let run = |more: &'static [&'static str]| {
        let env = &env;
        async move {
            let mut a = vec!["--coordinator", env.url.as_str(), "--token", "tfu_alice"];
            a.extend_from_slice(more);
            let out = env.cli(&a, "", &[]).await;
            assert!(out.status.success(), "{:?}: {}", more, text(&out.stderr));
            (text(&out.stdout), env.last())
        }
    };

    let (out, (_, _, req)) = run(&[
        "role",
        "grant",
        "carol",
        "approver",
        "--workspaces",
        "prod/**",
    ])
    .await;
    assert_eq!(out.trim(), "carol is now approver on prod/**");
    assert!(req.contains("role: \"approver\""), "{req}");

    let (_, (m, _, req)) = run(&[
        "rule",
        "set",
        "prod/**",
        "--four-eyes",
        "--source",
        "git@github.com:acme/infra.git//prod",
        "--digest",
        "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB",
        "--pool",
        "prod",
    ])
    .await;
    assert_eq!(m, "set_workspace_rule");
    assert!(req.contains("four_eyes: true"), "{req}");
    assert!(
        req.contains("\"sha256:abababababababababababababababababababababababababababababababab\""),
        "{req}"
    );

    let (out, (_, _, req)) = run(&["pool", "set", "gpu", "--any-workspace"]).await;
    assert_eq!(out.trim(), "pool gpu serves any workspace");
    assert!(req.contains("workspaces: []"), "{req}");

    let (out, (m, _, _)) = run(&["agent", "revoke", "agent-9"]).await;
    assert_eq!(m, "revoke_agent");
    assert!(out.contains("revoked agent agent-9"), "{out}");

    let (out, _) = run(&["agent", "list"]).await;
    let mut lines = out.lines();
    assert!(lines.next().unwrap().trim_end().ends_with("REVOKED"));
    assert!(
        lines.next().unwrap().ends_with("2000-02-29 00:00:00 UTC"),
        "{out}"
    );
}
