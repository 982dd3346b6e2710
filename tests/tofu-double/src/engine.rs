//! Planning and applying: input variables, the walk over `terraform_data` resources in dependency
//! order (plan mode computes actions; apply mode also carries them out), local-exec provisioners,
//! outputs, the plan JSON (`show -json`) and the fault hooks tests use.

use crate::config::{self, Module, Provisioner, ResourceDecl};
use crate::eval::{self, Scope, UNKNOWN};
use crate::jsonplan;
use crate::remote_state;
use crate::sensitivity;
use crate::signals;
use crate::state::{self, Instance, Resource, StateFile, StateOutput};
use crate::ui::{self, Diag, Ui};
use serde_json::{json, Map, Value};
use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime};

/// What a provisioner with a sensitive value in its configuration shows instead of its output.
const SUPPRESSED: &str = "(output suppressed due to sensitive value in config)";

/// One output's planned change: name, action, before, after, sensitive.
pub type OutputChange = (String, &'static str, Option<Value>, Option<Value>, bool);
/// Instance keys of a resource with their `count`/`each` bindings, and the `each` mode.
type Expansion = (Vec<(Option<Value>, Value)>, Option<String>);

/// A configured instance: its resource name and instance key.
type InstanceAddr = (String, Option<Value>);

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Normal,
    Destroy,
    RefreshOnly,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
    /// Dropped from state without being destroyed (a `removed` block with `destroy = false`).
    Forget,
}

impl Action {
    fn actions(self) -> Value {
        match self {
            Action::NoOp => json!(["no-op"]),
            Action::Create => json!(["create"]),
            Action::Update => json!(["update"]),
            Action::Replace => json!(["delete", "create"]),
            Action::Delete => json!(["delete"]),
            Action::Forget => json!(["forget"]),
        }
    }
    fn ui(self) -> &'static str {
        match self {
            Action::NoOp => "noop",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Forget => "remove",
        }
    }
}

/// One instance's attribute values (`id` may be unknown while planning).
#[derive(Clone, Debug)]
pub struct Vals {
    pub id: Value,
    pub input: Option<Value>,
    pub triggers: Option<Value>,
    /// Sensitive parts of `input` and `triggers_replace`: `{"input": mirror, ...}` with `true`
    /// where sensitive (`sensitivity.rs`), `Null` when nothing is.
    pub marks: Value,
}

impl Vals {
    pub fn object(&self) -> Value {
        json!({
            "id": self.id,
            "input": self.input.clone().unwrap_or(Value::Null),
            "output": self.input.clone().unwrap_or(Value::Null),
            "triggers_replace": self.triggers.clone().unwrap_or(Value::Null),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Change {
    pub name: String,
    pub key: Option<Value>,
    pub action: Action,
    pub before: Option<Vals>,
    pub after: Option<Vals>,
    pub reason: Option<&'static str>,
    /// The address a `moved` block moved this instance from.
    pub previous: Option<String>,
}

impl Change {
    pub fn addr(&self) -> String {
        addr(&self.name, &self.key)
    }
}

pub fn addr(name: &str, key: &Option<Value>) -> String {
    match key {
        None => format!("terraform_data.{name}"),
        Some(Value::String(k)) => format!("terraform_data.{name}[{k:?}]"),
        Some(k) => format!("terraform_data.{name}[{k}]"),
    }
}

fn res_obj(name: &str, key: &Option<Value>) -> Value {
    let a = addr(name, key);
    json!({
        "addr": a, "module": "", "resource": a, "implied_provider": "terraform",
        "resource_type": "terraform_data", "resource_name": name,
        "resource_key": key.clone().unwrap_or(Value::Null),
    })
}

/// An instance as recorded in state.
#[derive(Clone, Debug)]
struct Rec {
    name: String,
    key: Option<Value>,
    vals: Vals,
    tainted: bool,
    each: Option<String>,
}

fn records(st: &Option<StateFile>) -> Vec<Rec> {
    let mut out = Vec::new();
    for r in st.iter().flat_map(|s| s.resources.iter()) {
        if r.mode != "managed" || r.typ != "terraform_data" {
            continue;
        }
        for i in &r.instances {
            let a = &i.attributes;
            out.push(Rec {
                name: r.name.clone(),
                key: i.index_key.clone(),
                vals: state_vals(a, &i.sensitive_attributes),
                tainted: i.status.as_deref() == Some("tainted"),
                each: r.each.clone(),
            });
        }
    }
    out
}

/// An instance's values from state, with the marks its `sensitive_attributes` record.
fn state_vals(a: &Value, sensitive: &[Value]) -> Vals {
    let input = state::unwrap_dynamic(a.get("input"));
    let triggers = state::unwrap_dynamic(a.get("triggers_replace"));
    let mut marks = Map::new();
    for (attr, v) in [("input", &input), ("triggers_replace", &triggers)] {
        let v = v.clone().unwrap_or(Value::Null);
        let mark = sensitivity::from_paths(sensitive, attr, &v);
        if !mark.is_null() {
            marks.insert(attr.into(), mark);
        }
    }
    Vals {
        id: a.get("id").cloned().unwrap_or(Value::Null),
        input,
        triggers,
        marks: if marks.is_empty() {
            Value::Null
        } else {
            Value::Object(marks)
        },
    }
}

/// The marks of a planned instance, from its configuration.
fn config_marks(
    m: &Module,
    r: &ResourceDecl,
    input: &Option<Value>,
    triggers: &Option<Value>,
) -> Value {
    let mut marks = Map::new();
    for (attr, e, v) in [
        ("input", &r.input, input),
        ("triggers_replace", &r.triggers_replace, triggers),
    ] {
        if let (Some(e), Some(v)) = (e, v) {
            let mark = sensitivity::marks_of(m, e, v);
            if sensitivity::any(&mark) {
                marks.insert(attr.into(), mark);
            }
        }
    }
    if marks.is_empty() {
        Value::Null
    } else {
        Value::Object(marks)
    }
}

// ---------------------------------------------------------------------------------------------
// Variables

/// Collects input variables with OpenTofu's precedence: `TF_VAR_*`, `terraform.tfvars`,
/// `terraform.tfvars.json`, `*.auto.tfvars(.json)` in lexical order, then `-var`/`-var-file`
/// in argument order.
pub fn collect_vars(m: &Module, cli: &[(String, String)]) -> Result<Map<String, Value>, Vec<Diag>> {
    let mut raw: Map<String, Value> = Map::new();
    let mut diags = Vec::new();
    env_vars(m, &mut raw, &mut diags);
    var_files(m, &mut raw, &mut diags);
    cli_vars(m, cli, &mut raw, &mut diags);
    let out = typed_values(m, raw, &mut diags);
    validate_vars(m, &out, &mut diags);
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

type Raw = Map<String, Value>;

/// `TF_VAR_NAME` for each declared variable.
fn env_vars(m: &Module, raw: &mut Raw, diags: &mut Vec<Diag>) {
    let decl = |n: &str| m.variables.iter().find(|v| v.name == n);
    for (k, v) in std::env::vars() {
        if let Some(n) = k.strip_prefix("TF_VAR_") {
            if let Some(d) = decl(n) {
                match eval::parse_raw_var(&v, d.type_expr.as_deref()) {
                    Ok(x) => {
                        raw.insert(n.to_string(), x);
                    }
                    Err(e) => diags.push(bad_value(n, &e)),
                }
            }
        }
    }
}

/// `terraform.tfvars`, `terraform.tfvars.json` and the `*.auto.tfvars[.json]` files, in order.
fn var_files(m: &Module, raw: &mut Raw, diags: &mut Vec<Diag>) {
    let decl = |n: &str| m.variables.iter().find(|v| v.name == n);
    let mut files: Vec<String> = Vec::new();
    for f in ["terraform.tfvars", "terraform.tfvars.json"] {
        if m.dir.join(f).is_file() {
            files.push(f.to_string());
        }
    }
    let mut autos: Vec<String> = std::fs::read_dir(&m.dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".auto.tfvars") || n.ends_with(".auto.tfvars.json"))
                .collect()
        })
        .unwrap_or_default();
    autos.sort();
    files.extend(autos);
    for f in files {
        match read_var_file(&m.dir.join(&f)) {
            Ok(vals) => {
                for (k, v) in vals {
                    if decl(&k).is_some() {
                        raw.insert(k, v);
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
}

/// `-var` and `-var-file` in the order given (each later one wins).
fn cli_vars(m: &Module, cli: &[(String, String)], raw: &mut Raw, diags: &mut Vec<Diag>) {
    let decl = |n: &str| m.variables.iter().find(|v| v.name == n);
    for (kind, v) in cli {
        if kind == "var" {
            let Some((k, val)) = v.split_once('=') else {
                diags.push(Diag::error(
                    "Invalid -var option",
                    format!("The given -var option {v:?} is not correctly specified. It must be a variable name and value separated by an equals sign, like -var=\"key=value\"."),
                ));
                continue;
            };
            match decl(k) {
                None => diags.push(undeclared(k)),
                Some(d) => match eval::parse_raw_var(val, d.type_expr.as_deref()) {
                    Ok(x) => {
                        raw.insert(k.to_string(), x);
                    }
                    Err(e) => diags.push(bad_value(k, &e)),
                },
            }
        } else {
            let p = std::path::Path::new(v);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                m.dir.join(p)
            };
            match read_var_file(&p) {
                Ok(vals) => {
                    for (k, x) in vals {
                        if decl(&k).is_none() {
                            diags.push(undeclared(&k));
                        } else {
                            raw.insert(k, x);
                        }
                    }
                }
                Err(d) => diags.push(d),
            }
        }
    }
}

/// Every declared variable's value (given or default) converted to its type.
fn typed_values(m: &Module, mut raw: Raw, diags: &mut Vec<Diag>) -> Map<String, Value> {
    let mut out = Map::new();
    for d in &m.variables {
        let v = match raw.remove(&d.name) {
            Some(v) => v,
            None => match &d.default {
                Some(e) => match eval::eval_static(e) {
                    Ok(v) => v,
                    Err(e) => {
                        diags.push(bad_value(&d.name, &e));
                        continue;
                    }
                },
                None => {
                    diags.push(Diag::error(
                        "No value for required variable",
                        format!("The root module input variable {:?} is not set, and has no default value. Use a -var or -var-file command line argument to provide a value for this variable.", d.name),
                    ));
                    continue;
                }
            },
        };
        let v = match &d.type_expr {
            Some(t) => match crate::types::parse(t).and_then(|ty| crate::types::convert(v, &ty)) {
                Ok(v) => v,
                Err(e) => {
                    diags.push(bad_value(&d.name, &e));
                    continue;
                }
            },
            None => v,
        };
        out.insert(d.name.clone(), v);
    }
    out
}

/// Variable validation rules; each sees only its own variable.
fn validate_vars(m: &Module, out: &Map<String, Value>, diags: &mut Vec<Diag>) {
    for d in &m.variables {
        for (cond, msg) in &d.validations {
            let Some(v) = out.get(&d.name) else { continue };
            let vars = Map::from_iter([(d.name.clone(), v.clone())]);
            let empty = Map::new();
            let scope = Scope {
                vars: &vars,
                locals: &empty,
                resources: &empty,
                module_dir: ".",
                cwd: ".",
                workspace: "default",
            };
            let ctx = scope.context();
            match eval::eval(cond, &ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(_) => diags.push(Diag::error(
                    "Invalid value for variable",
                    format!(
                        "{}\n\nThis was checked by the validation rule at var.{}.",
                        eval::eval(msg, &ctx)
                            .ok()
                            .and_then(|m| m.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        d.name
                    ),
                )),
                Err(e) => diags.push(Diag::error("Invalid validation condition", e)),
            }
        }
    }
}

fn undeclared(k: &str) -> Diag {
    Diag::error(
        "Value for undeclared variable",
        format!("A variable named {k:?} was assigned on the command line, but the root module does not declare a variable of that name. To use this value, add a \"variable\" block to the configuration."),
    )
}

fn bad_value(k: &str, e: &str) -> Diag {
    Diag::error(
        "Invalid value for input variable",
        format!("The value given for variable {k:?} is not suitable: {e}."),
    )
}

fn read_var_file(p: &std::path::Path) -> Result<Map<String, Value>, Diag> {
    let src = std::fs::read_to_string(p).map_err(|e| {
        Diag::error(
            "Failed to read variables file",
            format!(
                "Given variables file {} does not exist or cannot be read: {e}",
                p.display()
            ),
        )
    })?;
    if p.to_string_lossy().ends_with(".json") {
        return serde_json::from_str::<Map<String, Value>>(&src)
            .map_err(|e| Diag::error("Invalid variables file", format!("{}: {e}", p.display())));
    }
    let body = hcl::parse(&src)
        .map_err(|e| Diag::error("Invalid variables file", format!("{}: {e}", p.display())))?;
    let mut out = Map::new();
    for a in body.attributes() {
        let v = eval::eval_static(a.expr())
            .map_err(|e| Diag::error("Variables not allowed", format!("{}: {e}", p.display())))?;
        out.insert(a.key().to_string(), v);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The walk

pub struct Walk<'a> {
    pub module: &'a Module,
    pub vars: &'a Map<String, Value>,
    pub mode: Mode,
    pub prior: &'a Option<StateFile>,
    /// Instances `moved` blocks moved in `prior`: (new address, previous address).
    pub moved: &'a [(String, String)],
    pub workspace: String,
    pub ui: &'a Ui,
    pub apply: bool,
    /// Intermediate state writes during an apply (`None` while planning).
    pub persist: Option<&'a Persist<'a>>,
}

/// Writes intermediate state during an apply, as the real binary's state hook does: after a
/// change, once at least `interval` has passed since the apply began or since the last write
/// (a local state file is written after every change).
pub struct Persist<'a> {
    interval: Duration,
    last: std::cell::Cell<Instant>,
    write: &'a dyn Fn(&Outcome),
}

impl<'a> Persist<'a> {
    /// `TF_STATE_PERSIST_INTERVAL` seconds (default and minimum 20) for a remote backend, none
    /// for a local file; `TOFU_DOUBLE_PERSIST_INTERVAL` (a test's hook) overrides both.
    pub fn new(write: &'a dyn Fn(&Outcome), local: bool) -> Persist<'a> {
        let secs = |v: &str| hook(v).and_then(|s| s.parse::<f64>().ok());
        let remote = || secs("TF_STATE_PERSIST_INTERVAL").unwrap_or(20.0).max(20.0);
        let interval =
            secs("TOFU_DOUBLE_PERSIST_INTERVAL")
                .unwrap_or_else(|| if local { 0.0 } else { remote() });
        Persist {
            interval: Duration::from_secs_f64(interval.max(0.0)),
            last: std::cell::Cell::new(Instant::now()),
            write,
        }
    }
}

/// The result of one `check` block: its name, `pass`, `fail` or `unknown`, and the messages of
/// its failed assertions.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub status: &'static str,
    pub problems: Vec<String>,
}

pub struct Outcome {
    pub changes: Vec<Change>,
    pub outputs: Map<String, Value>,
    /// `check` blocks, evaluated once everything else was.
    pub checks: Vec<CheckResult>,
    /// Records after apply (only meaningful when `apply`).
    recs: Vec<Rec>,
    pub error: Option<Diag>,
    pub interrupted: bool,
    /// The data sources read while planning.
    pub data: Vec<remote_state::Read>,
}

fn hook(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

impl Walk<'_> {
    fn dir(&self) -> String {
        self.module.dir.to_string_lossy().into_owned()
    }

    fn scope_ctx(&self, resources: &Map<String, Value>) -> hcl::eval::Context<'static> {
        // The root module is `.` (the process works in it), the working directory absolute.
        let dir = self.dir();
        let locals = eval::eval_locals(
            &self.module.locals,
            self.vars,
            resources,
            &dir,
            &self.workspace,
        );
        Scope {
            vars: self.vars,
            locals: &locals,
            resources,
            module_dir: ".",
            cwd: &dir,
            workspace: &self.workspace,
        }
        .context()
    }

    /// Expands `count` / `for_each` into instance keys with their `count`/`each` bindings.
    fn expand(&self, r: &ResourceDecl, resources: &Map<String, Value>) -> Result<Expansion, Diag> {
        let ctx = self.scope_ctx(resources);
        let at = format!("terraform_data.{}", r.name);
        if let Some(c) = &r.count {
            let v = eval::eval(c, &ctx)
                .map_err(|e| Diag::error("Invalid count argument", e).with_address(at.clone()))?;
            if eval::is_unknown(&v) {
                return Err(Diag::error("Invalid count argument", "The \"count\" value depends on resource attributes that cannot be determined until apply.").with_address(at));
            }
            let n = v.as_f64().ok_or_else(|| {
                Diag::error(
                    "Invalid count argument",
                    "The given \"count\" argument value is unsuitable: number required.",
                )
                .with_address(at.clone())
            })?;
            return Ok((
                (0..n as i64)
                    .map(|i| (Some(json!(i)), json!({"count": {"index": i}})))
                    .collect(),
                Some("list".into()),
            ));
        }
        if let Some(f) = &r.for_each {
            let v = eval::eval(f, &ctx).map_err(|e| {
                Diag::error("Invalid for_each argument", e).with_address(at.clone())
            })?;
            if eval::is_unknown(&v) {
                return Err(Diag::error("Invalid for_each argument", "The \"for_each\" value depends on resource attributes that cannot be determined until apply.").with_address(at));
            }
            let items: Vec<(String, Value)> = match v {
                Value::Object(o) => o.into_iter().collect(),
                Value::Array(a) => a
                    .into_iter()
                    .map(|x| match x {
                        Value::String(s) => Ok((s.clone(), Value::String(s))),
                        _ => Err(Diag::error("Invalid for_each argument", "The given \"for_each\" argument value is unsuitable: a set of strings or a map is required.").with_address(at.clone())),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(Diag::error("Invalid for_each argument", "The given \"for_each\" argument value is unsuitable: a map or set of strings is required.").with_address(at)),
            };
            let mut items = items;
            items.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok((
                items
                    .into_iter()
                    .map(|(k, v)| (Some(json!(k)), json!({"each": {"key": k, "value": v}})))
                    .collect(),
                Some("map".into()),
            ));
        }
        Ok((vec![(None, json!({}))], None))
    }

    fn bind(
        resources: &mut Map<String, Value>,
        name: &str,
        key: &Option<Value>,
        obj: Value,
        each: &Option<String>,
    ) {
        match (key, each.as_deref()) {
            (None, _) => {
                resources.insert(name.to_string(), obj);
            }
            (Some(Value::Number(n)), Some("list")) => {
                let e = resources
                    .entry(name.to_string())
                    .or_insert_with(|| json!([]));
                if let Value::Array(a) = e {
                    let i = n.as_u64().unwrap_or(0) as usize;
                    while a.len() <= i {
                        a.push(Value::Null);
                    }
                    a[i] = obj;
                }
            }
            (Some(k), _) => {
                let e = resources
                    .entry(name.to_string())
                    .or_insert_with(|| json!({}));
                if let Value::Object(o) = e {
                    o.insert(
                        k.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| k.to_string()),
                        obj,
                    );
                }
            }
        }
    }

    /// Plans (and, when `apply`, carries out) every change.
    pub fn run(&self) -> Outcome {
        crate::datetime::set_applying(self.apply);
        let mut recs = records(self.prior);
        let mut changes = Vec::new();
        let mut resources: Map<String, Value> = Map::new();
        let mut out = Outcome {
            changes: Vec::new(),
            outputs: Map::new(),
            checks: Vec::new(),
            recs: Vec::new(),
            error: None,
            interrupted: false,
            data: Vec::new(),
        };
        let order = match self.prepare(&mut resources, &mut out) {
            Ok(o) => o,
            Err(d) => {
                out.error = Some(d);
                return out;
            }
        };
        let fail_at = hook("TOFU_DOUBLE_FAIL_AT");
        let crash_at = hook("TOFU_DOUBLE_CRASH_AT");
        let delay = hook("TOFU_DOUBLE_RESOURCE_DELAY")
            .and_then(|s| s.parse::<f64>().ok())
            .map(Duration::from_secs_f64);

        if self.mode == Mode::Destroy {
            changes = self.destroy_changes(&recs, &order);
            let faults = (&fail_at, &crash_at, delay);
            self.execute_all(&changes, &mut recs, &resources, faults, &mut out);
            out.changes = changes;
            out.recs = recs;
            return out;
        }

        let faults = (&fail_at, &crash_at, delay);
        let walked = self.walk_resources(&order, &mut recs, &mut resources, faults, &mut out);
        let (desired, planned) = match walked {
            Ok(w) => w,
            Err(so_far) => {
                // What was done is kept: an apply that fails part way saves it.
                out.changes = so_far;
                out.recs = recs;
                return out;
            }
        };
        // Orphans: in state, no longer in configuration (forgotten if a `removed` block says
        // not to destroy them).
        let orphans = self.orphans(&recs, &desired);
        let faults = (&fail_at, &crash_at, delay);
        self.execute_all(&orphans, &mut recs, &resources, faults, &mut out);
        changes.extend(planned);
        changes.extend(orphans);
        // Outputs.
        let ctx = self.scope_ctx(&resources);
        self.eval_outputs(&ctx, &mut out);
        out.checks = self.run_checks(&ctx);
        out.changes = changes;
        out.recs = recs;
        out
    }

    /// Plans (and when applying, carries out) every configured instance in dependency order,
    /// binding each for the references after it: the instances wanted and their changes. On a
    /// failure `out` says why and `Err` holds the changes made so far.
    fn walk_resources(
        &self,
        order: &[usize],
        recs: &mut Vec<Rec>,
        resources: &mut Map<String, Value>,
        (fail_at, crash_at, delay): (&Option<String>, &Option<String>, Option<Duration>),
        out: &mut Outcome,
    ) -> Result<(Vec<InstanceAddr>, Vec<Change>), Vec<Change>> {
        let (mut desired, mut changes) = (Vec::new(), Vec::new());
        for &i in order {
            let r = &self.module.resources[i];
            let (keys, each) = match self.expand(r, resources) {
                Ok(k) => k,
                Err(d) => {
                    out.error = Some(d);
                    return Err(changes);
                }
            };
            if keys.is_empty() {
                // No instances (`count = 0`, an empty `for_each`): references see an empty
                // collection, not a missing resource.
                let empty = if r.for_each.is_some() {
                    json!({})
                } else {
                    json!([])
                };
                resources.insert(r.name.clone(), empty);
            }
            for (key, extra) in keys {
                desired.push((r.name.clone(), key.clone()));
                let prior = recs
                    .iter()
                    .find(|x| x.name == r.name && x.key == key)
                    .cloned();
                let mut ctx = self.scope_ctx(resources);
                if let Value::Object(o) = &extra {
                    for (k, v) in o {
                        ctx.declare_var(k.as_str(), eval::to_hcl(v));
                    }
                }
                let change = match self.plan_instance(r, &key, &prior, &ctx) {
                    Ok(c) => c,
                    Err(d) => {
                        out.error = Some(d);
                        return Err(changes);
                    }
                };
                let obj = if self.apply {
                    if let Err(stop) = self.execute_with_ctx(
                        &change, recs, r, &extra, resources, fail_at, crash_at, delay, &each,
                    ) {
                        out.interrupted = stop.is_none();
                        out.error = stop.or_else(|| Some(halted()));
                        changes.push(change);
                        return Err(changes);
                    }
                    let done = recs.iter().find(|x| x.name == r.name && x.key == key);
                    done.map(|x| x.vals.object()).unwrap_or(Value::Null)
                } else {
                    planned_object(&change)
                };
                Self::bind(resources, &r.name, &key, obj, &each);
                changes.push(change);
            }
        }
        Ok((desired, changes))
    }

    /// The resources' order, after the checks that fail a plan before anything is evaluated,
    /// and the data sources read (into `out.data`, bound in `resources`).
    fn prepare(
        &self,
        resources: &mut Map<String, Value>,
        out: &mut Outcome,
    ) -> Result<Vec<usize>, Diag> {
        let order = config::topo_order(self.module)?;
        if let Some(d) = self.module.removed_still_declared() {
            return Err(d);
        }
        let ctx = self.scope_ctx(resources);
        out.data = remote_state::read_all(self.module, &ctx)?;
        remote_state::bind(resources, &out.data);
        Ok(order)
    }

    /// Carries out `changes` in turn when applying, stopping at the first failure or interrupt.
    fn execute_all(
        &self,
        changes: &[Change],
        recs: &mut Vec<Rec>,
        resources: &Map<String, Value>,
        (fail_at, crash_at, delay): (&Option<String>, &Option<String>, Option<Duration>),
        out: &mut Outcome,
    ) {
        if !self.apply {
            return;
        }
        for c in changes {
            if let Err(stop) = self.execute(c, recs, resources, fail_at, crash_at, delay) {
                out.interrupted = stop.is_none();
                out.error = stop.or_else(|| Some(halted()));
                break;
            }
        }
    }

    /// Everything in state goes, dependents first.
    fn destroy_changes(&self, recs: &[Rec], order: &[usize]) -> Vec<Change> {
        let mut doomed = recs.to_vec();
        let pos = |n: &str| {
            order
                .iter()
                .position(|&i| self.module.resources[i].name == n)
                .unwrap_or(usize::MAX)
        };
        doomed.sort_by_key(|r| std::cmp::Reverse(pos(&r.name)));
        doomed
            .into_iter()
            .map(|r| Change {
                name: r.name,
                key: r.key,
                action: Action::Delete,
                before: Some(r.vals),
                after: None,
                reason: None,
                previous: None,
            })
            .collect()
    }

    /// The planned change of one instance, whose prior record is `prior`.
    fn plan_instance(
        &self,
        r: &ResourceDecl,
        key: &Option<Value>,
        prior: &Option<Rec>,
        ctx: &hcl::eval::Context,
    ) -> Result<Change, Diag> {
        let a = addr(&r.name, key);
        let value = |e: &Option<hcl::Expression>| {
            let v = e
                .as_ref()
                .map(|e| eval::eval(e, ctx).map(|v| eval::whole_output_unknown(e, v)))
                .transpose();
            v.map_err(|e| Diag::error("Invalid expression", e).with_address(a.clone()))
        };
        let (input, triggers) = (value(&r.input)?, value(&r.triggers_replace)?);
        let norm = |v: Option<Value>| v.filter(|x| !x.is_null());
        let (input, triggers) = (norm(input), norm(triggers));
        let (action, reason) = match &prior {
            _ if self.mode == Mode::RefreshOnly => (Action::NoOp, None),
            None => (Action::Create, None),
            Some(p) if p.tainted => (Action::Replace, Some("replace_because_tainted")),
            Some(p) if p.vals.triggers != triggers => {
                (Action::Replace, Some("replace_because_cannot_update"))
            }
            Some(p) if p.vals.input != input => (Action::Update, None),
            Some(_) => (Action::NoOp, None),
        };
        let marks = config_marks(self.module, r, &input, &triggers);
        let after = match (action, &prior) {
            (Action::NoOp, Some(p)) => Some(Vals {
                marks,
                ..p.vals.clone()
            }),
            (Action::Update, Some(p)) => Some(Vals {
                id: p.vals.id.clone(),
                input: input.clone(),
                triggers: triggers.clone(),
                marks,
            }),
            _ => Some(Vals {
                id: json!(UNKNOWN),
                input: input.clone(),
                triggers: triggers.clone(),
                marks,
            }),
        };
        let here = addr(&r.name, key);
        let previous = self
            .moved
            .iter()
            .find(|(to, _)| *to == here)
            .map(|(_, from)| from.clone());
        Ok(Change {
            name: r.name.clone(),
            key: key.clone(),
            action,
            before: prior.as_ref().map(|p| p.vals.clone()),
            after,
            reason,
            previous,
        })
    }

    /// Instances in state no longer in configuration: destroyed, or forgotten if a `removed`
    /// block says not to destroy them.
    fn orphans(&self, recs: &[Rec], desired: &[InstanceAddr]) -> Vec<Change> {
        let mut orphans = Vec::new();
        if self.mode != Mode::RefreshOnly {
            for r in recs {
                if !desired.iter().any(|(n, k)| *n == r.name && *k == r.key) {
                    orphans.push(Change {
                        name: r.name.clone(),
                        key: r.key.clone(),
                        action: if self.module.forgets(&r.name) {
                            Action::Forget
                        } else {
                            Action::Delete
                        },
                        before: Some(r.vals.clone()),
                        after: None,
                        reason: Some("delete_because_no_resource_config"),
                        previous: None,
                    });
                }
            }
        }
        orphans
    }

    /// Evaluates the outputs into `out` (the first failure is its error).
    fn eval_outputs(&self, ctx: &hcl::eval::Context, out: &mut Outcome) {
        for o in &self.module.outputs {
            match eval::eval(&o.value, ctx) {
                Ok(v) => {
                    let v = eval::whole_output_unknown(&o.value, v);
                    out.outputs.insert(o.name.clone(), v);
                }
                Err(e) => {
                    if out.error.is_none() {
                        out.error = Some(
                            Diag::error("Invalid output value", e)
                                .with_address(format!("output.{}", o.name)),
                        );
                    }
                }
            }
        }
    }

    /// Evaluates every `check` block's assertions.
    fn run_checks(&self, ctx: &hcl::eval::Context) -> Vec<CheckResult> {
        let mut results = Vec::new();
        for (name, asserts) in &self.module.checks {
            let (mut unknown, mut problems) = (false, Vec::new());
            for (cond, msg) in asserts {
                if crate::lazy::touches_unknown(cond, ctx) {
                    unknown = true;
                    continue;
                }
                match eval::eval(cond, ctx) {
                    Ok(Value::Bool(true)) => {}
                    Ok(v) if eval::is_unknown(&v) => unknown = true,
                    _ => problems.push(match eval::eval(msg, ctx) {
                        Ok(Value::String(s)) => s,
                        Ok(other) => other.to_string(),
                        Err(e) => e,
                    }),
                }
            }
            let status = match (problems.is_empty(), unknown) {
                (false, _) => "fail",
                (true, true) => "unknown",
                (true, false) => "pass",
            };
            results.push(CheckResult {
                name: name.clone(),
                status,
                problems,
            });
        }
        results
    }

    fn execute(
        &self,
        c: &Change,
        recs: &mut Vec<Rec>,
        resources: &Map<String, Value>,
        fail_at: &Option<String>,
        crash_at: &Option<String>,
        delay: Option<Duration>,
    ) -> Result<(), Option<Diag>> {
        if c.action == Action::Forget {
            recs.retain(|r| !(r.name == c.name && r.key == c.key));
            return Ok(());
        }
        let decl = self.module.resources.iter().find(|r| r.name == c.name);
        let each = recs
            .iter()
            .find(|r| r.name == c.name)
            .and_then(|r| r.each.clone());
        match decl {
            Some(d) => self.execute_with_ctx(
                c,
                recs,
                d,
                &json!({}),
                resources,
                fail_at,
                crash_at,
                delay,
                &each,
            ),
            None => {
                let empty = ResourceDecl {
                    name: c.name.clone(),
                    input: None,
                    triggers_replace: None,
                    count: None,
                    for_each: None,
                    provisioners: vec![],
                    deps: vec![],
                    data_deps: vec![],
                    text: String::new(),
                };
                self.execute_with_ctx(
                    c,
                    recs,
                    &empty,
                    &json!({}),
                    resources,
                    fail_at,
                    crash_at,
                    delay,
                    &each,
                )
            }
        }
    }

    /// Carries out one change. `Err(None)` = stopped by an interrupt before/while working.
    #[allow(clippy::too_many_arguments)]
    fn execute_with_ctx(
        &self,
        c: &Change,
        recs: &mut Vec<Rec>,
        r: &ResourceDecl,
        extra: &Value,
        resources: &Map<String, Value>,
        fail_at: &Option<String>,
        crash_at: &Option<String>,
        delay: Option<Duration>,
        each: &Option<String>,
    ) -> Result<(), Option<Diag>> {
        if c.action == Action::NoOp {
            return Ok(());
        }
        if signals::interrupted() {
            signals::announce();
            return Err(None);
        }
        let a = c.addr();
        let ro = res_obj(&c.name, &c.key);
        if crash_at.as_deref() == Some(a.as_str()) {
            eprintln!("panic: injected crash at {a} (TOFU_DOUBLE_CRASH_AT)\n\nOpenTofu crashed! This is always indicative of a bug within OpenTofu.");
            crate::trace_exit(11);
            std::process::exit(11);
        }
        let phases: Vec<Action> = match c.action {
            Action::Replace => vec![Action::Delete, Action::Create],
            x => vec![x],
        };
        for phase in phases {
            self.announce_start(c, &a, &ro, phase);
            let started = Instant::now();
            if phase == Action::Delete {
                if let Some(before) = &c.before {
                    for p in r.provisioners.iter().filter(|p| p.when_destroy) {
                        self.provision(&a, &ro, p, before, extra, resources)
                            .map_err(Some)?;
                    }
                }
            }
            self.delay_or_fail(&a, &ro, phase, started, delay, fail_at)?;
            if phase == Action::Delete {
                recs.retain(|x| !(x.name == c.name && x.key == c.key));
                self.complete(&a, &ro, phase, started, None);
                continue;
            }
            let vals = record(c, phase, recs, each);
            // Creation provisioners run before the resource counts as created, so their
            // messages come before `apply_complete` (or `apply_errored`).
            if phase == Action::Create {
                for p in r.provisioners.iter().filter(|p| !p.when_destroy) {
                    if let Err(d) = self.provision(&a, &ro, p, &vals, extra, resources) {
                        let rec = recs.iter_mut().find(|x| x.name == c.name && x.key == c.key);
                        if let Some(rec) = rec {
                            rec.tainted = true;
                        }
                        self.errored(&a, &ro, phase, started);
                        return Err(Some(d));
                    }
                }
            }
            let id = vals.id.as_str().unwrap_or_default();
            self.complete(&a, &ro, phase, started, Some(id));
        }
        self.checkpoint(recs);
        Ok(())
    }

    /// `apply_start` (with the id of what exists) for one phase of a change.
    fn announce_start(&self, c: &Change, a: &str, ro: &Value, phase: Action) {
        let verb = match phase {
            Action::Create => "Creating...",
            Action::Update => "Modifying...",
            _ => "Destroying...",
        };
        let idv = c
            .before
            .as_ref()
            .map(|b| b.id.clone())
            .filter(|_| phase != Action::Create);
        let mut start_hook = json!({"resource": ro, "action": phase.ui()});
        if let Some(id) = &idv {
            start_hook["id_key"] = json!("id");
            start_hook["id_value"] = id.clone();
        }
        let suffix = idv
            .as_ref()
            .and_then(Value::as_str)
            .map(|i| format!(" [id={i}]"))
            .unwrap_or_default();
        let msg = format!("{a}: {verb}{suffix}");
        self.ui
            .line("info", "apply_start", &msg, json!({"hook": start_hook}));
        self.ui.human(&msg);
    }

    /// The hooks' delay (with `apply_progress` every 10 s, stopping on an interrupt) and
    /// injected failure.
    fn delay_or_fail(
        &self,
        a: &str,
        ro: &Value,
        phase: Action,
        started: Instant,
        delay: Option<Duration>,
        fail_at: &Option<String>,
    ) -> Result<(), Option<Diag>> {
        if let Some(d) = delay {
            let end = started + d;
            let mut next_progress = started + Duration::from_secs(10);
            while Instant::now() < end {
                if signals::interrupted() {
                    signals::announce();
                    self.errored(a, ro, phase, started);
                    return Err(None);
                }
                if Instant::now() >= next_progress {
                    let el = started.elapsed().as_secs();
                    let still = match phase {
                        Action::Create => "Still creating...",
                        Action::Update => "Still modifying...",
                        _ => "Still destroying...",
                    };
                    self.ui.line("info", "apply_progress", &format!("{a}: {still} [{el}s elapsed]"), json!({"hook": {"resource": ro, "action": phase.ui(), "elapsed_seconds": el}}));
                    next_progress += Duration::from_secs(10);
                }
                std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
            }
        }
        if fail_at.as_deref() == Some(a) {
            self.errored(a, ro, phase, started);
            let d = Diag::error(
                "Injected failure",
                format!("TOFU_DOUBLE_FAIL_AT={a} made this resource fail."),
            );
            return Err(Some(d.with_address(a.to_string())));
        }
        Ok(())
    }

    /// `apply_complete` for one phase (with the id of what now exists).
    fn complete(&self, a: &str, ro: &Value, phase: Action, started: Instant, id: Option<&str>) {
        let el = started.elapsed().as_secs();
        let done = match phase {
            Action::Create => "Creation complete",
            Action::Update => "Modifications complete",
            _ => "Destruction complete",
        };
        let (msg, hook) = match id {
            None => (
                format!("{a}: {done} after {el}s"),
                json!({"resource": ro, "action": "delete", "elapsed_seconds": el}),
            ),
            Some(ids) => (
                format!("{a}: {done} after {el}s [id={ids}]"),
                json!({"resource": ro, "action": phase.ui(), "id_key": "id", "id_value": ids, "elapsed_seconds": el}),
            ),
        };
        self.ui
            .line("info", "apply_complete", &msg, json!({ "hook": hook }));
        self.ui.human(&msg);
    }

    /// True when the provisioner's configuration refers to a sensitive value.
    fn sensitive_config(&self, p: &Provisioner) -> bool {
        let exprs = [
            Some(&p.command),
            p.environment.as_ref(),
            p.working_dir.as_ref(),
        ];
        let exprs = exprs.into_iter().chain([p.interpreter.as_ref()]).flatten();
        exprs
            .map(config::expr_text)
            .any(|t| self.module.refers_to_sensitive(&t))
    }

    /// Writes the state so far when the persist interval has passed.
    fn checkpoint(&self, recs: &[Rec]) {
        let Some(p) = self.persist else { return };
        if p.last.get().elapsed() < p.interval {
            return;
        }
        let outputs = self
            .prior
            .iter()
            .flat_map(|st| st.outputs.iter().map(|(k, o)| (k.clone(), o.value.clone())))
            .collect();
        let partial = Outcome {
            changes: Vec::new(),
            outputs,
            checks: Vec::new(),
            recs: recs.to_vec(),
            error: None,
            interrupted: false,
            data: Vec::new(),
        };
        (p.write)(&partial);
        p.last.set(Instant::now());
    }

    fn errored(&self, a: &str, ro: &Value, phase: Action, started: Instant) {
        let el = started.elapsed().as_secs();
        let verb = match phase {
            Action::Create => "Creation",
            Action::Update => "Modifications",
            _ => "Destruction",
        };
        self.ui.line(
            "error",
            "apply_errored",
            &format!("{a}: {verb} errored after {el}s"),
            json!({"hook": {"resource": ro, "action": phase.ui(), "elapsed_seconds": el}}),
        );
    }

    /// Runs one local-exec provisioner, streaming its output.
    fn provision(
        &self,
        a: &str,
        ro: &Value,
        p: &Provisioner,
        me: &Vals,
        extra: &Value,
        resources: &Map<String, Value>,
    ) -> Result<(), Diag> {
        let mut ctx = self.scope_ctx(resources);
        ctx.declare_var("self", eval::to_hcl(&me.object()));
        if let Value::Object(o) = extra {
            for (k, v) in o {
                ctx.declare_var(k.as_str(), eval::to_hcl(v));
            }
        }
        let perr =
            |e: String| Diag::error("local-exec provisioner error", e).with_address(a.to_string());
        let run = LocalExec::evaluate(p, &ctx).map_err(perr)?;
        self.ui.line(
            "info",
            "provision_start",
            &format!("{a}: Provisioning with 'local-exec'..."),
            json!({"hook": {"resource": ro, "provisioner": "local-exec"}}),
        );
        self.ui
            .human(&format!("{a}: Provisioning with 'local-exec'..."));
        // A provisioner whose configuration holds a sensitive value shows none of its output
        // (its failure's diagnostic still does, as the real binary's does).
        let suppressed = self.sensitive_config(p);
        let progress = |line: &str| {
            let shown = if suppressed { SUPPRESSED } else { line };
            self.ui.line(
                "info",
                "provision_progress",
                &format!("{a}: (local-exec): {shown}"),
                json!({"hook": {"resource": ro, "provisioner": "local-exec", "output": shown}}),
            );
            self.ui.human(&format!("{a} (local-exec): {shown}"));
        };
        // Go's `%q` of a string slice: `["/bin/sh" "-c" "echo hi"]`.
        let argv: Vec<String> = run
            .interpreter
            .iter()
            .chain([&run.command])
            .map(|w| crate::strfmt::quote(w))
            .collect();
        progress(&format!("Executing: [{}]", argv.join(" ")));
        let command = run.command.clone();
        let child = run.spawn().map_err(perr)?;
        let (status, output, killed) = wait_with_output(child, &progress);
        let hook = json!({"hook": {"resource": ro, "provisioner": "local-exec"}});
        if status.success() && !killed {
            let done = format!("{a}: (local-exec) Provisioning complete");
            self.ui.line("info", "provision_complete", &done, hook);
            return Ok(());
        }
        let failed = format!("{a}: (local-exec) Provisioning errored");
        self.ui.line("error", "provision_errored", &failed, hook);
        if p.on_failure_continue && !killed {
            return Ok(());
        }
        let why = exit_reason(killed, status)
            .map_err(|e| perr(format!("Error running command '{command}': {e}")))?;
        Err(perr(format!(
            "Error running command '{command}': {why}. Output: {output}"
        )))
    }
}

/// A `local-exec` provisioner's configuration, evaluated.
struct LocalExec {
    command: String,
    interpreter: Vec<String>,
    env: Map<String, Value>,
    working_dir: Option<String>,
}

impl LocalExec {
    fn evaluate(p: &Provisioner, ctx: &hcl::eval::Context) -> Result<LocalExec, String> {
        let text = |v: Value| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        };
        let command = text(eval::eval(&p.command, ctx)?);
        let interpreter: Vec<String> = match &p.interpreter {
            Some(e) => eval::eval(e, ctx)?
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            None => vec!["/bin/sh".into(), "-c".into()],
        };
        let env = match &p.environment {
            Some(e) => eval::eval(e, ctx)?.as_object().cloned().unwrap_or_default(),
            None => Map::new(),
        };
        let working_dir = match &p.working_dir {
            Some(e) => eval::eval(e, ctx)?.as_str().map(str::to_string),
            None => None,
        };
        Ok(LocalExec {
            command,
            interpreter,
            env,
            working_dir,
        })
    }

    /// Starts the command with its output piped.
    fn spawn(self) -> Result<std::process::Child, String> {
        let Some((prog, args)) = self.interpreter.split_first() else {
            return Err("empty interpreter".into());
        };
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args)
            .arg(&self.command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in &self.env {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            cmd.env(k, v);
        }
        if let Some(w) = &self.working_dir {
            cmd.current_dir(w);
        }
        cmd.spawn()
            .map_err(|e| format!("Error running command '{}': {e}", self.command))
    }
}

/// Reads a child's stdout and stderr line by line (each shown through `progress`) until it
/// exits, killing it on an interrupt; its status, its output and whether it was killed.
fn wait_with_output(
    mut child: std::process::Child,
    progress: &dyn Fn(&str),
) -> (std::process::ExitStatus, String, bool) {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let pipes = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let (mut status, mut output) = (None, String::new());
    let (mut exited_at, mut killed): (Option<Instant>, bool) = (None, false);
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                progress(&line);
                output.push_str(&line);
                output.push('\n');
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if status.is_some() => break,
            Err(_) => {}
        }
        if status.is_none() {
            if signals::interrupted() && !killed {
                signals::announce();
                let _ = child.kill();
                killed = true;
            }
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                exited_at = Some(Instant::now());
            }
        } else if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            // A background child still holds the pipe: stop reading, as Go's WaitDelay does.
            break;
        }
    }
    let status = status.unwrap_or_else(|| child.wait().expect("wait"));
    (status, output, killed)
}

/// Go's exec error text for a failed command, as real OpenTofu prints it (`Err` for a signal
/// Go names only by number).
fn exit_reason(killed: bool, status: std::process::ExitStatus) -> Result<String, String> {
    use std::os::unix::process::ExitStatusExt;
    Ok(match (killed, status.signal()) {
        (true, _) => "signal: killed".to_string(),
        (false, Some(sig)) => format!(
            "signal: {}",
            match sig {
                9 => "killed",
                11 => "segmentation fault",
                15 => "terminated",
                24 => "CPU time limit exceeded",
                25 => "file size limit exceeded",
                n => return Err(format!("signal {n}")),
            }
        ),
        (false, None) => format!("exit status {}", status.code().unwrap_or(-1)),
    })
}

/// Records a created or updated instance (a new id when created) in place of its old record.
fn record(c: &Change, phase: Action, recs: &mut Vec<Rec>, each: &Option<String>) -> Vals {
    let after = c.after.clone().unwrap_or(Vals {
        id: Value::Null,
        input: None,
        triggers: None,
        marks: Value::Null,
    });
    let id = if phase == Action::Create {
        json!(uuid::Uuid::new_v4().to_string())
    } else {
        after.id.clone()
    };
    let vals = Vals { id, ..after };
    recs.retain(|x| !(x.name == c.name && x.key == c.key));
    recs.push(Rec {
        name: c.name.clone(),
        key: c.key.clone(),
        vals: vals.clone(),
        tainted: false,
        each: each.clone(),
    });
    vals
}

/// An instance as references see it while planning: a changing resource's computed `output`
/// is unknown.
fn planned_object(change: &Change) -> Value {
    let mut o = change
        .after
        .as_ref()
        .map(Vals::object)
        .unwrap_or(Value::Null);
    if change.action != Action::NoOp && o.is_object() {
        o["output"] = eval::unknown_like(&o["input"]);
    }
    o
}

fn halted() -> Diag {
    Diag::error("execution halted", "")
}

/// The state an apply leaves: prior serial/lineage carried, serial + 1 only when content changed.
/// A `terraform_data` resource as state records it: its instances by key, with their marks and
/// every dependency.
fn managed_resource(m: &Module, n: &str, recs: &[Rec]) -> Resource {
    let mut insts: Vec<&Rec> = recs.iter().filter(|r| r.name == n).collect();
    insts.sort_by(|a, b| {
        a.key
            .as_ref()
            .map(|k| k.to_string())
            .cmp(&b.key.as_ref().map(|k| k.to_string()))
    });
    let deps = all_dependencies(m, n);
    Resource {
        module: None,
        mode: "managed".into(),
        typ: "terraform_data".into(),
        name: n.to_string(),
        each: insts.first().and_then(|r| r.each.clone()),
        provider: state::PROVIDER.into(),
        instances: insts
            .iter()
            .map(|r| Instance {
                index_key: r.key.clone(),
                status: r.tainted.then(|| "tainted".to_string()),
                schema_version: 0,
                attributes: json!({
                    "id": r.vals.id,
                    "input": state::wrap_dynamic(&r.vals.input),
                    "output": state::wrap_dynamic(&r.vals.input),
                    "triggers_replace": state::wrap_dynamic(&r.vals.triggers),
                }),
                sensitive_attributes: r
                    .vals
                    .marks
                    .as_object()
                    .into_iter()
                    .flatten()
                    .flat_map(|(attr, mark)| sensitivity::paths(attr, mark))
                    .collect(),
                dependencies: deps.clone(),
            })
            .collect(),
    }
}

pub fn new_state(
    prior: &Option<StateFile>,
    out: &Outcome,
    m: &Module,
    mode: Mode,
) -> Option<StateFile> {
    let order: Vec<&str> = m.resources.iter().map(|r| r.name.as_str()).collect();
    let mut names: Vec<String> = Vec::new();
    for r in &out.recs {
        if !names.contains(&r.name) {
            names.push(r.name.clone());
        }
    }
    names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    let data = if mode == Mode::Destroy {
        Vec::new()
    } else {
        remote_state::state_resources(&out.data)
    };
    let managed = names.iter().map(|n| managed_resource(m, n, &out.recs));
    let resources = data.into_iter().chain(managed).collect();
    let outputs = if mode == Mode::Destroy {
        Default::default()
    } else {
        m.outputs
            .iter()
            .filter_map(|o| {
                let v = out.outputs.get(&o.name)?;
                Some((
                    o.name.clone(),
                    StateOutput {
                        value: v.clone(),
                        typ: output_type(m, &o.name, v),
                        sensitive: o.sensitive,
                    },
                ))
            })
            .collect()
    };
    let mut st = StateFile {
        version: 4,
        terraform_version: ui::VERSION.into(),
        serial: prior.as_ref().map(|p| p.serial).unwrap_or(0),
        lineage: prior
            .as_ref()
            .map(|p| p.lineage.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        outputs,
        resources,
        check_results: None,
    };
    match prior {
        Some(p) if p.same_content(&st) => None,
        None if st.resources.is_empty() && st.outputs.is_empty() => None,
        _ => {
            st.serial += 1;
            Some(st)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting a plan

pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub forget: usize,
}

impl Summary {
    /// OpenTofu's `, N to forget` (`forgotten` after an apply) when anything is forgotten.
    pub fn forgets(&self, word: &str) -> String {
        if self.forget == 0 {
            String::new()
        } else {
            format!(", {} {word}", self.forget)
        }
    }
}

pub fn summary(changes: &[Change]) -> Summary {
    let mut s = Summary {
        add: 0,
        change: 0,
        remove: 0,
        forget: 0,
    };
    for c in changes {
        match c.action {
            Action::Create => s.add += 1,
            Action::Update => s.change += 1,
            Action::Replace => {
                s.add += 1;
                s.remove += 1
            }
            Action::Delete => s.remove += 1,
            Action::Forget => s.forget += 1,
            Action::NoOp => {}
        }
    }
    s
}

/// Output changes between prior state and planned values.
pub fn output_changes(
    m: &Module,
    prior: &Option<StateFile>,
    outputs: &Map<String, Value>,
    mode: Mode,
) -> Vec<OutputChange> {
    let mut out = Vec::new();
    let before = |n: &str| {
        prior
            .as_ref()
            .and_then(|p| p.outputs.get(n))
            .map(|o| o.value.clone())
    };
    for o in &m.outputs {
        let b = before(&o.name);
        let a = if mode == Mode::Destroy {
            None
        } else {
            outputs.get(&o.name).cloned()
        };
        let action = match (&b, &a) {
            (None, Some(_)) => "create",
            (Some(_), None) => "delete",
            (Some(x), Some(y)) if x != y => "update",
            (None, None) => continue,
            _ => "no-op",
        };
        // The change is sensitive if either side is: a value state recorded as sensitive
        // stays masked in the plan that makes it plain.
        let was = prior
            .as_ref()
            .and_then(|p| p.outputs.get(&o.name))
            .is_some_and(|p| p.sensitive);
        out.push((o.name.clone(), action, b, a, o.sensitive || was));
    }
    if let Some(p) = prior {
        for (n, o) in &p.outputs {
            if !m.outputs.iter().any(|d| &d.name == n) {
                out.push((
                    n.clone(),
                    "delete",
                    Some(o.value.clone()),
                    None,
                    o.sensitive,
                ));
            }
        }
    }
    out
}

pub fn has_changes(changes: &[Change], outs: &[OutputChange]) -> bool {
    changes
        .iter()
        .any(|c| c.action != Action::NoOp || c.previous.is_some())
        || outs.iter().any(|o| o.1 != "no-op")
}

fn rc_values(v: &Vals) -> (Value, Value) {
    eval::split_unknown(&v.object())
}

/// The sensitivity mirror of a `terraform_data` object (nothing is sensitive in the stand-in);
/// an unknown `output` has the shape of `input`: `{}` or `[]` for collections, else nothing.
fn sensitive_of(obj: &Value, marks: &Value) -> Value {
    let mut m = eval::sensitive_mirror(obj);
    for attr in ["input", "triggers_replace"] {
        sensitivity::overlay(&mut m, attr, &marks[attr]);
    }
    let dynamic = obj["input"] == json!(eval::UNKNOWN_DYNAMIC);
    if dynamic {
        if let Some(o) = m.as_object_mut() {
            o.insert("input".into(), json!({}));
        }
    }
    if eval::is_unknown(&obj["output"]) {
        let shape = match &obj["input"] {
            Value::Object(_) => Some(json!({})),
            Value::Array(_) => Some(json!([])),
            _ if dynamic => Some(json!({})),
            _ => None,
        };
        if let (Some(o), Some(shape)) = (m.as_object_mut(), shape) {
            o.insert("output".into(), shape);
        }
    }
    m
}

/// The cty type of an output's value: a variable's declared type when the output is that
/// variable (`value = var.pool`), else the type of the value itself (a tuple for a list, an
/// object for a map: the stand-in does not carry types through expressions).
pub fn output_type(m: &Module, name: &str, v: &Value) -> Value {
    let declared = m
        .outputs
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| {
            config::expr_text(&o.value)
                .trim()
                .strip_prefix("var.")
                .map(str::to_string)
        })
        .and_then(|var| m.variables.iter().find(|d| d.name == var))
        .and_then(|d| d.type_expr.as_deref())
        .and_then(|t| crate::types::parse(t).ok());
    match declared {
        Some(ty) => crate::types::cty_json(&ty, v),
        None => eval::cty_type(v),
    }
}

/// Everything a resource depends on, directly or through others, sorted, as state records it.
fn all_dependencies(m: &Module, name: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        let direct = m.resources.iter().find(|r| r.name == n).map(|r| &r.deps);
        for d in direct.into_iter().flatten() {
            if d != name && !found.contains(d) {
                found.push(d.clone());
                todo.push(d.clone());
            }
        }
    }
    let data = std::iter::once(name)
        .chain(found.iter().map(String::as_str))
        .filter_map(|n| m.resources.iter().find(|r| r.name == n))
        .flat_map(|r| r.data_deps.iter())
        .map(|d| format!("data.terraform_remote_state.{d}"));
    let mut deps: Vec<String> = found
        .iter()
        .map(|d| format!("terraform_data.{d}"))
        .chain(data)
        .collect();
    deps.dedup();
    deps.sort();
    deps
}

/// The order of resource instance addresses: by resource name, then instance key (numbers
/// before strings).
fn address_order(a: &str, ka: &Option<Value>, b: &str, kb: &Option<Value>) -> std::cmp::Ordering {
    let key = |k: &Option<Value>| match k {
        Some(Value::Number(n)) => (0, n.as_f64().unwrap_or(0.0), String::new()),
        Some(Value::String(s)) => (1, 0.0, s.clone()),
        _ => (0, -1.0, String::new()),
    };
    let (ka, kb) = (key(ka), key(kb));
    (a, ka.0, &ka.2)
        .cmp(&(b, kb.0, &kb.2))
        .then(ka.1.total_cmp(&kb.1))
}

/// Changes in the order `jsonplan` writes them (by address).
fn sorted_by_address(changes: &[Change]) -> Vec<&Change> {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| address_order(&a.name, &a.key, &b.name, &b.key));
    sorted
}

/// The state in `show -json` shape (`jsonstate`, format 1.0): resources by address, with
/// `depends_on`; no `outputs` or `resources` key when there are none.
pub fn state_json(st: &Option<StateFile>) -> Value {
    let Some(st) = st else {
        return json!({"format_version": "1.0"});
    };
    let outputs: Map<String, Value> = st
        .outputs
        .iter()
        .map(|(k, o)| {
            (
                k.clone(),
                json!({"sensitive": o.sensitive, "value": o.value, "type": o.typ}),
            )
        })
        .collect();
    let mut instances: Vec<(&Resource, &Instance)> = st
        .resources
        .iter()
        .flat_map(|r| r.instances.iter().map(move |i| (r, i)))
        .collect();
    instances.sort_by(|(ra, ia), (rb, ib)| {
        (ra.mode != "data")
            .cmp(&(rb.mode != "data"))
            .then_with(|| address_order(&ra.name, &ia.index_key, &rb.name, &ib.index_key))
    });
    let resources: Vec<Value> = instances
        .into_iter()
        .map(|(r, i)| match r.mode.as_str() {
            "data" => remote_state::instance_json(r, i),
            _ => instance_json(r, i),
        })
        .collect();
    let mut values = json!({ "root_module": {} });
    if !resources.is_empty() {
        values["root_module"]["resources"] = Value::Array(resources);
    }
    if !outputs.is_empty() {
        values["outputs"] = Value::Object(outputs);
    }
    json!({"format_version": "1.0", "terraform_version": st.terraform_version, "values": values})
}

/// One instance in `jsonstate` shape.
fn instance_json(r: &Resource, i: &Instance) -> Value {
    let attr = |k: &str| state::unwrap_dynamic(i.attributes.get(k)).unwrap_or(Value::Null);
    let mut x = json!({
        "address": addr(&r.name, &i.index_key), "mode": r.mode, "type": r.typ, "name": r.name,
        "provider_name": "terraform.io/builtin/terraform", "schema_version": i.schema_version,
        "values": {
            "id": i.attributes.get("id").cloned().unwrap_or(Value::Null),
            "input": attr("input"),
            "output": attr("output"),
            "triggers_replace": attr("triggers_replace"),
        },
    });
    let marks = state_vals(&i.attributes, &i.sensitive_attributes).marks;
    x["sensitive_values"] = sensitive_of(&x["values"], &marks);
    if let Some(k) = &i.index_key {
        x["index"] = k.clone();
    }
    if i.status.as_deref() == Some("tainted") {
        x["tainted"] = json!(true);
    }
    if !i.dependencies.is_empty() {
        x["depends_on"] = json!(i.dependencies);
    }
    x
}

/// The plan in `show -json` shape (`jsonplan`, format 1.2).
/// An output's entry in `output_changes`.
fn output_change_json((n, act, b, a, s): &OutputChange) -> (String, Value) {
    let mut ch = json!({"actions": [act], "before": b.clone().unwrap_or(Value::Null), "after_unknown": false, "before_sensitive": s, "after_sensitive": s});
    match a.as_ref().map(eval::split_unknown) {
        // A wholly unknown value has no `after` at all (not `null`); a partly
        // unknown one has `null` where it is unknown, mirrored in `after_unknown`.
        Some((_, unk)) if unk == json!(true) => ch["after_unknown"] = unk,
        Some((known, unk)) => {
            ch["after"] = known;
            ch["after_unknown"] = if eval::is_unknown(a.as_ref().unwrap_or(&Value::Null)) {
                unk
            } else {
                json!(false)
            };
        }
        None => ch["after"] = Value::Null,
    }
    (n.clone(), ch)
}

/// The outline of the configuration `show -json` echoes (see the allow-list).
fn configuration_json(m: &Module) -> Value {
    let cfg_resources: Vec<Value> = m
        .resources
        .iter()
        .map(|r| json!({"address": format!("terraform_data.{}", r.name), "mode": "managed", "type": "terraform_data", "name": r.name, "provider_config_key": "terraform", "schema_version": 0}))
        .collect();
    let cfg_outputs: Map<String, Value> = m
        .outputs
        .iter()
        .map(|o| (o.name.clone(), json!({"sensitive": o.sensitive})))
        .collect();
    let cfg_vars: Map<String, Value> = m
        .variables
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                if v.sensitive {
                    json!({"sensitive": true})
                } else {
                    json!({})
                },
            )
        })
        .collect();
    json!({"provider_config": {"terraform": {"name": "terraform", "full_name": "terraform.io/builtin/terraform"}}, "root_module": {"resources": cfg_resources, "outputs": cfg_outputs, "variables": cfg_vars}})
}

/// One change in `show -json` shape: its resource in `planned_values` (if any) and its
/// `resource_changes` entry.
fn change_json(c: &Change) -> (Option<Value>, Value) {
    let a = c.addr();
    // `output` is computed: unknown until apply whenever the resource changes.
    let marks = c
        .after
        .as_ref()
        .map(|x| x.marks.clone())
        .unwrap_or(Value::Null);
    let planned = c.after.as_ref().map(|x| {
        let mut planned = x.object();
        if c.action != Action::NoOp {
            planned["output"] = json!(UNKNOWN);
        }
        planned
    });
    let mut planned_value = None;
    if let Some(planned) = &planned {
        let (vals, _) = eval::split_unknown(planned);
        let mut r = json!({"address": a, "mode": "managed", "type": "terraform_data", "name": c.name, "provider_name": "terraform.io/builtin/terraform", "schema_version": 0, "values": vals, "sensitive_values": sensitive_of(planned, &marks)});
        if let Some(k) = &c.key {
            r["index"] = k.clone();
        }
        planned_value = Some(r);
    } else if c.action == Action::Forget {
        // The real binary lists a forgotten instance with no values.
        let mut r = json!({"address": a, "mode": "managed", "type": "terraform_data", "name": c.name, "provider_name": "terraform.io/builtin/terraform", "schema_version": 0, "sensitive_values": false});
        if let Some(k) = &c.key {
            r["index"] = k.clone();
        }
        planned_value = Some(r);
    }
    let (before, before_s) = match &c.before {
        Some(b) => (rc_values(b).0, sensitive_of(&b.object(), &b.marks)),
        None => (Value::Null, json!(false)),
    };
    let (after, after_unknown, after_s) = match &planned {
        Some(p) => {
            let (v, u) = eval::split_unknown(p);
            // A wholly known value has `{}`, not a mirror of `false`s.
            let u = if eval::is_unknown(p) { u } else { json!({}) };
            (v, u, sensitive_of(p, &marks))
        }
        None => (Value::Null, json!({}), json!(false)),
    };
    let mut change = json!({"actions": c.action.actions(), "before": before, "after": after, "after_unknown": after_unknown, "before_sensitive": before_s, "after_sensitive": after_s});
    if c.action == Action::Replace && c.reason == Some("replace_because_cannot_update") {
        change["replace_paths"] = json!([["triggers_replace"]]);
    }
    let mut rc = json!({"address": a, "mode": "managed", "type": "terraform_data", "name": c.name, "provider_name": "terraform.io/builtin/terraform", "change": change});
    if let Some(k) = &c.key {
        rc["index"] = k.clone();
    }
    if let Some(r) = c.reason {
        rc["action_reason"] = json!(r);
    }
    if let Some(p) = &c.previous {
        rc["previous_address"] = json!(p);
    }
    (planned_value, rc)
}

pub fn plan_json(
    m: &Module,
    vars: &Map<String, Value>,
    prior: &Option<StateFile>,
    out: &Outcome,
    mode: Mode,
    errored: bool,
) -> Value {
    let mut doc = Map::new();
    doc.insert("format_version".into(), json!("1.2"));
    doc.insert("terraform_version".into(), json!(ui::VERSION));
    if !vars.is_empty() {
        doc.insert(
            "variables".into(),
            Value::Object(
                vars.iter()
                    .map(|(k, v)| (k.clone(), json!({"value": v})))
                    .collect(),
            ),
        );
    }
    let outs = output_changes(m, prior, &out.outputs, mode);
    let mut pv_outputs = Map::new();
    for (n, _, _, a, sens) in &outs {
        if let Some(a) = a {
            let mut o = json!({"sensitive": sens});
            if !eval::is_unknown(a) {
                o["value"] = a.clone();
                o["type"] = output_type(m, n, a);
            }
            pv_outputs.insert(n.clone(), o);
        }
    }
    let mut pv_res = Vec::new();
    let mut rcs = Vec::new();
    for c in sorted_by_address(&out.changes) {
        let (planned, rc) = change_json(c);
        pv_res.extend(planned);
        rcs.push(rc);
    }
    let root = if pv_res.is_empty() {
        json!({})
    } else {
        json!({ "resources": pv_res })
    };
    let mut planned_values = json!({ "root_module": root });
    if !pv_outputs.is_empty() {
        planned_values["outputs"] = Value::Object(pv_outputs);
    }
    doc.insert("planned_values".into(), planned_values);
    if !rcs.is_empty() {
        doc.insert("resource_changes".into(), Value::Array(rcs));
    }
    if !outs.is_empty() {
        let oc = outs.iter().map(output_change_json).collect();
        doc.insert("output_changes".into(), Value::Object(oc));
    }
    doc.insert("configuration".into(), configuration_json(m));
    doc.insert(
        "timestamp".into(),
        json!(ui::rfc3339_secs(SystemTime::now())),
    );
    doc.insert("errored".into(), json!(errored));
    let changed: Vec<String> = out
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| c.name.clone())
        .collect();
    let applyable = !errored && has_changes(&out.changes, &outs);
    jsonplan::complete_doc(&mut doc, m, prior, out, &changed, &outs, applyable);
    Value::Object(doc)
}

/// The UI's resource object for an address (`terraform_data.n[0]`).
fn previous_resource(a: &str) -> Value {
    let rest = a.strip_prefix("terraform_data.").unwrap_or(a);
    let (name, key) = match rest.split_once('[') {
        Some((n, k)) => {
            let k = k.trim_end_matches(']');
            let key = k
                .parse::<i64>()
                .map(|i| json!(i))
                .unwrap_or_else(|_| json!(k.trim_matches('"')));
            (n, Some(key))
        }
        None => (rest, None),
    };
    res_obj(name, &key)
}

/// Applies `moved` blocks to the state read: the state the plan starts from and the moves made,
/// as (new address, previous address). A move whose source is not in state does nothing.
pub fn apply_moves(
    read: &Option<StateFile>,
    m: &Module,
) -> (Option<StateFile>, Vec<(String, String)>) {
    let Some(mut st) = read.clone() else {
        return (None, Vec::new());
    };
    let mut moved = Vec::new();
    for (from, to) in &m.moves {
        let Some(ri) = st.resources.iter().position(|r| r.name == from.name) else {
            continue;
        };
        if from.key.is_none() {
            if st.resources.iter().any(|r| r.name == to.name) {
                continue;
            }
            let r = &mut st.resources[ri];
            r.name = to.name.clone();
            moved.extend(
                r.instances
                    .iter()
                    .map(|i| (addr(&to.name, &i.index_key), addr(&from.name, &i.index_key))),
            );
            continue;
        }
        let Some(ii) = st.resources[ri]
            .instances
            .iter()
            .position(|i| i.index_key == from.key)
        else {
            continue;
        };
        let mut inst = st.resources[ri].instances.remove(ii);
        if st.resources[ri].instances.is_empty() {
            st.resources.remove(ri);
        }
        inst.index_key = to.key.clone();
        let each = match &to.key {
            Some(Value::String(_)) => Some("map".to_string()),
            _ => Some("list".to_string()),
        };
        match st.resources.iter_mut().find(|r| r.name == to.name) {
            Some(r) => r.instances.push(inst),
            None => st.resources.push(Resource {
                module: None,
                mode: "managed".into(),
                typ: "terraform_data".into(),
                name: to.name.clone(),
                each,
                provider: state::PROVIDER.into(),
                instances: vec![inst],
            }),
        }
        moved.push((addr(&to.name, &to.key), addr(&from.name, &from.key)));
    }
    (Some(st), moved)
}

/// Emits `refresh_start` and `refresh_complete` for every instance in the prior state, as a
/// plan that refreshes does before it plans.
pub fn report_refresh(ui: &Ui, prior: &Option<StateFile>, m: &Module) {
    let Some(st) = prior else { return };
    // What a `removed` block forgets is not read again.
    let forgotten = |name: &str| m.forgets(name) && !m.resources.iter().any(|r| r.name == name);
    let managed = st.resources.iter().filter(|r| r.mode == "managed");
    for r in managed.filter(|r| !forgotten(&r.name)) {
        for i in &r.instances {
            let a = addr(&r.name, &i.index_key);
            let id = i.attributes.get("id").cloned().unwrap_or(Value::Null);
            let shown = id.as_str().unwrap_or_default().to_string();
            let hook =
                json!({"resource": res_obj(&r.name, &i.index_key), "id_key": "id", "id_value": id});
            let start = format!("{a}: Refreshing state... [id={shown}]");
            ui.line("info", "refresh_start", &start, json!({ "hook": hook }));
            ui.human(&start);
            let done = format!("{a}: Refresh complete [id={shown}]");
            ui.line("info", "refresh_complete", &done, json!({ "hook": hook }));
        }
    }
}

/// Warns, while planning, of the instances a `removed` block forgets.
pub fn report_forgets(ui: &Ui, changes: &[Change]) {
    let gone: Vec<String> = changes
        .iter()
        .filter(|c| c.action == Action::Forget)
        .map(|c| format!(" - {}", c.addr()))
        .collect();
    if !gone.is_empty() {
        ui.diag(&Diag::warning("Some objects will no longer be managed by OpenTofu", format!("If you apply this plan, OpenTofu will discard its tracking information for the following objects, but it will not delete them:\n{}\n\nAfter applying this plan, OpenTofu will no longer manage these objects. You will need to import them into OpenTofu to manage them again.", gone.join("\n"))));
    }
}

/// Warns, while planning, of the check blocks known only after apply, then of every failed
/// assertion (the real binary's order).
pub fn report_checks(ui: &Ui, checks: &[CheckResult]) {
    for _ in checks.iter().filter(|c| c.status == "unknown") {
        ui.diag(&Diag::warning("Check block assertion known after apply", "The condition could not be evaluated at this time, a result will be known when this plan is applied."));
    }
    for p in checks.iter().flat_map(|c| &c.problems) {
        ui.diag(&Diag::warning("Check block assertion failed", p.clone()));
    }
}

/// One change's `planned_change` line and its human form.
fn report_change(ui: &Ui, c: &Change) {
    let a = c.addr();
    let verb = match c.action {
        Action::NoOp => "move",
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Forget => "remove",
        Action::Delete => "delete",
    };
    let action = if c.action == Action::NoOp {
        "move"
    } else {
        c.action.ui()
    };
    let mut ch = json!({"resource": res_obj(&c.name, &c.key), "action": action});
    if let Some(p) = &c.previous {
        ch["previous_resource"] = previous_resource(p);
    }
    if let Some(r) = c.reason {
        ch["reason"] = json!(match r {
            "replace_because_tainted" => "tainted",
            "replace_because_cannot_update" => "cannot_update",
            x => x,
        });
    }
    ui.line(
        "info",
        "planned_change",
        &format!("{a}: Plan to {verb}"),
        json!({"change": ch}),
    );
    if c.action == Action::NoOp {
        ui.human(&format!(
            "  # {} has moved to {a}",
            c.previous.as_deref().unwrap_or("")
        ));
        return;
    }
    if c.action == Action::Forget {
        ui.human(&format!("  # {a} will no longer be managed by OpenTofu, but will not be destroyed\n  # (destroy = false is set in the configuration)"));
        return;
    }
    let sym = match c.action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        _ => "-",
    };
    ui.human(&format!(
        "  {sym} {a} will be {}",
        match c.action {
            Action::Create => "created",
            Action::Update => "updated in-place",
            Action::Replace => "replaced",
            _ => "destroyed",
        }
    ));
}

/// Emits the plan's `planned_change` lines, its summary and output actions.
pub fn report_plan(
    ui: &Ui,
    changes: &[Change],
    outs: &[OutputChange],
    mode: Mode,
    with_summary: bool,
) {
    for c in changes
        .iter()
        .filter(|c| c.action != Action::NoOp || c.previous.is_some())
    {
        report_change(ui, c);
    }
    if !with_summary {
        return;
    }
    let s = summary(changes);
    let op = if mode == Mode::Destroy {
        "destroy"
    } else {
        "plan"
    };
    let msg = format!(
        "Plan: {} to add, {} to change, {} to destroy{}.",
        s.add,
        s.change,
        s.remove,
        s.forgets("to forget")
    );
    ui.line("info", "change_summary", &msg, json!({"changes": {"add": s.add, "change": s.change, "import": 0, "remove": s.remove, "forget": s.forget, "operation": op}}));
    if has_changes(changes, outs) {
        ui.human(&format!("\n{msg}"));
    } else {
        ui.human("\nNo changes. Your infrastructure matches the configuration.");
    }
    let changed: Map<String, Value> = outs
        .iter()
        .filter(|o| o.1 != "no-op")
        .map(|(n, act, _, _, s)| (n.clone(), json!({"sensitive": s, "action": act})))
        .collect();
    if !changed.is_empty() {
        ui.line(
            "info",
            "outputs",
            &format!("Outputs: {}", changed.len()),
            json!({"outputs": changed}),
        );
    }
}
