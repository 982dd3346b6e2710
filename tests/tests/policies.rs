//! Plan policies in Rego end to end: the shipped examples (auto-approve a safe plan, deny
//! destroying a protected resource, ask for a human above 10 changes) attached with `policy
//! add` decide what a finished plan leads to, each verdict with its reasons in `run show`, the
//! run's JSON and the audit log; a four-eyes rule wins over a policy's auto-approve; a policy
//! that loops is stopped by `--policy-timeout` and fails its run; a policy that does not
//! compile is refused at `policy add`. `policy test` on the shipped examples gives the
//! documented verdicts. Real coordinator, agent, RabbitMQ, both databases, the stand-in tofu.

use std::path::PathBuf;
use std::time::Duration;
use tofuflow_e2e::{bin_dir, example, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(120);

/// A module of `n` terraform_data resources, one of them marked protected when `protected`.
fn module(c: &Cluster, name: &str, n: usize, protected: bool) -> PathBuf {
    let dir = c.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut tf = format!(
        "resource \"terraform_data\" \"node\" {{\n  count = {n}\n  input = {{ name = \"node-${{count.index}}\" }}\n}}\n"
    );
    if protected {
        tf.push_str("resource \"terraform_data\" \"db\" {\n  input = { protected = true, name = \"db\" }\n}\n");
    }
    std::fs::write(dir.join("main.tf"), tf).unwrap();
    dir
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn add(c: &Cluster, name: &str, glob: &str, file: &std::path::Path) -> String {
    ok(c.cli(&[
        "policy",
        "add",
        name,
        "--workspace",
        glob,
        "--file",
        file.to_str().unwrap(),
    ]))
}

/// Attaches the shipped examples, and a looping policy to `loop/*`.
fn attach_policies(c: &Cluster) {
    let ex = example("policies");
    let out = add(
        c,
        "auto-approve-safe",
        "dev/*",
        &ex.join("auto_approve_safe.rego"),
    );
    assert!(
        out.contains("policy auto-approve-safe v1 (data.main)"),
        "{out}"
    );
    add(c, "deny-protected", "**", &ex.join("deny_protected.rego"));
    add(
        c,
        "approval-above-10",
        "**",
        &ex.join("approval_above_n.rego"),
    );
    let looping = c.dir.join("loop.rego");
    std::fs::write(
        &looping,
        "package main\nimport rego.v1\ndeny contains \"never\" if {\n  some i in numbers.range(1, 100000)\n  some j in numbers.range(1, 100000)\n  i * j < 0\n}\n",
    )
    .unwrap();
    add(c, "looping", "loop/*", &looping);
    let listed = ok(c.cli(&["policy", "list", "--workspace", "dev/app"]));
    assert!(
        listed.contains("auto-approve-safe") && !listed.contains("looping"),
        "{listed}"
    );
    let shown = ok(c.cli(&["policy", "show", "deny-protected"]));
    assert!(shown.contains("deny contains msg if"), "{shown}");
}

/// A policy that does not compile is refused, naming the problem.
fn broken_policy_is_refused(c: &Cluster) {
    let bad = c.dir.join("bad.rego");
    std::fs::write(&bad, "package main\ndeny contains msg if {\n").unwrap();
    let out = c.cli(&[
        "policy",
        "add",
        "bad",
        "--workspace",
        "**",
        "--file",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy bad does not compile"), "{err}");
}

/// `run show` (which exits 2 for a failed run).
async fn show(c: &Cluster, id: &str) -> String {
    String::from_utf8_lossy(&c.cli(&["run", "show", id]).stdout).to_string()
}

/// The JSON API: policies listed and shown as the CLI does, a bad one refused with 400 and
/// the reason, a run's verdicts in its JSON.
fn json_api_shows_policies_and_verdicts(c: &Cluster, denied_run: &str) {
    let t = c.token.as_deref();
    let list = c.api("GET", "/api/v1/policies?workspace=dev%2Fapp", t, None, &[]);
    assert_eq!(list.status, 200);
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["approval-above-10", "auto-approve-safe", "deny-protected"]
    );
    let one = c.api("GET", "/api/v1/policies/deny-protected", t, None, &[]);
    assert_eq!(
        (one.status, one.json()["package"].as_str()),
        (200, Some("data.main"))
    );
    let bad = br#"{"name": "bad", "workspaces": "**", "source": "package main\ndeny contains"}"#;
    let refused = c.api(
        "POST",
        "/api/v1/policies",
        t,
        Some(("application/json", bad)),
        &[],
    );
    assert_eq!(
        refused.status,
        400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(String::from_utf8_lossy(&refused.body).contains("policy bad does not compile"));
    let run = c
        .api("GET", &format!("/api/v1/runs/{denied_run}"), t, None, &[])
        .json();
    assert_eq!(run["state"], "failed");
    let v = run["policy_verdicts"].as_array().unwrap();
    assert!(
        v.iter().any(|v| v["outcome"] == "deny"
            && v["deny"][0].as_str().unwrap().contains("tagged protected")),
        "{run}"
    );
}

async fn policies_decide_what_a_plan_leads_to(db: Db) {
    let mut c = Cluster::start_with(db, &["default"], &["--policy-timeout", "300ms"]).await;
    c.agent(AgentOpts::default()).await;
    attach_policies(&c);
    broken_policy_is_refused(&c);

    // Safe (3 creates of an allowed type): approved by the policy without --auto-approve.
    let id = c.submit(&module(&c, "small", 3, false), "dev/app", &[]);
    let run = c
        .wait_state(&id, &["applied", "awaiting_approval", "failed"], T)
        .await;
    assert_eq!(run.state, "applied", "{}", show(&c, &id).await);
    let shown = show(&c, &id).await;
    assert!(
        shown.contains("auto-approve-safe") && shown.contains("auto_approve"),
        "{shown}"
    );
    assert!(
        shown.contains("auto-approved by plan policy auto-approve-safe"),
        "{shown}"
    );
    // The same module again: no changes, nothing to evaluate.
    let id = c.submit(&module(&c, "small", 3, false), "dev/app", &[]);
    let run = c
        .wait_state(&id, &["planned_no_changes", "failed"], T)
        .await;
    assert_eq!(run.state, "planned_no_changes");
    assert!(run.policy_verdicts.is_empty(), "{:?}", run.policy_verdicts);

    // 12 changes: a warning overrides even --auto-approve and the auto-approve policy.
    let id = c.submit(
        &module(&c, "large", 12, false),
        "dev/big",
        &["--auto-approve"],
    );
    let run = c
        .wait_state(&id, &["applied", "awaiting_approval", "failed"], T)
        .await;
    assert_eq!(run.state, "awaiting_approval");
    let shown = show(&c, &id).await;
    assert!(
        shown.contains("warn: the plan changes 12 resources (more than 10)"),
        "{shown}"
    );
    assert_eq!(run.policy_verdicts.len(), 3, "{:?}", run.policy_verdicts);

    // Destroying a protected resource: denied, the run fails with the reason.
    let id = c.submit(&module(&c, "prot", 1, true), "prod/db", &["--auto-approve"]);
    assert_eq!(
        c.wait_state(&id, &["applied", "failed"], T).await.state,
        "applied"
    );
    let id = c.submit(
        &module(&c, "unprot", 1, false),
        "prod/db",
        &["--auto-approve"],
    );
    let run = c
        .wait_state(&id, &["applied", "failed", "awaiting_approval"], T)
        .await;
    assert_eq!(run.state, "failed");
    assert!(
        run.error.contains(
            "denied by plan policy: policy deny-protected: terraform_data.db is tagged protected"
        ),
        "{}",
        run.error
    );
    let shown = show(&c, &id).await;
    assert!(
        shown.contains("deny: terraform_data.db is tagged protected"),
        "{shown}"
    );
    let json = c.cli(&["-o", "json", "run", "show", &id]).stdout;
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let verdicts = json["policy_verdicts"].as_array().unwrap();
    assert!(
        verdicts
            .iter()
            .any(|v| v["policy"] == "deny-protected" && v["outcome"] == "deny"),
        "{json}"
    );
    let audit = ok(c.cli(&["audit", "list", "--run", &id, "--kind", "policy_evaluated"]));
    assert!(audit.contains("deny-protected"), "{audit}");
    json_api_shows_policies_and_verdicts(&c, &id);

    // A four-eyes rule wins over the policy's auto-approve.
    ok(c.cli(&["rule", "set", "dev/guarded", "--four-eyes"]));
    let id = c.submit(&module(&c, "guarded", 2, false), "dev/guarded", &[]);
    let run = c
        .wait_state(&id, &["applied", "awaiting_approval", "failed"], T)
        .await;
    assert_eq!(run.state, "awaiting_approval");

    // A looping policy is stopped by its time limit: the run fails, saying so.
    let id = c.submit(&module(&c, "loop", 1, false), "loop/x", &["--auto-approve"]);
    let run = c
        .wait_state(&id, &["applied", "failed", "awaiting_approval"], T)
        .await;
    assert_eq!(run.state, "failed");
    assert!(
        run.error
            .contains("policy looping exceeded its time limit of 300 ms"),
        "{}",
        run.error
    );
    assert!(show(&c, &id)
        .await
        .contains("error: exceeded its time limit"));
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_auto_approve_warn_deny_and_time_out_sqlite() {
    policies_decide_what_a_plan_leads_to(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_auto_approve_warn_deny_and_time_out_postgres() {
    policies_decide_what_a_plan_leads_to(Db::Postgres).await;
}

/// `policy test` on the shipped examples and plans (made with terraform) gives the verdicts
/// the README documents, with exit 1 only on a deny.
#[test]
fn policy_test_gives_the_documented_verdicts_on_the_shipped_examples() {
    let ex = example("policies");
    let all = [
        "auto_approve_safe.rego",
        "deny_protected.rego",
        "approval_above_n.rego",
    ];
    let cases = [
        ("small", 0, "verdict: auto_approve"),
        ("large", 0, "verdict: warn"),
        ("protected", 1, "verdict: deny"),
        ("destroy", 0, "verdict: pass"),
    ];
    for (plan, code, verdict) in cases {
        let mut cmd = std::process::Command::new(bin_dir().join("tofuflow"));
        cmd.current_dir(&ex).args(["policy", "test"]).args(all);
        cmd.args(["--plan", &format!("plans/{plan}.json")]);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{plan}: {text}");
        assert!(text.contains(verdict), "{plan}: {text}");
    }
    // A directory stands for its .rego files.
    let out = std::process::Command::new(bin_dir().join("tofuflow"))
        .current_dir(&ex)
        .args(["policy", "test", ".", "--plan", "plans/large.json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("./approval_above_n.rego: warn") && text.contains("verdict: warn"),
        "{text}"
    );
    let out = std::process::Command::new(bin_dir().join("tofuflow"))
        .current_dir(&ex)
        .args([
            "-o",
            "json",
            "policy",
            "test",
            "deny_protected.rego",
            "--plan",
            "plans/protected.json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    let deny = v["policies"][0]["deny"][0].as_str().unwrap();
    assert!(
        deny.starts_with("terraform_data.db is tagged protected"),
        "{v}"
    );
}
