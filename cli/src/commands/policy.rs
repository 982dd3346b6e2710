//! `tofuflow policy`: plan policies in Rego attached to workspace globs (add, list, show,
//! remove: admin), and `policy test`, which evaluates policies against a plan JSON locally,
//! with the coordinator's evaluator, the way `conftest test` does.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tofuflow_proto::policy::{self, Evaluation, Outcome};
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Add a plan policy, or replace the one of that name (its version grows). It is checked
    /// first: it must compile and evaluate an empty plan without error.
    Add {
        #[arg(value_name = "NAME")]
        name: String,
        /// The workspaces it applies to, as a glob ('prod/*', '**' for all).
        #[arg(long = "workspace", value_name = "GLOB", value_parser = crate::args::workspace_glob)]
        workspaces: String,
        /// The Rego file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List plan policies: name, glob, version, package, who changed it last and when.
    List {
        /// Only the policies that apply to this workspace.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Show a plan policy with its source.
    Show {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Remove a plan policy (runs keep their verdicts).
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Evaluate policies against a plan JSON (`tofu show -json plan.bin`) here, without a
    /// coordinator: prints each deny and warn with its reasons; exits 1 when one denies (or
    /// fails), else 0.
    Test {
        /// The Rego files, or directories whose `*.rego` files (not `*_test.rego`) are taken.
        #[arg(value_name = "POLICY.rego", required = true)]
        policies: Vec<PathBuf>,
        /// The plan JSON.
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// A JSON object merged over the default context at input.tofuflow (workspace,
        /// actor, commit, tags, drift_check, run, previous_run).
        #[arg(long, value_name = "FILE")]
        context: Option<PathBuf>,
        /// Each policy's time limit, as the coordinator's --policy-timeout.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        timeout: Duration,
        /// Exit 1 on a warning too.
        #[arg(long)]
        fail_on_warn: bool,
    },
}

impl PolicyCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            PolicyCmd::Add {
                name,
                workspaces,
                file,
                description,
            } => {
                let source = read(&file)?;
                let req = v1::SetPolicyRequest {
                    name,
                    workspaces,
                    source,
                    description,
                };
                let p = ctx.client.set_policy(req).await;
                let p = p.map_err(|s| ctx.explain(s))?.into_inner();
                if ctx.json {
                    output::print_json(&policy_json(&p));
                } else {
                    println!(
                        "policy {} v{} ({}) applies to {}",
                        p.name, p.version, p.package, p.workspaces
                    );
                }
            }
            PolicyCmd::List { workspace } => {
                let req = v1::ListPoliciesRequest {
                    workspace: workspace.unwrap_or_default(),
                };
                let r = ctx.client.list_policies(req).await;
                let r = r.map_err(|s| ctx.explain(s))?.into_inner();
                print_policies(&r.policies, ctx.json);
            }
            PolicyCmd::Show { name } => {
                let p = ctx.client.get_policy(v1::PolicyRequest { name }).await;
                let p = p.map_err(|s| ctx.explain(s))?.into_inner();
                print_policy(&p, ctx.json);
            }
            PolicyCmd::Remove { name } => {
                let p = ctx.client.delete_policy(v1::PolicyRequest { name }).await;
                let p = p.map_err(|s| ctx.explain(s))?.into_inner();
                if ctx.json {
                    output::print_json(&policy_json(&p));
                } else {
                    println!("policy {} removed", p.name);
                }
            }
            PolicyCmd::Test { .. } => return Err("policy test runs without a coordinator".into()),
        }
        Ok(0)
    }
}

fn read(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

fn policy_json(p: &v1::PlanPolicy) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "workspaces": p.workspaces, "version": p.version, "digest": p.digest,
        "package": p.package, "description": p.description, "updated_by": p.updated_by,
        "created_unix_ms": p.created_unix_ms, "updated_unix_ms": p.updated_unix_ms,
        "source": p.source,
    })
}

fn print_policies(all: &[v1::PlanPolicy], json: bool) {
    if json {
        let v: Vec<_> = all.iter().map(policy_json).collect();
        output::print_json(&serde_json::json!(v));
        return;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.workspaces.clone(),
                format!("v{}", p.version),
                p.package.clone(),
                p.updated_by.clone(),
                output::date(p.updated_unix_ms),
                p.description.clone(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "WORKSPACES",
        "VERSION",
        "PACKAGE",
        "UPDATED BY",
        "UPDATED",
        "DESCRIPTION",
    ];
    println!("{}", output::table(&header, &rows));
}

fn print_policy(p: &v1::PlanPolicy, json: bool) {
    if json {
        output::print_json(&policy_json(p));
        return;
    }
    println!("Policy      {} v{}", p.name, p.version);
    println!("Workspaces  {}", p.workspaces);
    println!("Package     {}", p.package);
    println!("Digest      sha256:{}", p.digest);
    println!(
        "Updated     by {} at {}",
        p.updated_by,
        output::date(p.updated_unix_ms)
    );
    if !p.description.is_empty() {
        println!("About       {}", p.description);
    }
    println!();
    print!("{}", p.source);
}

/// The context `policy test` gives when none is given: the coordinator's keys, empty.
fn default_context() -> serde_json::Value {
    serde_json::json!({
        "workspace": "", "pool": "", "actor": "", "submitted_by": "", "commit": "", "source": "", "pipeline_id": "",
        "tags": {}, "drift_check": false,
        "run": {"id": "", "kind": "plan_and_apply", "auto_approve": false, "created_ms": 0},
        "previous_run": null,
    })
}

/// The context: the default with the given file's keys over it.
fn context(file: Option<&Path>) -> Result<serde_json::Value, String> {
    let mut ctx = default_context();
    if let Some(f) = file {
        let given: serde_json::Value = serde_json::from_str(&read(f)?)
            .map_err(|e| format!("{} is not JSON: {e}", f.display()))?;
        let serde_json::Value::Object(given) = given else {
            return Err(format!("{} must hold a JSON object", f.display()));
        };
        let obj = ctx.as_object_mut().expect("an object");
        obj.extend(given);
    }
    Ok(ctx)
}

/// `policy test`: evaluates each policy file against the plan, prints the verdicts; exit 1
/// when one denies or fails (or warns, with `fail_on_warn`).
pub fn test(
    policies: &[PathBuf],
    plan: &Path,
    context_file: Option<&Path>,
    limit: Duration,
    fail_on_warn: bool,
    json: bool,
) -> Result<u8, String> {
    let input = policy::Input::new(&read(plan)?, &context(context_file)?)
        .map_err(|e| format!("{}: {e}", plan.display()))?;
    let mut results = Vec::new();
    for file in &rego_files(policies)? {
        let source = read(file)?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Err(e) = policy::compile(&name, &source) {
            return Err(format!("{} does not compile: {e}", file.display()));
        }
        results.push((
            file.display().to_string(),
            policy::evaluate(&name, &source, &input, limit),
        ));
    }
    let worst = results
        .iter()
        .map(|(_, e)| e.outcome())
        .max()
        .unwrap_or(Outcome::Pass);
    if json {
        let v: Vec<_> = results.iter().map(|(f, e)| evaluation_json(f, e)).collect();
        output::print_json(&serde_json::json!({"verdict": worst.as_str(), "policies": v}));
    } else {
        for (file, e) in &results {
            print_evaluation(file, e);
        }
        println!("verdict: {}", describe(worst));
    }
    let fails = worst >= Outcome::Deny || (fail_on_warn && worst == Outcome::Warn);
    Ok(u8::from(fails))
}

/// The files given, with each directory replaced by its `*.rego` files (tests left out), sorted.
fn rego_files(given: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in given {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                name.ends_with(".rego") && !name.ends_with("_test.rego")
            })
            .collect();
        if found.is_empty() {
            return Err(format!("{} holds no .rego file", p.display()));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn evaluation_json(file: &str, e: &Evaluation) -> serde_json::Value {
    serde_json::json!({
        "file": file, "outcome": e.outcome().as_str(), "deny": e.deny, "warn": e.warn,
        "auto_approve": e.auto_approve, "error": e.error.as_ref().map(ToString::to_string),
        "duration_us": e.duration.as_micros() as u64,
    })
}

fn print_evaluation(file: &str, e: &Evaluation) {
    println!(
        "{file}: {} ({:.1} ms)",
        e.outcome(),
        e.duration.as_secs_f64() * 1000.0
    );
    for m in &e.deny {
        println!("  deny: {m}");
    }
    for m in &e.warn {
        println!("  warn: {m}");
    }
    if let Some(err) = &e.error {
        println!("  error: policy {err}");
    }
}

/// What the combined verdict means for a run.
fn describe(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass (the run goes on as submitted)",
        Outcome::AutoApprove => "auto_approve (the apply needs no human)",
        Outcome::Warn => "warn (a human must approve the apply)",
        Outcome::Deny => "deny (the run fails)",
        Outcome::Error => "error (a policy failed: the run fails)",
    }
}
