//! The stand-in checked against `shared/reference/opentofu-contract.md`, field by field: commands,
//! the `-json` UI stream, `show -json`, state v4, exit codes, the `http` backend's request
//! sequences, signals and the fault hooks.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_tofu-double");

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tofu-double-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn module(files: &[(&str, &str)]) -> PathBuf {
    let d = tmp();
    for (n, s) in files {
        std::fs::write(d.join(n), s).unwrap();
    }
    d
}

fn gpu_pool() -> PathBuf {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gpu-pool/main.tf"),
    )
    .unwrap();
    module(&[("main.tf", &src)])
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

fn tofu(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let o = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TF_CLI_ARGS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn check_ui_line(l: &Value) {
    for k in ["@level", "@message", "@module", "@timestamp", "type"] {
        assert!(l.get(k).is_some(), "UI line lacks {k}: {l}");
    }
    assert_eq!(l["@module"], "tofu.ui");
    let ts = l["@timestamp"].as_str().unwrap();
    assert_eq!(
        ts.len(),
        "2024-01-01T00:00:00.000000Z".len(),
        "RFC 3339 with microseconds: {ts}"
    );
}

#[test]
fn version_json_has_opentofus_shape() {
    let o = tofu(&tmp(), &["version", "-json"], &[]);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.starts_with("{\n  \""),
        "pretty-printed with two spaces"
    );
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        keys(&v),
        ["platform", "provider_selections", "terraform_version"]
    );
    assert_eq!(v["provider_selections"], json!({}));
    assert!(v.get("terraform_outdated").is_none());
}

#[test]
fn plan_apply_show_output_and_state_have_the_contract_shapes() {
    let d = gpu_pool();
    let init = tofu(
        &d,
        &["init", "-input=false", "-no-color"],
        &[("TF_IN_AUTOMATION", "1")],
    );
    assert_eq!(init.code, 0, "{}", init.stderr);
    assert!(init
        .stdout
        .contains("OpenTofu has been successfully initialized!"));

    let plan = tofu(
        &d,
        &[
            "plan",
            "-input=false",
            "-no-color",
            "-json",
            "-detailed-exitcode",
            "-out=tfplan",
            "-var=gpu_count=2",
        ],
        &[],
    );
    assert_eq!(
        plan.code, 2,
        "changes: exit 2 with -detailed-exitcode\n{}",
        plan.stderr
    );
    let lines = plan.lines();
    lines.iter().for_each(check_ui_line);
    assert_eq!(lines[0]["type"], "version");
    assert_eq!(lines[0]["tofu"], "1.9.0", "the version key is `tofu`");
    assert_eq!(lines[0]["ui"], "1.2");
    assert!(lines[0].get("terraform").is_none());
    let pc: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "planned_change")
        .collect();
    assert_eq!(pc.len(), 3);
    assert_eq!(pc[1]["@message"], "terraform_data.node[0]: Plan to create");
    assert_eq!(
        keys(&pc[1]["change"]["resource"]),
        [
            "addr",
            "implied_provider",
            "module",
            "resource",
            "resource_key",
            "resource_name",
            "resource_type"
        ]
    );
    assert_eq!(pc[1]["change"]["resource"]["resource_key"], 0);
    assert_eq!(pc[1]["change"]["action"], "create");
    let cs = lines
        .iter()
        .find(|l| l["type"] == "change_summary")
        .unwrap();
    assert_eq!(cs["@message"], "Plan: 3 to add, 0 to change, 0 to destroy.");
    assert_eq!(
        cs["changes"],
        json!({"add": 3, "change": 0, "import": 0, "remove": 0, "forget": 0, "operation": "plan"})
    );
    let outs = lines.iter().find(|l| l["type"] == "outputs").unwrap();
    assert_eq!(
        outs["outputs"]["pool_name"],
        json!({"sensitive": false, "action": "create"})
    );

    let show = tofu(&d, &["show", "-json", "tfplan"], &[]);
    assert_eq!(show.code, 0);
    let p: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(p["format_version"], "1.2");
    assert_eq!(p["errored"], false);
    // Terraform writes `applyable` and `complete` (OpenTofu leaves them out; readers ignore
    // unknown keys); with no state yet, `prior_state` holds the outputs already known.
    assert_eq!(
        (&p["applyable"], &p["complete"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(
        p["prior_state"]["values"],
        json!({"outputs": {"gpu_total": {"sensitive": false, "type": "number", "value": 2}}, "root_module": {}})
    );
    assert_eq!(
        p["relevant_attributes"],
        json!([{"resource": "terraform_data.node", "attribute": []},
               {"resource": "terraform_data.pool", "attribute": ["output", "name"]}])
    );
    assert_eq!(
        p["checks"],
        json!([{"address": {"kind": "var", "name": "gpu_type", "to_display": "var.gpu_type"}, "status": "pass",
                "instances": [{"address": {"to_display": "var.gpu_type"}, "status": "pass"}]}])
    );
    assert_eq!(p["variables"]["gpu_count"]["value"], 2);
    // Sorted by address, as jsonplan writes them: node[0], node[1], pool.
    let rc = &p["resource_changes"][2];
    assert_eq!(
        keys(rc),
        ["address", "change", "mode", "name", "provider_name", "type"]
    );
    assert_eq!(rc["provider_name"], "terraform.io/builtin/terraform");
    assert_eq!(
        keys(&rc["change"]),
        [
            "actions",
            "after",
            "after_sensitive",
            "after_unknown",
            "before",
            "before_sensitive"
        ]
    );
    assert_eq!(rc["change"]["actions"], json!(["create"]));
    assert_eq!(rc["change"]["before"], Value::Null);
    assert_eq!(
        rc["change"]["after_unknown"]["id"], true,
        "ids are known after apply"
    );
    assert_eq!(rc["change"]["after"]["input"]["name"], "gpu-a100-eu-west-1");
    assert_eq!(p["resource_changes"][0]["index"], 0);
    // Unknowns propagate and are left out of `after`, as in real OpenTofu/Terraform output.
    let node = &p["resource_changes"][0]["change"];
    assert_eq!(
        node["after_unknown"],
        json!({"id": true, "input": {"pool": true}, "output": true})
    );
    assert_eq!(
        node["after"],
        json!({"input": {"gpu": "a100", "index": 0}, "triggers_replace": null})
    );
    assert_eq!(node["after_sensitive"], json!({"input": {}, "output": {}}));
    assert_eq!(p["output_changes"]["pool_name"]["after_unknown"], true);
    assert!(p["timestamp"].as_str().unwrap().ends_with('Z'));

    let apply = tofu(
        &d,
        &["apply", "-input=false", "-no-color", "-json", "tfplan"],
        &[],
    );
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let lines = apply.lines();
    lines.iter().for_each(check_ui_line);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "version");
    assert!(
        !types.contains(&"change_summary")
            || lines
                .iter()
                .filter(|l| l["type"] == "change_summary")
                .count()
                == 1,
        "apply PLANFILE has no plan summary"
    );
    let start = lines.iter().find(|l| l["type"] == "apply_start").unwrap();
    assert_eq!(start["@message"], "terraform_data.pool: Creating...");
    assert_eq!(start["hook"]["action"], "create");
    let done = lines
        .iter()
        .find(|l| l["type"] == "apply_complete")
        .unwrap();
    assert_eq!(
        keys(&done["hook"]),
        [
            "action",
            "elapsed_seconds",
            "id_key",
            "id_value",
            "resource"
        ]
    );
    assert!(lines.iter().any(|l| l["type"] == "provision_progress"
        && l["hook"]["output"] == "node 1 of gpu-a100-eu-west-1 ready"));
    let cs = lines
        .iter()
        .find(|l| l["type"] == "change_summary")
        .unwrap();
    assert_eq!(
        cs["@message"],
        "Apply complete! Resources: 3 added, 0 changed, 0 destroyed."
    );
    assert_eq!(cs["changes"]["operation"], "apply");
    let o = lines.iter().find(|l| l["type"] == "outputs").unwrap();
    assert_eq!(
        o["outputs"]["gpu_total"],
        json!({"sensitive": false, "type": "number", "value": 2})
    );

    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(st["version"], 4);
    // A local state file is written after each of the three changes and once more at the end.
    assert_eq!(st["serial"], 4);
    assert_eq!(st["lineage"].as_str().unwrap().len(), 36);
    assert_eq!(st["terraform_version"], "1.9.0");
    let r = &st["resources"][1];
    assert_eq!(
        r["provider"],
        "provider[\"terraform.io/builtin/terraform\"]"
    );
    assert_eq!(r["each"], "list");
    assert_eq!(r["instances"][1]["index_key"], 1);
    assert_eq!(
        r["instances"][1]["attributes"]["input"]["type"][0], "object",
        "dynamic values carry their type in state"
    );
    assert_eq!(
        r["instances"][1]["dependencies"],
        json!(["terraform_data.pool"])
    );
    assert_eq!(st["outputs"]["node_ids"]["type"][0], "tuple");

    let out = tofu(&d, &["output", "-json"], &[]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(keys(&v["pool_name"]), ["sensitive", "type", "value"]);
    assert_eq!(
        tofu(&d, &["output", "-raw", "pool_name"], &[]).stdout,
        "gpu-a100-eu-west-1"
    );
    assert_eq!(
        tofu(&d, &["output", "-json", "gpu_total"], &[])
            .stdout
            .trim(),
        "2"
    );
    let missing = tofu(&d, &["output", "nope"], &[]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("Output \"nope\" not found"));

    let again = tofu(
        &d,
        &["plan", "-detailed-exitcode", "-var=gpu_count=2", "-json"],
        &[],
    );
    assert_eq!(again.code, 0, "no changes: exit 0");
    let cs = again
        .lines()
        .into_iter()
        .find(|l| l["type"] == "change_summary")
        .unwrap();
    assert_eq!(cs["@message"], "Plan: 0 to add, 0 to change, 0 to destroy.");

    // show -json of the state
    let s: Value = serde_json::from_str(&tofu(&d, &["show", "-json"], &[]).stdout).unwrap();
    assert_eq!(s["format_version"], "1.0");
    assert_eq!(
        s["values"]["root_module"]["resources"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn saved_plans_refuse_a_moved_state_and_destroy_runs_destroy_provisioners() {
    let d = gpu_pool();
    assert_eq!(
        tofu(&d, &["plan", "-out=old", "-var=gpu_count=1"], &[]).code,
        0
    );
    assert_eq!(
        tofu(&d, &["apply", "-auto-approve", "-var=gpu_count=2"], &[]).code,
        0
    );
    let stale = tofu(&d, &["apply", "old"], &[]);
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains("Saved plan is stale"),
        "{}",
        stale.stderr
    );
    let destroy = tofu(&d, &["destroy", "-auto-approve", "-json"], &[]);
    assert_eq!(destroy.code, 0, "{}", destroy.stderr);
    let lines = destroy.lines();
    assert!(lines
        .iter()
        .any(|l| l["hook"]["output"] == "draining node 1 of gpu-a100-eu-west-1"));
    let cs = lines
        .iter()
        .rfind(|l| l["type"] == "change_summary")
        .unwrap();
    assert_eq!(cs["@message"], "Destroy complete! Resources: 3 destroyed.");
    assert_eq!(cs["changes"]["operation"], "destroy");
    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(st["resources"], json!([]));
    assert_eq!(
        st["serial"], 8,
        "4 after the apply, then 3 deletions and the final write"
    );
    assert!(d.join("terraform.tfstate.backup").is_file());
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn variables_follow_opentofus_precedence_and_cli_args_env() {
    let d = module(&[
        (
            "main.tf",
            "variable \"n\" {\n  type = number\n}\n\noutput \"n\" {\n  value = var.n\n}\n",
        ),
        ("terraform.tfvars", "n = 2\n"),
        ("b.auto.tfvars", "n = 3\n"),
    ]);
    let n = |env: &[(&str, &str)], args: &[&str]| -> Value {
        let mut a = vec!["apply", "-auto-approve", "-json"];
        a.extend_from_slice(args);
        let o = tofu(&d, &a, env);
        assert_eq!(o.code, 0, "{}", o.stderr);
        o.lines()
            .into_iter()
            .rfind(|l| l["type"] == "outputs")
            .map(|l| l["outputs"]["n"]["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        n(&[("TF_VAR_n", "1")], &[]),
        3,
        "*.auto.tfvars beats terraform.tfvars beats TF_VAR_"
    );
    assert_eq!(n(&[("TF_VAR_n", "1")], &["-var=n=4"]), 4);
    assert_eq!(
        n(&[("TF_CLI_ARGS_apply", "-var=n=5")], &[]),
        5,
        "TF_CLI_ARGS_<cmd> is inserted after the subcommand"
    );
    assert_eq!(
        n(&[("TF_CLI_ARGS", "-var=n=6")], &["-var=n=7"]),
        7,
        "explicit flags come later and win"
    );
    let bad = tofu(&d, &["plan", "-var=n=four"], &[]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("Invalid value for input variable"));
    let undeclared = tofu(&d, &["plan", "-var=m=1"], &[]);
    assert!(undeclared.stderr.contains("Value for undeclared variable"));
    let d2 = module(&[("main.tf", "variable \"x\" {}\n")]);
    let missing = tofu(&d2, &["plan", "-input=false"], &[]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("No value for required variable"));
    let ok = tofu(&d, &["-chdir=.", "plan", "-json"], &[("TF_LOG", "info")]);
    assert_eq!(ok.code, 0);
    assert!(
        ok.stderr.contains("[INFO] CLI args:"),
        "TF_LOG writes to stderr: {}",
        ok.stderr
    );
    let log = d.join("tofu.log");
    let quiet = tofu(
        &d,
        &["plan"],
        &[("TF_LOG", "debug"), ("TF_LOG_PATH", log.to_str().unwrap())],
    );
    assert!(
        !quiet.stderr.contains("[INFO]")
            && std::fs::read_to_string(&log)
                .unwrap()
                .contains("OpenTofu version")
    );
    assert!(
        !tofu(&d, &["plan"], &[("TF_LOG_PATH", log.to_str().unwrap())])
            .stderr
            .contains("[INFO]"),
        "TF_LOG_PATH alone does nothing"
    );
    let auto = tofu(&d, &["apply", "-json"], &[]);
    assert!(
        auto.stdout.contains("Plan file or auto-approve required"),
        "{}",
        auto.stdout
    );
}

#[test]
fn validate_and_fmt_exit_codes() {
    let good = gpu_pool();
    let v: Value = serde_json::from_str(&tofu(&good, &["validate", "-json"], &[]).stdout).unwrap();
    assert_eq!(
        v,
        json!({"format_version": "1.0", "valid": true, "error_count": 0, "warning_count": 0, "diagnostics": []})
    );
    assert_eq!(
        tofu(&good, &["fmt", "-check"], &[]).code,
        0,
        "the examples are canonically formatted"
    );
    let bad = module(&[(
        "main.tf",
        "resource \"aws_instance\" \"x\" {\nami = \"a\"\n}\n",
    )]);
    let o = tofu(&bad, &["validate", "-json"], &[]);
    assert_eq!(o.code, 1);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error_count"], 1);
    assert_eq!(v["diagnostics"][0]["severity"], "error");
    assert!(v["diagnostics"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("aws_instance"));
    let f = tofu(&bad, &["fmt", "-check"], &[]);
    assert_eq!(f.code, 3, "unformatted: exit 3");
    assert_eq!(f.stdout.trim(), "main.tf");
    let broken = module(&[("main.tf", "resource {\n")]);
    assert_eq!(
        tofu(&broken, &["fmt", "-check"], &[]).code,
        2,
        "parse error: exit 2"
    );
}

#[test]
fn fault_hooks_fail_and_crash() {
    let d = module(&[("main.tf", "resource \"terraform_data\" \"a\" {\n  input = 1\n}\n\nresource \"terraform_data\" \"b\" {\n  input = terraform_data.a.output\n}\n")]);
    let crash = tofu(
        &d,
        &["apply", "-auto-approve"],
        &[("TOFU_DOUBLE_CRASH_AT", "terraform_data.b")],
    );
    assert_eq!(crash.code, 11, "a crash exits 11");
    assert!(crash.stderr.contains("panic:"));
    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(
        st["resources"].as_array().unwrap().len(),
        1,
        "a crash loses the change in progress; a local state file holds what completed before"
    );
    std::fs::remove_file(d.join("terraform.tfstate")).unwrap();
    let fail = tofu(
        &d,
        &["apply", "-auto-approve", "-json"],
        &[("TOFU_DOUBLE_FAIL_AT", "terraform_data.b")],
    );
    assert_eq!(fail.code, 1);
    let lines = fail.lines();
    assert!(lines.iter().any(
        |l| l["type"] == "apply_errored" && l["hook"]["resource"]["addr"] == "terraform_data.b"
    ));
    assert!(lines
        .iter()
        .any(|l| l["type"] == "diagnostic" && l["@level"] == "error"));
    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(
        st["resources"].as_array().unwrap().len(),
        1,
        "what was done before the failure is saved"
    );
}

#[test]
fn sigint_stops_after_the_resource_in_progress_saves_state_and_exits_1() {
    let d = module(&[("main.tf", "resource \"terraform_data\" \"a\" {\n  input = 1\n}\n\nresource \"terraform_data\" \"b\" {\n  input = terraform_data.a.output\n\n  provisioner \"local-exec\" {\n    command = \"echo sleeping; sleep 321\"\n  }\n}\n")]);
    let mut child = Command::new(BIN)
        .args(["apply", "-auto-approve", "-json"])
        .current_dir(&d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut l = String::new();
        assert!(
            out.read_line(&mut l).unwrap() > 0,
            "apply ended early: {seen}"
        );
        seen.push_str(&l);
        if l.contains("(local-exec): sleeping") {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(rest.contains("Interrupt received"), "{rest}");
    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(
        st["resources"][0]["name"], "a",
        "state is saved on interrupt"
    );
    assert!(
        !d.join(".terraform.tfstate.lock.info").exists(),
        "the lock is released"
    );
}

/// A recorded request: method, path with query, Authorization, Content-MD5.
type Request = (String, String, String, String);

/// A recording `http` backend (the reference server's rules: 409 + holder on a held lock).
struct Server {
    addr: String,
    log: Arc<Mutex<Vec<Request>>>,
    state: Arc<Mutex<Option<Vec<u8>>>>,
    lock: Arc<Mutex<Option<String>>>,
}

fn server() -> Server {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let state: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let lock: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (lg, st, lk) = (log.clone(), state.clone(), lock.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let (mut len, mut auth, mut md5) = (0usize, String::new(), String::new());
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end().to_string();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "authorization" => auth = v.trim().to_string(),
                    "content-md5" => md5 = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            lg.lock()
                .unwrap()
                .push((method.clone(), path.clone(), auth, md5));
            let (code, resp): (u16, Vec<u8>) = match method.as_str() {
                "GET" => match st.lock().unwrap().clone() {
                    Some(b) => (200, b),
                    None => (204, vec![]),
                },
                "POST" => {
                    *st.lock().unwrap() = Some(body);
                    (200, vec![])
                }
                "LOCK" => {
                    let mut held = lk.lock().unwrap();
                    match held.clone() {
                        Some(h) => (409, h.into_bytes()),
                        None => {
                            *held = Some(String::from_utf8(body).unwrap());
                            (200, vec![])
                        }
                    }
                }
                "UNLOCK" => {
                    *lk.lock().unwrap() = None;
                    (200, vec![])
                }
                _ => (405, vec![]),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                resp.len()
            );
            let _ = s.write_all(&resp);
        }
    });
    Server {
        addr,
        log,
        state,
        lock,
    }
}

#[test]
fn http_backend_speaks_opentofus_request_sequences() {
    let srv = server();
    let d = module(&[("main.tf", "terraform {\n  backend \"http\" {}\n}\n\nresource \"terraform_data\" \"x\" {\n  input = \"v\"\n}\n")]);
    let url = format!("http://{}/state/ws", srv.addr);
    let env = [
        ("TF_HTTP_USERNAME", "task-1"),
        ("TF_HTTP_PASSWORD", "secret"),
    ];
    let a1 = format!("-backend-config=address={url}");
    let a2 = format!("-backend-config=lock_address={url}");
    let a3 = format!("-backend-config=unlock_address={url}");
    let plan_needs_init = tofu(&d, &["plan"], &env);
    assert_eq!(plan_needs_init.code, 1);
    assert!(plan_needs_init
        .stderr
        .contains("Backend initialization required"));
    assert_eq!(
        tofu(&d, &["init", "-input=false", &a1, &a2, &a3], &env).code,
        0
    );
    assert!(
        !std::fs::read_to_string(d.join(".terraform/terraform.tfstate"))
            .unwrap()
            .contains("secret"),
        "credentials from the environment are not saved"
    );
    let methods = |from: usize| -> Vec<String> {
        srv.log.lock().unwrap()[from..]
            .iter()
            .map(|(m, p, _, _)| {
                if p.contains("?ID=") {
                    format!("{m}?ID")
                } else {
                    m.clone()
                }
            })
            .collect()
    };
    assert_eq!(methods(0), ["GET"], "init reads the state once");
    let n = srv.log.lock().unwrap().len();
    assert_eq!(tofu(&d, &["plan", "-out=p"], &env).code, 0);
    assert_eq!(
        methods(n),
        ["LOCK", "GET", "UNLOCK"],
        "plan: LOCK GET UNLOCK"
    );
    let n = srv.log.lock().unwrap().len();
    let apply = tofu(&d, &["apply", "p"], &env);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    assert_eq!(
        methods(n),
        ["LOCK", "GET", "GET", "POST?ID", "UNLOCK"],
        "apply: LOCK GET (GET before the first write) POST?ID= UNLOCK"
    );
    let log = srv.log.lock().unwrap().clone();
    let post = log.iter().find(|(m, _, _, _)| m == "POST").unwrap();
    assert_eq!(
        post.2, "Basic dGFzay0xOnNlY3JldA==",
        "Basic auth on every request"
    );
    let body = srv.state.lock().unwrap().clone().unwrap();
    use base64::Engine;
    use md5::Digest;
    assert_eq!(
        post.3,
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body)),
        "Content-MD5 of the body"
    );
    let st: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st["serial"], 1);

    // Someone else holds the lock: the plan fails with the holder's lock info.
    *srv.lock.lock().unwrap() = Some(json!({"ID": "held-by-bob", "Operation": "OperationTypeApply", "Info": "", "Who": "bob@host", "Version": "1.9.0", "Created": "2024-01-01T00:00:00Z", "Path": ""}).to_string());
    let locked = tofu(&d, &["plan"], &env);
    assert_eq!(locked.code, 1);
    assert!(
        locked.stderr.contains("Error acquiring the state lock")
            && locked.stderr.contains("held-by-bob")
            && locked.stderr.contains("bob@host"),
        "{}",
        locked.stderr
    );
    let n = srv.log.lock().unwrap().len();
    assert_eq!(
        tofu(&d, &["force-unlock", "-force", "held-by-bob"], &env).code,
        0
    );
    assert_eq!(methods(n), ["UNLOCK"]);
    // OpenTofu 1.9's force-unlock sends no body; 1.10+ sends the ID.
    assert_eq!(
        tofu(
            &d,
            &["force-unlock", "-force", "x"],
            &[env[0], env[1], ("TOFU_DOUBLE_FORCE_UNLOCK_STYLE", "1.9")]
        )
        .code,
        0
    );
    let pull = tofu(&d, &["state", "pull"], &env);
    assert_eq!(
        serde_json::from_str::<Value>(&pull.stdout).unwrap()["serial"],
        1
    );
    let _ = srv.addr.len();
}

/// Over a remote backend the state is written as a long apply goes: after a change, once the
/// persist interval has passed (`TOFU_DOUBLE_PERSIST_INTERVAL` shortens the 20 s of
/// `TF_STATE_PERSIST_INTERVAL` for this test), and at the end.
#[test]
fn a_long_apply_writes_remote_state_every_persist_interval() {
    let src = "terraform {\n  backend \"http\" {}\n}\n\nresource \"terraform_data\" \"a\" {\n  input = 1\n}\n\nresource \"terraform_data\" \"b\" {\n  input = terraform_data.a.output\n}\n\nresource \"terraform_data\" \"c\" {\n  input = terraform_data.b.output\n}\n";
    let posts = |extra: &[(&str, &str)]| {
        let srv = server();
        let d = module(&[("main.tf", src)]);
        let url = format!("-backend-config=address=http://{}/state/p", srv.addr);
        assert_eq!(tofu(&d, &["init", "-input=false", &url], &[]).code, 0);
        let mut env = vec![("TOFU_DOUBLE_RESOURCE_DELAY", "0.3")];
        env.extend_from_slice(extra);
        let n = srv.log.lock().unwrap().len();
        let apply = tofu(&d, &["apply", "-auto-approve", "-input=false"], &env);
        assert_eq!(apply.code, 0, "{}", apply.stderr);
        let log = srv.log.lock().unwrap();
        log[n..].iter().filter(|(m, _, _, _)| m == "POST").count()
    };
    assert_eq!(posts(&[]), 1, "20 s by default: only the final write");
    // After b (0.6 s) the interval has passed: one write then, one at the end.
    assert_eq!(posts(&[("TOFU_DOUBLE_PERSIST_INTERVAL", "0.5")]), 2);
}

#[test]
fn state_push_checks_lineage_and_serial() {
    let d = module(&[(
        "main.tf",
        "resource \"terraform_data\" \"x\" {\n  input = 1\n}\n",
    )]);
    assert_eq!(
        tofu(&d, &["state", "pull"], &[]).stdout,
        "",
        "no state: nothing printed"
    );
    assert_eq!(tofu(&d, &["apply", "-auto-approve"], &[]).code, 0);
    let mut st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    st["lineage"] = json!("00000000-0000-0000-0000-000000000000");
    std::fs::write(d.join("other.tfstate"), st.to_string()).unwrap();
    let o = tofu(&d, &["state", "push", "other.tfstate"], &[]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("cannot import state with lineage"),
        "{}",
        o.stderr
    );
    assert_eq!(
        tofu(&d, &["state", "push", "-force", "other.tfstate"], &[]).code,
        0
    );
    let v4 = module(&[("main.tf", "")]);
    std::fs::write(v4.join("terraform.tfstate"), "{\"version\": 3}").unwrap();
    let o = tofu(&v4, &["show", "-json"], &[]);
    assert!(
        o.stderr.contains("Unsupported state file format"),
        "{}",
        o.stderr
    );
}

#[test]
fn unsupported_configuration_is_a_clear_diagnostic_never_success() {
    for (src, want) in [
        ("provider \"aws\" {}\n", "Unsupported provider"),
        (
            "module \"m\" {\n  source = \"x\"\n}\n",
            "Unsupported module call",
        ),
        ("data \"http\" \"s\" {}\n", "Unsupported data source"),
        (
            "terraform {\n  backend \"s3\" {}\n}\n",
            "Unsupported backend type",
        ),
        (
            "terraform {\n  required_version = \">= 9.0\"\n}\n",
            "Unsupported OpenTofu Core version",
        ),
    ] {
        let d = module(&[("main.tf", src)]);
        let o = tofu(&d, &["plan"], &[]);
        assert_eq!(o.code, 1, "{src}");
        assert!(o.stderr.contains(want), "{src}: {}", o.stderr);
    }
}

#[test]
fn remote_state_is_read_over_http_and_a_missing_one_fails() {
    let srv = server();
    let remote = json!({"version": 4, "terraform_version": "1.11.4", "serial": 3, "lineage": "l",
        "outputs": {"vpc": {"value": "vpc-9", "type": "string"},
                    "pw": {"value": "p", "type": "string", "sensitive": true}},
        "resources": []});
    *srv.state.lock().unwrap() = Some(remote.to_string().into_bytes());
    let src = format!("data \"terraform_remote_state\" \"net\" {{\n  backend = \"http\"\n  config = {{\n    address  = \"http://{}/state/net\"\n    username = \"reader\"\n    password = \"pw\"\n  }}\n}}\n\nresource \"terraform_data\" \"a\" {{\n  input = data.terraform_remote_state.net.outputs.vpc\n}}\n\noutput \"vpc\" {{\n  value = terraform_data.a.output\n}}\n", srv.addr);
    let d = module(&[("main.tf", &src)]);
    assert_eq!(tofu(&d, &["init", "-input=false"], &[]).code, 0);
    let plan = tofu(&d, &["plan", "-json", "-out=p"], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan
        .stdout
        .contains("data.terraform_remote_state.net: Refreshing..."));
    assert_eq!(tofu(&d, &["apply", "p"], &[]).code, 0);
    let out: Value = serde_json::from_str(&tofu(&d, &["output", "-json"], &[]).stdout).unwrap();
    assert_eq!(out["vpc"]["value"], "vpc-9");
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("terraform.tfstate")).unwrap())
            .unwrap();
    assert_eq!(st["resources"][0]["mode"], "data");
    assert_eq!(
        st["resources"][1]["instances"][0]["dependencies"],
        json!(["data.terraform_remote_state.net"])
    );
    let log = srv.log.lock().unwrap().clone();
    assert!(log.iter().all(|r| r.0 == "GET" && r.1 == "/state/net"));
    assert!(log.iter().all(|r| r.2 == "Basic cmVhZGVyOnB3"), "{log:?}");
    let missing = "data \"terraform_remote_state\" \"x\" {\n  backend = \"local\"\n  config = {\n    path = \"nothing.tfstate\"\n  }\n}\n";
    let d = module(&[("main.tf", missing)]);
    assert_eq!(tofu(&d, &["init", "-input=false"], &[]).code, 0);
    let o = tofu(&d, &["plan"], &[]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("Unable to find remote state"),
        "{}",
        o.stderr
    );
}

#[test]
fn plantimestamp_is_the_plans_time_when_the_saved_plan_is_applied() {
    let d = module(&[(
        "main.tf",
        "output \"t\" {\n  value = plantimestamp()\n}\n\noutput \"now\" {\n  value = timestamp()\n}\n",
    )]);
    assert_eq!(tofu(&d, &["init", "-input=false"], &[]).code, 0);
    assert_eq!(tofu(&d, &["plan", "-out=p"], &[]).code, 0);
    let show: Value = serde_json::from_str(&tofu(&d, &["show", "-json", "p"], &[]).stdout).unwrap();
    let planned = show["output_changes"]["t"]["after"].clone();
    assert!(planned.as_str().is_some_and(|t| t.ends_with('Z')), "{show}");
    assert_eq!(show["output_changes"]["now"]["after_unknown"], true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(tofu(&d, &["apply", "p"], &[]).code, 0);
    let out: Value = serde_json::from_str(&tofu(&d, &["output", "-json"], &[]).stdout).unwrap();
    assert_eq!(out["t"]["value"], planned);
    assert_ne!(out["now"]["value"], planned);
}

#[test]
fn an_apply_that_fails_part_way_keeps_what_it_did_in_state() {
    let d = module(&[(
        "main.tf",
        "resource \"terraform_data\" \"x\" {\n  input = \"x\"\n}\n",
    )]);
    assert_eq!(tofu(&d, &["init", "-input=false"], &[]).code, 0);
    assert_eq!(tofu(&d, &["apply", "-auto-approve"], &[]).code, 0);
    // b's input can be evaluated only once a exists, and then fails.
    let more = "resource \"terraform_data\" \"a\" {\n  input = \"not-a-number\"\n}\n\nresource \"terraform_data\" \"b\" {\n  input = tonumber(terraform_data.a.output) + 1\n}\n";
    std::fs::write(d.join("more.tf"), more).unwrap();
    let o = tofu(&d, &["apply", "-auto-approve"], &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("terraform.tfstate")).unwrap())
            .unwrap();
    let mut names: Vec<&str> = st["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "x"], "as Terraform 1.11.4 keeps them: {st}");
}
