//! Sensitive values stay secret (reliability matrix S1, issue defects 2 and 3): a canary passed
//! as `--var`, in a `--var-file`, through `TF_VAR_*` and as `--sensitive-var` reaches tofu and
//! the module (which prints its environment and its variables files), yet appears in none of:
//! the run's log, `run show` (table and JSON), the database files, the RabbitMQ messages, the
//! coordinator's and agent's own logs, and the command line of any process on the host while the
//! run executes. The controls prove each place was really exercised.

use std::time::Duration;
use tofuflow_e2e::{bin_dir, AgentOpts, Cluster, CmdlineScan, Db};

const T: Duration = Duration::from_secs(90);
const CANARY_VAR: &str = "canary-var-7d1e9a3f5b";
const CANARY_FILE: &str = "canary-file-2c8b4e6a0d";
const CANARY_ENV: &str = "canary-env-9f3a1c7e5d";
const CANARY_MARKED: &str = "canary-marked-4b6d8f0a2c";
const CANARIES: [&str; 4] = [CANARY_VAR, CANARY_FILE, CANARY_ENV, CANARY_MARKED];

const MODULE: &str = r#"
variable "db_password" {
  type      = string
  sensitive = true
}
variable "api_key" {
  type      = string
  sensitive = true
}
variable "token" {
  type      = string
  sensitive = true
}
variable "note" {
  type = string
}
variable "region" {
  type = string
}

resource "terraform_data" "db" {
  input = {
    password = var.db_password
    region   = var.region
  }

  # The values reach the command through its environment: interpolated into `command` they
  # would be on the shell's command line, which is the module's doing, not tofuflow's.
  provisioner "local-exec" {
    command = "echo ENV-DUMP; env; echo FILES-DUMP; cat ../varfile-*; echo NOTE $NOTE; sleep 1"
    environment = {
      NOTE = var.note
    }
  }
}

output "password" {
  value     = var.db_password
  sensitive = true
}

output "region" {
  value = var.region
}
"#;

fn leaks(what: &str, bytes: &[u8]) -> Vec<String> {
    tofuflow_e2e::leaks(&CANARIES, what, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_canary_appears_nowhere_but_in_tofu() {
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--state-key", key]).await;
    c.agent(AgentOpts::default()).await;
    let ch = c.capture_task_messages("secrets-capture").await;
    let dir = c.dir.join("secret-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), MODULE).unwrap();
    let var_file = c.dir.join("secret.tfvars");
    std::fs::write(&var_file, format!("api_key = \"{CANARY_FILE}\"\n")).unwrap();

    let out = std::process::Command::new(bin_dir().join("tofuflow"))
        .args([
            "run",
            "submit",
            dir.to_str().unwrap(),
            "-w",
            "secret/ws",
            "--auto-approve",
        ])
        .args([
            "--var",
            &format!("db_password={CANARY_VAR}"),
            "--var",
            "region=eu-west-1",
        ])
        .arg("--var-file")
        .arg(&var_file)
        .args(["--sensitive-var", &format!("note={CANARY_MARKED}")])
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_USER", "tester")
        .env("TOFUFLOW_TOKEN", c.token.as_deref().unwrap())
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("cli-config.toml"))
        .env("TF_VAR_token", CANARY_ENV)
        .env("TF_VAR_not_declared_anywhere", "dropped, as OpenTofu does")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // While the run executes, every command line on this host is read over and over.
    let scan = CmdlineScan::start(&CANARIES);
    let r = c.wait_state(&id, &["applied"], T).await;
    let (mut leaked, scans) = scan.stop();
    assert!(scans > 5, "the process scan ran ({scans} times)");

    // The run's log: the module printed its environment and its variables files...
    let log = c.cli(&["run", "logs", &id]);
    let log_text = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(
        log_text.contains("ENV-DUMP") && log_text.contains("FILES-DUMP"),
        "{log_text}"
    );
    assert!(
        log_text.contains("TF_HTTP_PASSWORD=(sensitive)"),
        "the state password is masked where the module printed it:\n{log_text}"
    );
    assert!(log_text.contains("api_key = \"(sensitive)\""), "{log_text}");
    assert!(
        log_text.contains("-var-file="),
        "variables reach tofu as files:\n{log_text}"
    );
    leaked.extend(leaks("run logs", &log.stdout));
    leaked.extend(leaks(
        "run logs --raw",
        &c.cli(&["run", "logs", &id, "--raw"]).stdout,
    ));

    // The saved plan, as a diff and as JSON.
    let plan = c.cli(&["run", "plan", &id]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan_text.contains("(sensitive value)"), "{plan_text}");
    leaked.extend(leaks("run plan", &plan.stdout));
    leaked.extend(leaks(
        "run plan -o json",
        &c.cli(&["run", "plan", &id, "-o", "json"]).stdout,
    ));

    // run show, table and JSON.
    let table = c.cli(&["run", "show", &id]);
    let table_text = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table_text.contains("region      = eu-west-1"),
        "{table_text}"
    );
    assert!(
        table_text.contains("db_password = (sensitive)"),
        "{table_text}"
    );
    assert!(
        table_text.contains("password = (sensitive)"),
        "{table_text}"
    );
    leaked.extend(leaks("run show", &table.stdout));
    let json = c.cli(&["run", "show", &id, "-o", "json"]);
    leaked.extend(leaks("run show -o json", &json.stdout));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["variables"]["db_password"], "(sensitive)", "{v}");
    assert_eq!(
        v["variables"]["note"], "(sensitive)",
        "--sensitive-var marks it"
    );
    assert_eq!(
        v["variables"]["region"], "eu-west-1",
        "other values are shown"
    );
    assert!(
        v["variables"].get("not_declared_anywhere").is_none(),
        "undeclared TF_VAR_ dropped"
    );
    assert_eq!(v["outputs"]["password"]["value"], "(sensitive)", "{v}");
    assert_eq!(v["outputs"]["region"]["value"], "eu-west-1", "{v}");

    // Control: the values did reach tofu (an operator may see them, and that is recorded).
    let shown = c.cli(&["run", "show", &id, "-o", "json", "--show-sensitive"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["outputs"]["password"]["value"], CANARY_VAR);
    assert_eq!(
        v["variables"]["token"], CANARY_ENV,
        "TF_VAR_ reached the run"
    );
    assert!(c
        .run(&id)
        .await
        .transitions
        .iter()
        .any(|t| t.actor == "tester" && t.reason.contains("sensitive values shown")));
    assert_eq!(r.state, "applied");

    // The database files (with --state-key: state, variables, outputs, logs, plans encrypted).
    for f in ["coordinator.db", "coordinator.db-wal", "coordinator.db-shm"] {
        if let Ok(bytes) = std::fs::read(c.dir.join(f)) {
            leaked.extend(leaks(f, &bytes));
        }
    }
    // The task messages that went through RabbitMQ.
    let msgs = Cluster::captured_messages(&ch, "secrets-capture").await;
    assert!(msgs.len() >= 2, "plan and apply messages were captured");
    for m in &msgs {
        leaked.extend(leaks("a RabbitMQ message", m));
    }
    // The coordinator's and the agent's own logs.
    for f in ["coordinator.log", "agent-0.log"] {
        leaked.extend(leaks(f, &std::fs::read(c.dir.join(f)).unwrap()));
    }
    assert!(leaked.is_empty(), "leaked: {leaked:#?}");
}
