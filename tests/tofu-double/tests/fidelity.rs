//! Where the stand-in used to differ from the real binary (issue 18), checked through the CLI:
//! unknown outputs in plan JSON, sensitive outputs in the `-json` `outputs` message, the order
//! of provisioner messages, unknown functions, and functions whose values must be the real
//! binary's. Expected values were printed by Terraform 1.11.4 for the same modules.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tofu-double");

fn module(src: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tofu-double-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("main.tf"), src).unwrap();
    d
}

/// Runs the stand-in; returns the exit code and stdout.
fn tofu(dir: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TF_CLI_ARGS")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
    )
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const OUTPUTS: &str = r#"
resource "terraform_data" "x" {
  input = "hello"
}

output "later" {
  value = terraform_data.x.output
}

output "secret" {
  value     = "s3cr3t-value"
  sensitive = true
}
"#;

#[test]
fn unknown_outputs_have_no_after_and_sensitive_values_stay_out_of_the_outputs_message() {
    let d = module(OUTPUTS);
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    assert_eq!(tofu(&d, &["plan", "-input=false", "-out=p"]).0, 0);
    let (_, show) = tofu(&d, &["show", "-json", "p"]);
    let p: Value = serde_json::from_str(&show).unwrap();
    let later = &p["output_changes"]["later"];
    assert!(later.get("after").is_none(), "no `after` at all: {later}");
    assert_eq!(later["after_unknown"], true);
    assert_eq!(p["output_changes"]["secret"]["after"], "s3cr3t-value");

    let (code, out) = tofu(&d, &["apply", "-input=false", "-json", "p"]);
    assert_eq!(code, 0, "{out}");
    let lines = json_lines(&out);
    let outputs = lines.iter().rfind(|l| l["type"] == "outputs").unwrap();
    assert_eq!(
        outputs["outputs"]["secret"],
        json!({"sensitive": true, "type": "string"})
    );
    assert_eq!(outputs["outputs"]["later"]["value"], "hello");
    assert!(!out.contains("s3cr3t-value"), "{out}");
}

const PROVISIONED: &str = r#"
resource "terraform_data" "ok" {
  provisioner "local-exec" {
    command = "echo provisioned"
  }
}

resource "terraform_data" "bad" {
  depends_on = [terraform_data.ok]

  provisioner "local-exec" {
    command = "exit 3"
  }
}
"#;

#[test]
fn provisioner_messages_come_before_the_resource_completes_or_errors() {
    let d = module(PROVISIONED);
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["apply", "-auto-approve", "-json"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#""output":"Executing: [\"/bin/sh\" \"-c\" \"echo provisioned\"]""#),
        "the command as Go's %q prints it: {out}"
    );
    let order = |addr: &str| -> Vec<String> {
        json_lines(&out)
            .iter()
            .filter(|l| l["hook"]["resource"]["addr"] == addr)
            .map(|l| l["type"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        order("terraform_data.ok"),
        [
            "apply_start",
            "provision_start",
            "provision_progress",
            "provision_progress",
            "provision_complete",
            "apply_complete"
        ]
    );
    assert_eq!(
        order("terraform_data.bad"),
        [
            "apply_start",
            "provision_start",
            "provision_progress",
            "provision_errored",
            "apply_errored"
        ]
    );
}

#[test]
fn unknown_functions_fail_as_opentofu_reports_them() {
    let d = module("output \"x\" {\n  value = nosuchfn(1)\n}\n");
    let (code, out) = tofu(&d, &["validate", "-json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["summary"], "Call to unknown function");
    assert_eq!(
        v["diagnostics"][0]["detail"],
        "There is no function named \"nosuchfn\"."
    );
    let d = module("output \"x\" {\n  value = \"${yamlencode({ a = \"1h\" })}\"\n}\n");
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["plan", "-input=false", "-json"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("There is no function named \\\"yamlencode\\\"."),
        "{out}"
    );
}

const FUNCTIONS: &str = r#"
locals {
  m = { a = 1 }
}

output "format" {
  value = format("%5d|%-8s|%05.2f|%q|%t|%v|%x|%#v", 42, "ab", 3.14159, "q", true, 1.5, 255, "s")
}

output "general" {
  value = format("%g|%g|%g|%.3g|%e", 1234567.0, 100000, 0.00001234, 3.14159, 12345.678)
}

output "cidr" {
  value = [cidrsubnet("10.0.0.0/16", 8, 2), cidrhost("10.0.0.0/24", -1), cidrsubnet("fd00::/32", 16, 258)]
}

output "lazy" {
  value = [try(local.m.zz, "fb"), try(local.m.a, "fb"), can(tonumber("x")), "x-${try(local.m.zz, "y")}"]
}
"#;

#[test]
fn functions_give_the_real_binarys_values() {
    let d = module(FUNCTIONS);
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["apply", "-auto-approve", "-input=false"]);
    assert_eq!(code, 0, "{out}");
    let (_, out) = tofu(&d, &["output", "-json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["format"]["value"],
        "   42|ab      |03.14|\"q\"|true|1.5|ff|\"s\""
    );
    assert_eq!(
        v["general"]["value"],
        "1.234567e+06|100000|1.234e-05|3.14|1.234568e+04"
    );
    assert_eq!(
        v["cidr"]["value"],
        json!(["10.0.2.0/24", "10.0.0.255", "fd00:0:102::/48"])
    );
    assert_eq!(v["lazy"]["value"], json!(["fb", 1, false, "x-y"]));
}

const LEAKY: &str = r#"
variable "password" {
  type      = string
  default   = "hunter2"
  sensitive = true
}

locals {
  dsn = "db://u:${var.password}@h"
}

output "leaky" {
  value = local.dsn
}
"#;

#[test]
fn an_output_of_a_sensitive_value_must_be_marked_sensitive() {
    let d = module(LEAKY);
    let (code, out) = tofu(&d, &["validate", "-json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["diagnostics"][0]["summary"],
        "Output refers to sensitive values"
    );
    assert_eq!(
        tofu(&d, &["init", "-input=false"]).0,
        0,
        "init does not validate"
    );
    let (code, out) = tofu(&d, &["plan", "-input=false", "-json"]);
    assert_eq!(code, 1);
    assert!(!out.contains("hunter2"), "{out}");
    std::fs::write(
        d.join("main.tf"),
        LEAKY.replace("local.dsn\n", "local.dsn\n  sensitive = true\n"),
    )
    .unwrap();
    assert_eq!(tofu(&d, &["validate", "-json"]).0, 0);
}

#[test]
fn a_resource_without_instances_is_an_empty_collection() {
    let d = module(
        "resource \"terraform_data\" \"m\" {\n  count = 0\n}\n\noutput \"ids\" {\n  value = terraform_data.m[*].id\n}\n",
    );
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["apply", "-auto-approve", "-input=false"]);
    assert_eq!(code, 0, "{out}");
    let (_, out) = tofu(&d, &["output", "-json", "ids"]);
    assert_eq!(out.trim(), "[]");
}

const SECRET_PROVISIONER: &str = r#"
variable "token" {
  type      = string
  default   = "tok-3f9a"
  sensitive = true
}

resource "terraform_data" "e" {
  provisioner "local-exec" {
    command     = "echo a $T; echo b; exit 4"
    environment = { T = var.token }
  }
}
"#;

/// As Terraform 1.11.4 printed it: one suppressed line for `Executing` and one per output line,
/// and the failure's diagnostic still carries the output.
#[test]
fn a_provisioner_with_a_sensitive_value_in_its_configuration_shows_no_output() {
    let d = module(SECRET_PROVISIONER);
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["apply", "-auto-approve", "-json"]);
    assert_eq!(code, 1, "{out}");
    let lines = json_lines(&out);
    let progress: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "provision_progress")
        .collect();
    assert_eq!(progress.len(), 3, "{out}");
    for p in progress {
        assert_eq!(
            p["hook"]["output"],
            "(output suppressed due to sensitive value in config)"
        );
    }
    let diag = lines.iter().find(|l| l["type"] == "diagnostic").unwrap();
    assert_eq!(
        diag["diagnostic"]["detail"],
        "Error running command 'echo a $T; echo b; exit 4': exit status 4. Output: a tok-3f9a\nb\n"
    );
}

/// As Terraform 1.11.4 prints it: every instance in state is refreshed before anything is
/// planned (`-refresh=false` skips it; applying a saved plan does not refresh again).
#[test]
fn a_plan_with_state_refreshes_every_instance_first() {
    let d = module(
        "resource \"terraform_data\" \"n\" {\n  count = 2\n  input = count.index\n}\n\nresource \"terraform_data\" \"one\" {\n  input = \"v1\"\n}\n",
    );
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    assert_eq!(tofu(&d, &["apply", "-auto-approve", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["plan", "-input=false", "-json", "-out=p"]);
    assert_eq!(code, 0, "{out}");
    let lines = json_lines(&out);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..7],
        [
            "version",
            "refresh_start",
            "refresh_complete",
            "refresh_start",
            "refresh_complete",
            "refresh_start",
            "refresh_complete"
        ]
    );
    let first = &lines[1];
    assert_eq!(first["hook"]["id_key"], "id");
    let id = first["hook"]["id_value"].as_str().unwrap();
    assert!(first["@message"]
        .as_str()
        .unwrap()
        .ends_with(&format!(": Refreshing state... [id={id}]")));
    let (_, out) = tofu(&d, &["plan", "-input=false", "-json", "-refresh=false"]);
    assert!(!out.contains("refresh_start"), "{out}");
    let (_, out) = tofu(&d, &["apply", "-input=false", "-json", "p"]);
    assert!(!out.contains("refresh_start"), "{out}");
}

/// A saved plan is a zip archive, as OpenTofu's are (stored entries: `tfplan`, `tfstate` when
/// there is state, `tfconfig/<file>`), so whatever carries it carries a binary file.
#[test]
fn a_saved_plan_is_a_zip_archive() {
    let d = module(OUTPUTS);
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    assert_eq!(tofu(&d, &["plan", "-input=false", "-out=p"]).0, 0);
    let bytes = std::fs::read(d.join("p")).unwrap();
    assert!(
        bytes.starts_with(b"PK\x03\x04"),
        "a local file header first"
    );
    let eocd = &bytes[bytes.len() - 22..];
    assert!(
        eocd.starts_with(b"PK\x05\x06"),
        "the end of central directory last"
    );
    assert_eq!(
        u16::from_le_bytes([eocd[10], eocd[11]]),
        2,
        "tfplan and tfconfig/main.tf"
    );
    let (code, out) = tofu(&d, &["apply", "-input=false", "p"]);
    assert_eq!(code, 0, "{out}");
    std::fs::write(d.join("bad"), b"PK\x03\x04 not really").unwrap();
    let (code, _) = tofu(&d, &["apply", "-input=false", "bad"]);
    assert_eq!(code, 1);
}

/// The real binary writes a local state file after every change of an apply, and once more at
/// the end, each write a serial (Terraform 1.11.4, three resources created one after another:
/// serial 1 holding the first, 2 holding two, 4 at the end), not only at the end.
#[test]
fn a_local_state_file_is_written_after_every_change() {
    let src = "resource \"terraform_data\" \"a\" {\n  input = 1\n}\n\nresource \"terraform_data\" \"b\" {\n  input = terraform_data.a.output\n}\n\nresource \"terraform_data\" \"c\" {\n  input = terraform_data.b.output\n}\n";
    let d = module(src);
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    assert_eq!(tofu(&d, &["apply", "-auto-approve", "-input=false"]).0, 0);
    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(st["resources"].as_array().unwrap().len(), 3);
    assert_eq!(st["serial"], 4, "one write per change and one at the end");
    let backup: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate.backup")).unwrap())
            .unwrap();
    assert_eq!(backup["serial"], 3, "the write before the last one");
}

/// As Terraform 1.11.4 plans a `moved` block: a `planned_change` "Plan to move" with the
/// previous resource, exit code 2 with `-detailed-exitcode` though nothing else changes, and
/// state under the new address after the apply.
#[test]
fn a_moved_block_plans_a_move_and_the_apply_renames_the_instance() {
    let d = module("resource \"terraform_data\" \"a\" {\n  input = \"x\"\n}\n");
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    assert_eq!(tofu(&d, &["apply", "-auto-approve", "-input=false"]).0, 0);
    let moved = "resource \"terraform_data\" \"b\" {\n  input = \"x\"\n}\n\nmoved {\n  from = terraform_data.a\n  to   = terraform_data.b\n}\n";
    std::fs::write(d.join("main.tf"), moved).unwrap();
    let (code, out) = tofu(
        &d,
        &[
            "plan",
            "-input=false",
            "-json",
            "-detailed-exitcode",
            "-out=p",
        ],
    );
    assert_eq!(code, 2, "{out}");
    let lines = json_lines(&out);
    let change = lines
        .iter()
        .find(|l| l["type"] == "planned_change")
        .unwrap();
    assert_eq!(change["@message"], "terraform_data.b: Plan to move");
    assert_eq!(change["change"]["action"], "move");
    assert_eq!(
        change["change"]["previous_resource"]["addr"],
        "terraform_data.a"
    );
    let summary = lines
        .iter()
        .find(|l| l["type"] == "change_summary")
        .unwrap();
    assert_eq!(
        summary["@message"],
        "Plan: 0 to add, 0 to change, 0 to destroy."
    );
    assert_eq!(tofu(&d, &["apply", "-input=false", "p"]).0, 0);
    let st: Value =
        serde_json::from_slice(&std::fs::read(d.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(st["resources"][0]["name"], "b");
    let (code, _) = tofu(&d, &["plan", "-input=false", "-detailed-exitcode"]);
    assert_eq!(code, 0, "nothing left to move");
}

/// As Terraform 1.11.4 applies a failing `check` block: a warning (not an error) after the
/// resources, exit 0, and the stream's last message `Outputs: 0` even without outputs.
#[test]
fn a_failing_check_warns_and_an_apply_always_reports_its_outputs() {
    let d = module("resource \"terraform_data\" \"r\" {\n  input = 4\n}\n\ncheck \"small\" {\n  assert {\n    condition     = terraform_data.r.output < 2\n    error_message = \"r is not small\"\n  }\n}\n");
    assert_eq!(tofu(&d, &["init", "-input=false"]).0, 0);
    let (code, out) = tofu(&d, &["plan", "-input=false", "-json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Check block assertion known after apply"),
        "{out}"
    );
    let (code, out) = tofu(&d, &["apply", "-auto-approve", "-input=false", "-json"]);
    assert_eq!(code, 0, "{out}");
    let lines = json_lines(&out);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    let warn = lines
        .iter()
        .position(|l| l["@message"] == "Warning: Check block assertion failed")
        .unwrap();
    assert_eq!(lines[warn]["diagnostic"]["detail"], "r is not small");
    assert!(warn > types.iter().position(|t| *t == "apply_complete").unwrap());
    assert_eq!(types[types.len() - 2..], ["change_summary", "outputs"]);
    assert_eq!(lines.last().unwrap()["@message"], "Outputs: 0");
}
