//! Connections (named credential sets) end to end, on both databases: a connection attached to
//! `ml/*` reaches a task of `ml/a` (its variables in tofu's environment, its file 0600 in a
//! tmpfs of the task's own) and not one of `prod/a`; a rotation is taken by the next task; a
//! task reading one is in the audit log; its values appear in no log line (not even base64
//! encoded), no RabbitMQ message, no database table, neither service's own log and no
//! process's command line; a deleted connection is gone from the database; the CLI refuses
//! short secrets and never prints a value.

use std::io::Write;
use std::time::Duration;
use tofuflow_e2e::{bin_dir, leaks, AgentOpts, Cluster, CmdlineScan, Db};

const T: Duration = Duration::from_secs(90);
const STATE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const TOKEN: &str = "conn-canary-token-5e2b9d41c7";
const ROTATED: &str = "conn-canary-rotated-8a3f6c20e1";
const KUBE: &str = "conn-canary-kube-client-key-3d7e1b";
const RUN_ENV: &str = "run-env-canary-7c1d09e4b2";
const CANARIES: [&str; 4] = [TOKEN, ROTATED, KUBE, RUN_ENV];

const MODULE: &str = r#"
resource "terraform_data" "probe" {
  provisioner "local-exec" {
    command = "sh ./probe.sh"
  }
}
"#;

/// Prints what the task received: names and plain values as they are, secrets (masked in
/// the log), a digest of the token (to tell which value arrived), the file's mode and the
/// file system it is on.
const PROBE: &str = r#"
echo "API_TOKEN=${API_TOKEN:-<unset>}"
echo "AWS_REGION=${AWS_REGION:-<unset>}"
if [ -n "$API_TOKEN" ]; then
  echo "token-sha256 $(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)"
  echo "token-base64 $(printf 'user:%s' "$API_TOKEN" | base64 -w0)"
fi
if [ -n "$KUBECONFIG" ]; then
  echo "kubeconfig-mode $(stat -c %a "$KUBECONFIG")"
  echo "secrets-fs $(stat -f -c %T "$(dirname "$KUBECONFIG")")"
  cat "$KUBECONFIG"
fi
"#;

fn sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Submits the probe module to `ws`, auto-approved; its log once applied.
async fn probe(c: &Cluster, ws: &str) -> (String, String) {
    probe_with(c, ws, &[]).await
}

/// `probe` with more `run submit` arguments.
async fn probe_with(c: &Cluster, ws: &str, extra: &[&str]) -> (String, String) {
    let dir = c.dir.join("probe");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), MODULE).unwrap();
    std::fs::write(dir.join("probe.sh"), PROBE).unwrap();
    let mut args = vec![
        "run",
        "submit",
        dir.to_str().unwrap(),
        "-w",
        ws,
        "--auto-approve",
    ];
    args.extend(extra);
    let id = ok(&c.cli(&args));
    let id = id.trim().to_string();
    c.wait_state(&id, &["applied"], T).await;
    let log = ok(&c.cli(&["run", "logs", &id]));
    (id, log)
}

/// `tofuflow connection rotate NAME --from-file -` with `input` on standard input.
fn rotate_from_stdin(c: &Cluster, name: &str, input: &str) -> std::process::Output {
    let mut child = std::process::Command::new(bin_dir().join("tofuflow"))
        .args(["connection", "rotate", name, "--from-file", "-"])
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_TOKEN", c.token.as_deref().unwrap())
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("cli-config.toml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn set_connection(c: &Cluster) {
    let env = c.dir.join("creds.env");
    std::fs::write(
        &env,
        format!("# ml team\nAPI_TOKEN={TOKEN}\nAWS_REGION=eu-west-1\n"),
    )
    .unwrap();
    let kube = c.dir.join("kubeconfig");
    std::fs::write(&kube, format!("apiVersion: v1\nclient-key-data: {KUBE}\n")).unwrap();
    let short = c.dir.join("short.env");
    std::fs::write(&short, "TOKEN=abc\n").unwrap();
    let refused = c.cli(&[
        "connection",
        "set",
        "bad",
        "-w",
        "**",
        "--from-file",
        short.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("--plain TOKEN") && !why.contains("abc"),
        "{why}"
    );
    let out = ok(&c.cli(&[
        "connection",
        "set",
        "ml-creds",
        "-w",
        "ml/*",
        "--from-file",
        env.to_str().unwrap(),
        "--file",
        &format!("KUBECONFIG={}", kube.display()),
        "--plain",
        "AWS_REGION",
    ]));
    assert!(out.contains("version 1"), "{out}");
    let shown = ok(&c.cli(&["connection", "show", "ml-creds"]));
    assert!(shown.contains("AWS_REGION = eu-west-1"), "{shown}");
    assert!(shown.contains("phases:      plan, apply"), "{shown}");
    assert!(shown.contains("API_TOKEN = (secret)"), "{shown}");
    assert!(
        leaks(&CANARIES, "connection show", shown.as_bytes()).is_empty(),
        "{shown}"
    );
}

async fn scenario(db: Db) {
    let mut c = Cluster::builder(db)
        .coordinator_args(&["--state-key", STATE_KEY])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    let ch = c.capture_task_messages("conn-capture").await;
    set_connection(&c);
    let scan = CmdlineScan::start(&CANARIES);

    let (ml_run, ml) = probe(&c, "ml/a").await;
    assert!(ml.contains("API_TOKEN=(sensitive)"), "{ml}");
    assert!(
        ml.contains("AWS_REGION=eu-west-1"),
        "plain values are not masked:\n{ml}"
    );
    assert!(
        ml.contains(&format!("token-sha256 {}", sha256(TOKEN))),
        "{ml}"
    );
    assert!(ml.contains("kubeconfig-mode 600"), "{ml}");
    assert!(ml.contains("secrets-fs tmpfs"), "{ml}");
    assert!(
        ml.contains("(local-exec): (sensitive)") && !ml.contains("client-key-data"),
        "every line of the file is masked:\n{ml}"
    );
    let b64 = ml.lines().find(|l| l.contains("token-base64")).unwrap();
    assert!(
        b64.contains("(sensitive)"),
        "base64 of the token is masked: {b64}"
    );
    assert!(
        ml.contains("connection ml-creds (version 1): API_TOKEN, AWS_REGION, KUBECONFIG (file)"),
        "{ml}"
    );

    let (_, prod) = probe(&c, "prod/a").await;
    assert!(
        prod.contains("API_TOKEN=<unset>"),
        "prod/a gets nothing:\n{prod}"
    );
    assert!(!prod.contains("connection ml-creds"), "{prod}");

    let r = rotate_from_stdin(&c, "ml-creds", &format!("API_TOKEN={ROTATED}\n"));
    assert!(ok(&r).contains("version 2"));
    let (_, next) = probe(&c, "ml/b").await;
    assert!(
        next.contains(&format!("token-sha256 {}", sha256(ROTATED))),
        "{next}"
    );
    assert!(
        next.contains("kubeconfig-mode 600"),
        "the file was kept:\n{next}"
    );

    let audit = ok(&c.cli(&["audit", "list", "--kind", "connection_read", "-o", "json"]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let ws: Vec<&str> = entries
        .iter()
        .map(|e| e["workspace"].as_str().unwrap())
        .collect();
    assert_eq!(
        ws,
        ["ml/a", "ml/a", "ml/b", "ml/b"],
        "plan and apply of each ml run: {audit}"
    );
    assert_eq!(entries[0]["run_id"], ml_run.as_str());

    let (mut leaked, scans) = scan.stop();
    assert!(scans > 5, "the process scan ran ({scans} times)");
    for (what, log) in [
        ("ml/a log", &ml),
        ("prod/a log", &prod),
        ("ml/b log", &next),
    ] {
        leaked.extend(leaks(&CANARIES, what, log.as_bytes()));
    }
    for (table, bytes) in c.database_contents().await {
        leaked.extend(leaks(&CANARIES, &table, &bytes));
    }
    let msgs = tofuflow_e2e::Cluster::captured_messages(&ch, "conn-capture").await;
    assert!(msgs.len() >= 6, "the task messages were captured");
    for m in &msgs {
        leaked.extend(leaks(&CANARIES, "a RabbitMQ message", m));
    }
    for f in ["coordinator.log", "agent-0.log"] {
        leaked.extend(leaks(&CANARIES, f, &std::fs::read(c.dir.join(f)).unwrap()));
    }
    assert!(leaked.is_empty(), "leaked: {leaked:#?}");
    // No task's secrets tmpfs is left mounted. The idle agent holds one for its next task, in
    // the sandbox it built ahead: empty.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let dir = c.dir.to_str().unwrap();
    for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if !m.starts_with(dir) {
            continue;
        }
        assert!(
            m.contains("/work/warm-"),
            "no task's secrets tmpfs is left mounted: {m}"
        );
        let files: Vec<_> = std::fs::read_dir(m).unwrap().collect();
        assert!(
            files.is_empty(),
            "the next task's secrets are empty: {files:?}"
        );
    }

    ok(&c.cli(&["connection", "delete", "ml-creds"]));
    assert_eq!(c.row_count("connections").await, 0);
    assert_eq!(c.row_count("connection_versions").await, 0);
    let gone = c.cli(&["connection", "show", "ml-creds"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no connection"));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_on_sqlite() {
    scenario(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_on_postgres() {
    scenario(Db::Postgres).await;
}

/// A run's own environment (`run submit --env-file`, the API's `env`): its tasks get it, masked;
/// another run does not; it is in no message, log or table in clear, and it is erased from the
/// run when the run ends. Short secrets are refused, plain keys named.
#[tokio::test(flavor = "multi_thread")]
async fn a_runs_own_env_reaches_only_its_tasks_and_is_erased_when_it_ends() {
    let mut c = Cluster::builder(Db::Sqlite)
        .coordinator_args(&["--state-key", STATE_KEY])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    let ch = c.capture_task_messages("env-capture").await;
    let env = c.dir.join("run.env");
    std::fs::write(&env, format!("API_TOKEN={RUN_ENV}\nAWS_REGION=eu\n")).unwrap();
    let env = env.to_str().unwrap();
    let short = c.cli(&["run", "submit", ".", "-w", "env/a", "--env-file", env]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("mark it with --env-plain AWS_REGION"));

    let (id, log) = probe_with(
        &c,
        "env/a",
        &["--env-file", env, "--env-plain", "AWS_REGION"],
    )
    .await;
    assert!(log.contains("API_TOKEN=(sensitive)"), "{log}");
    assert!(log.contains("AWS_REGION=eu"), "{log}");
    assert!(
        log.contains(&format!("token-sha256 {}", sha256(RUN_ENV))),
        "{log}"
    );
    assert!(
        log.contains("connection run (version 0): API_TOKEN, AWS_REGION"),
        "{log}"
    );
    assert_eq!(
        c.rows_where("runs", "run_env <> ''").await,
        0,
        "erased when {id} ended"
    );
    let (_, other) = probe(&c, "env/b").await;
    assert!(
        other.contains("API_TOKEN=<unset>"),
        "another run gets nothing:\n{other}"
    );

    let mut leaked = Vec::new();
    for (what, text) in [("the run's log", &log), ("another run's log", &other)] {
        leaked.extend(leaks(&CANARIES, what, text.as_bytes()));
    }
    for (table, bytes) in c.database_contents().await {
        leaked.extend(leaks(&CANARIES, &table, &bytes));
    }
    for m in &tofuflow_e2e::Cluster::captured_messages(&ch, "env-capture").await {
        leaked.extend(leaks(&CANARIES, "a RabbitMQ message", m));
    }
    for f in ["coordinator.log", "agent-0.log"] {
        leaked.extend(leaks(&CANARIES, f, &std::fs::read(c.dir.join(f)).unwrap()));
    }
    assert!(leaked.is_empty(), "leaked: {leaked:#?}");
    let audit = ok(&c.cli(&["audit", "list", "--kind", "connection_read", "--run", &id]));
    assert_eq!(
        audit.matches("\"connection\":\"run\"").count(),
        2,
        "plan and apply: {audit}"
    );
}
