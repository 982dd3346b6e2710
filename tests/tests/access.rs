//! Access control on the secure default: the bootstrap token, roles per workspace glob, API
//! tokens that expire and are revoked, four-eyes, workspace and pool rules, and agents that
//! join with join tokens, are bound to their pools and can be revoked.

use std::time::Duration;
use tofuflow_e2e::{example, fake_agent, wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(60);

/// Runs the CLI as the holder of `token` (none: anonymous): (success, stdout, stderr).
fn cli_as(c: &Cluster, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(tofuflow_e2e::bin_dir().join("tofuflow"));
    cmd.args(args)
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("no-config.toml"))
        .env_remove("TOFUFLOW_TOKEN");
    if let Some(t) = token {
        cmd.env("TOFUFLOW_TOKEN", t);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// Asserts the CLI call worked and returns its stdout.
fn ok(r: (bool, String, String)) -> String {
    assert!(r.0, "expected success:\n{}\n{}", r.1, r.2);
    r.1
}

/// Asserts the CLI call was refused with `needle` in its error.
fn refused(r: (bool, String, String), needle: &str) {
    assert!(
        !r.0,
        "expected a refusal naming {needle:?}, got success:\n{}",
        r.1
    );
    assert!(r.2.contains(needle), "expected {needle:?} in:\n{}", r.2);
}

/// A new API token for `user` (created by the cluster's admin `tester`): (token, id).
async fn token_for(c: &Cluster, user: &str, ttl_ms: i64) -> (String, String) {
    let r = c
        .client()
        .await
        .create_token(v1::CreateTokenRequest {
            user: user.into(),
            ttl_ms,
            description: "access test".into(),
        })
        .await
        .expect("create token")
        .into_inner();
    (r.token, r.info.unwrap().id)
}

/// `run submit` of the gpu-pool example to `ws` with extra flags; the run id on success.
fn submit(c: &Cluster, token: Option<&str>, ws: &str, extra: &[&str]) -> (bool, String, String) {
    let gpu = example("gpu-pool");
    let mut args = vec![
        "run",
        "submit",
        gpu.to_str().unwrap(),
        "-w",
        ws,
        "--var",
        "gpu_count=1",
        "--var",
        "region=us-east-1",
    ];
    args.extend_from_slice(extra);
    let r = cli_as(c, token, &args);
    (r.0, r.1, r.2)
}

/// The run id `run submit` printed: its `Run` line with `--wait`, else its only line.
fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run"))
        .unwrap_or(stdout)
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_start_is_closed_and_roles_hold_per_workspace() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let boot = c
        .bootstrap_token
        .clone()
        .expect("the first start prints a bootstrap token");
    assert!(boot.starts_with("tfu_"));
    refused(cli_as(&c, None, &["run", "list"]), "token is required");
    refused(
        cli_as(&c, Some("tfu_forged"), &["run", "list"]),
        "invalid user token",
    );
    let me = ok(cli_as(&c, Some(&boot), &["whoami"]));
    assert!(me.contains("admin"), "{me}");
    c.restart_coordinator().await;
    assert_eq!(
        c.printed_bootstrap_token().as_deref(),
        Some(boot.as_str()),
        "printed on the first start only (the fixture asserts one line)"
    );
    let db = std::fs::read_to_string(c.dir.join("coordinator.db")).unwrap_or_default();
    assert!(
        !db.contains(&boot),
        "the database keeps the token's hash only"
    );

    c.agent(AgentOpts::default()).await;
    let tester = c.token.clone().unwrap();
    let (pat, _) = token_for(&c, "pat", 0).await;
    let (vera, _) = token_for(&c, "vera", 0).await;
    for (user, role, glob) in [
        ("pat", "operator", "ml/*"),
        ("pat", "approver", "prod/**"),
        ("vera", "viewer", "ml/**"),
    ] {
        ok(cli_as(
            &c,
            Some(&tester),
            &["role", "grant", user, role, "--workspaces", glob],
        ));
    }
    let listed = ok(cli_as(&c, Some(&tester), &["role", "list"]));
    assert!(
        listed.contains("pat") && listed.contains("prod/**"),
        "{listed}"
    );

    // pat operates ml/* but does not approve there; approves prod/** but does not submit there.
    let ml = run_id(&ok(submit(&c, Some(&pat), "ml/a", &["--wait"])));
    refused(
        cli_as(&c, Some(&pat), &["run", "approve", &ml]),
        "pat may not approve on workspace ml/a",
    );
    refused(
        submit(&c, Some(&pat), "ml/a/deeper", &[]),
        "pat may not submit on workspace ml/a/deeper",
    );
    refused(submit(&c, Some(&pat), "prod/x", &[]), "operator on ml/*");
    let prod = run_id(&ok(submit(&c, Some(&tester), "prod/x", &["--wait"])));
    ok(cli_as(&c, Some(&pat), &["run", "approve", &prod, "--wait"]));
    let shown = ok(cli_as(&c, Some(&tester), &["run", "show", &prod]));
    assert!(
        shown.contains("applied") && shown.contains("pat"),
        "{shown}"
    );

    // vera sees ml runs only, and changes nothing.
    let seen = ok(cli_as(&c, Some(&vera), &["run", "list"]));
    assert!(seen.contains(&ml) && !seen.contains(&prod), "{seen}");
    refused(
        cli_as(&c, Some(&vera), &["run", "show", &prod]),
        "vera may not read runs",
    );
    refused(
        cli_as(&c, Some(&vera), &["run", "cancel", &ml]),
        "vera may not cancel",
    );
    refused(
        cli_as(
            &c,
            Some(&vera),
            &["role", "grant", "vera", "admin", "--workspaces", "**"],
        ),
        "may not manage roles",
    );

    // Tokens expire and are revoked; a user revokes their own.
    let (short, _) = token_for(&c, "pat", 1).await;
    refused(cli_as(&c, Some(&short), &["whoami"]), "expired");
    let (pat2, id) = token_for(&c, "pat", 0).await;
    ok(cli_as(&c, Some(&pat2), &["whoami"]));
    ok(cli_as(&c, Some(&pat), &["token", "revoke", &id]));
    refused(cli_as(&c, Some(&pat2), &["whoami"]), "revoked");
    let tokens = ok(cli_as(&c, Some(&tester), &["token", "list", "--all"]));
    assert!(tokens.contains(&id), "{tokens}");
    assert!(
        !tokens.contains(&pat2[4..]),
        "a listing never shows a token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn four_eyes_and_module_and_pool_rules_refuse_with_the_rule_named() {
    let mut c = Cluster::start_with(Db::Postgres, &["default", "gpu", "cpu"], &[]).await;
    c.agent(AgentOpts::default()).await;
    let tester = c.token.clone().unwrap();
    let (pat, _) = token_for(&c, "pat", 0).await;
    ok(cli_as(
        &c,
        Some(&tester),
        &["role", "grant", "pat", "approver", "--workspaces", "ml/**"],
    ));

    // Four eyes: the submitter may not approve, nor skip approval.
    ok(cli_as(
        &c,
        Some(&tester),
        &["rule", "set", "ml/**", "--four-eyes"],
    ));
    refused(
        submit(&c, Some(&tester), "ml/a", &["--auto-approve"]),
        "requires four eyes",
    );
    let id = run_id(&ok(submit(&c, Some(&tester), "ml/a", &["--wait"])));
    refused(
        cli_as(&c, Some(&tester), &["run", "approve", &id]),
        "workspace rule ml/** requires four eyes",
    );
    ok(cli_as(&c, Some(&pat), &["run", "approve", &id, "--wait"]));
    c.wait_state(&id, &["applied"], T).await;

    // Module sources: a prefix of the recorded source, or a signed-off digest.
    let allowed = "git@example.com:acme/infra.git//modules";
    ok(cli_as(
        &c,
        Some(&tester),
        &["rule", "set", "prod/**", "--source", allowed],
    ));
    refused(
        submit(
            &c,
            Some(&tester),
            "prod/a",
            &["--source", "git@example.com:evil/infra.git//modules"],
        ),
        "workspace rule prod/** allows modules from",
    );
    let src = format!("{allowed}/gpu");
    ok(submit(
        &c,
        Some(&tester),
        "prod/a",
        &["--source", &src, "--plan-only"],
    ));

    // Pools: a pool serves the workspaces its rule names.
    ok(cli_as(
        &c,
        Some(&tester),
        &["pool", "set", "gpu", "--workspaces", "ml/**"],
    ));
    refused(
        submit(&c, Some(&tester), "dev/a", &["--pool", "gpu"]),
        "pool rule gpu",
    );
    let rules = ok(cli_as(&c, Some(&tester), &["pool", "list"]));
    assert!(rules.contains("gpu") && rules.contains("ml/**"), "{rules}");
    let changed = ok(cli_as(
        &c,
        Some(&tester),
        &["audit", "list", "--kind", "rule_changed"],
    ));
    assert!(
        changed.contains("prod/**") && changed.contains("gpu"),
        "{changed}"
    );

    // A rule set while a run waits is enforced at claim: the run fails, naming it.
    let queued = run_id(&ok(submit(
        &c,
        Some(&tester),
        "dev/b",
        &["--pool", "cpu", "--plan-only"],
    )));
    ok(cli_as(
        &c,
        Some(&tester),
        &["pool", "set", "cpu", "--workspaces", "ml/**"],
    ));
    c.agent(AgentOpts {
        pools: vec!["cpu".into()],
        ..Default::default()
    })
    .await;
    let r = c.wait_state(&queued, &["failed"], T).await;
    assert!(
        r.error.contains("refused at claim: pool rule cpu"),
        "{}",
        r.error
    );
}

/// Takes the next task message off `pool`'s queue: (task id, attempt, envelope id).
async fn next_task(c: &Cluster, pool: &str) -> (String, u32, String) {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let ch = c.amqp().await;
    let d = wait_for("a task message", T, || {
        let ch = ch.clone();
        async move {
            ch.basic_get(
                format!("tofuflow.pool.{pool}").as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    let (env, signed) = tofuflow_e2e::open_envelope(&d.delivery.data);
    d.delivery.ack(BasicAckOptions::default()).await.unwrap();
    (env.task_id, env.attempt, signed.envelope_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_join_with_their_pools_only_and_are_revoked() {
    let mut c = Cluster::start_with(Db::Sqlite, &["a", "b"], &[]).await;
    let tester = c.token.clone().unwrap();
    let join_a = c.join_token(&["a".into()]).await;

    // A pool-a join token does not register for pool b, nor claim a pool-b task.
    let e = fake_agent(&c, &["b"], "intruder", Some(&join_a))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let (mut a, a_id) = fake_agent(&c, &["a"], "agent-a", Some(&join_a))
        .await
        .unwrap();
    let id = run_id(&ok(submit(
        &c,
        Some(&tester),
        "ml/b",
        &["--pool", "b", "--plan-only"],
    )));
    assert!(!id.is_empty());
    let (task_id, attempt, envelope_id) = next_task(&c, "b").await;
    let r = a
        .claim(v1::ClaimRequest {
            agent_id: a_id.clone(),
            task_id,
            attempt,
            envelope_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !r.granted && r.reason.contains("not registered for pool \"b\""),
        "{}",
        r.reason
    );

    // A forged identity, an expired and a revoked join token are refused.
    let chan = tonic::transport::Endpoint::from_shared(c.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let forged = tofuflow_proto::auth::Bearer::default()
        .with_agent(&a_id, "0000")
        .unwrap();
    let mut f = v1::agent_service_client::AgentServiceClient::with_interceptor(chan, forged);
    let e = f
        .heartbeat(v1::HeartbeatRequest {
            protocol_version: tofuflow_proto::PROTOCOL_VERSION,
            agent_id: a_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let expired = c
        .client()
        .await
        .create_join_token(v1::CreateJoinTokenRequest {
            pools: vec!["a".into()],
            ttl_ms: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let e = fake_agent(&c, &["a"], "late", Some(&expired))
        .await
        .unwrap_err();
    assert!(e.message().contains("expired join token"), "{e}");
    let listed = ok(cli_as(&c, Some(&tester), &["agent", "join-token", "list"]));
    let join_id = listed
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("join_")))
        .expect("a join token id")
        .to_string();
    ok(cli_as(
        &c,
        Some(&tester),
        &["agent", "join-token", "revoke", &join_id],
    ));

    // A revoked agent stops at its next heartbeat and marks its identity revoked (so a
    // restart does not join again by itself).
    let n = c
        .agent(AgentOpts {
            pools: vec!["a".into()],
            ..Default::default()
        })
        .await;
    let agent_id = c.agents[n].id.clone();
    let identity = c.agents[n].work_root.join("identity.json");
    assert!(identity.exists(), "the agent keeps its identity");
    ok(cli_as(&c, Some(&tester), &["agent", "revoke", &agent_id]));
    let status = c.agents[n]
        .wait_exit(T)
        .expect("the revoked agent stops at its next heartbeat");
    assert!(!status.success(), "a revoked agent exits with an error");
    let kept = std::fs::read_to_string(&identity).unwrap();
    assert!(
        kept.contains("\"revoked_ms\":") && !kept.contains("\"revoked_ms\":0"),
        "a revoked identity is kept, marked: {kept}"
    );
    let log = std::fs::read_to_string(c.dir.join(format!("{}.log", c.agents[n].name))).unwrap();
    assert!(log.contains("revoked"), "{log}");
    let agents = ok(cli_as(&c, Some(&tester), &["agent", "list"]));
    assert!(
        agents
            .lines()
            .any(|l| l.contains(&agent_id[..8]) || l.contains(&agent_id)),
        "{agents}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_open_is_explicit_and_loud() {
    let c = Cluster::start_with(Db::Sqlite, &["default"], &["--insecure-open"]).await;
    assert!(
        c.bootstrap_token.is_none(),
        "an open coordinator makes no bootstrap token"
    );
    ok(cli_as(&c, None, &["run", "list"]));
    let me = ok(cli_as(&c, None, &["whoami"]));
    assert!(me.contains("open"), "{me}");
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    assert!(
        log.contains("WARN")
            && log.contains("--insecure-open: ANYONE WHO REACHES THESE PORTS IS AN ADMIN"),
        "{log}"
    );
}
