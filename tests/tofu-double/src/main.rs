//! `tofu-double`: a stand-in for the part of OpenTofu's CLI that tofuflow drives, faithful to
//! `shared/reference/opentofu-contract.md`. See tests/tofu-double/README.md for the fault hooks.

mod args;
mod builtins;
mod cidr;
mod config;
mod datetime;
mod decimal;
mod engine;
mod eval;
mod fmt;
mod functions;
mod http;
mod jsonplan;
mod lazy;
mod planfile;
mod remote_state;
mod sensitivity;
mod signals;
mod state;
mod strfmt;
mod textenc;
mod types;
mod ui;

use args::Kind::{Bool, Repeat, Value as Val};
use engine::{Mode, Walk};
use serde_json::{json, Map, Value};
use state::{Backend, StateFile};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ui::{Diag, Ui};

fn main() {
    signals::install();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    trace("start", &argv, None);
    let code = run(argv);
    trace_exit(code);
    std::process::exit(code);
}

/// Appends one JSON line to `$TOFU_DOUBLE_TRACE` (tests count invocations with it).
fn trace(event: &str, argv: &[String], code: Option<i32>) {
    let Ok(path) = std::env::var("TOFU_DOUBLE_TRACE") else {
        return;
    };
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let line = json!({"event": event, "pid": std::process::id(), "args": argv, "cwd": cwd, "code": code, "ms": ms,
        "run": var("TOFUFLOW_RUN_ID"), "agent": var("TOFUFLOW_AGENT_NAME")});
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: several tofu processes append to the same file.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

pub fn trace_exit(code: i32) {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    trace("exit", &argv, Some(code));
}

fn sleep_hook(var: &str, cmd: &str) -> bool {
    let Ok(spec) = std::env::var(var) else {
        return true;
    };
    for part in spec.split(',') {
        if let Some((c, secs)) = part.split_once(':') {
            if c.trim() == cmd {
                if let Ok(s) = secs.trim().parse::<f64>() {
                    return signals::sleep(Duration::from_secs_f64(s));
                }
            }
        }
    }
    true
}

/// `-chdir` (applied here) and `-version` before the subcommand; the arguments left, or the exit
/// code when the directory cannot be entered.
fn global_options(argv: Vec<String>) -> Result<Vec<String>, i32> {
    let mut rest = argv;
    let mut chdir: Option<String> = None;
    while let Some(first) = rest.first() {
        if let Some(d) = first.strip_prefix("-chdir=") {
            chdir = Some(d.to_string());
            rest.remove(0);
        } else if first == "-version" || first == "--version" || first == "-v" {
            rest[0] = "version".into();
        } else {
            break;
        }
    }
    if let Some(d) = &chdir {
        if let Err(e) = std::env::set_current_dir(d) {
            eprintln!("Error handling -chdir option: chdir {d}: {e}");
            return Err(1);
        }
    }
    Ok(rest)
}

/// The command's words (`state pull`, `state push`, or one word) and its arguments.
fn command_words(cmd: &str, rest: Vec<String>) -> (Vec<&str>, Vec<String>) {
    match (cmd, rest.first().map(String::as_str)) {
        ("state", Some(sub)) => {
            let second = match sub {
                "pull" => "pull",
                "push" => "push",
                _ => "other",
            };
            (vec!["state", second], rest[1..].to_vec())
        }
        _ => (vec![cmd], rest),
    }
}

fn run(argv: Vec<String>) -> i32 {
    let mut rest = match global_options(argv) {
        Ok(rest) => rest,
        Err(code) => return code,
    };
    if rest.is_empty() {
        eprintln!("Usage: tofu [global options] <subcommand> [args]\n\nThis is tofu-double, a stand-in for OpenTofu {}.", ui::VERSION);
        return 127;
    }
    let cmd = rest.remove(0);
    ui::tf_log(
        "INFO",
        &format!("OpenTofu version: {} (tofu-double)", ui::VERSION),
    );
    ui::tf_log(
        "INFO",
        &format!(
            "CLI args: {:?}",
            std::iter::once(cmd.as_str())
                .chain(rest.iter().map(String::as_str))
                .collect::<Vec<_>>()
        ),
    );
    let (words, rest) = command_words(&cmd, rest);
    let args = match args::with_env_args(&words, rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Error: invalid TF_CLI_ARGS: {e}");
            return 1;
        }
    };
    let result = match words.as_slice() {
        ["version"] => cmd_version(&args),
        ["init"] => cmd_init(&args),
        ["validate"] => cmd_validate(&args),
        ["plan"] => cmd_plan(&args),
        ["apply"] => cmd_apply(&args, false),
        ["destroy"] => cmd_apply(&args, true),
        ["show"] => cmd_show(&args),
        ["output"] => cmd_output(&args),
        ["state", "pull"] => cmd_state_pull(&args),
        ["state", "push"] => cmd_state_push(&args),
        ["force-unlock"] => cmd_force_unlock(&args),
        ["fmt"] => cmd_fmt(&args),
        _ => {
            eprintln!("tofu-double: the command {:?} is not implemented by the stand-in. Run it with real OpenTofu.", words.join(" "));
            Ok(1)
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure { diags, json }) => {
            let ui = Ui { json };
            for d in &diags {
                ui.diag(d);
            }
            1
        }
    }
}

struct Failure {
    diags: Vec<Diag>,
    json: bool,
}

type CmdResult = Result<i32, Failure>;

fn fail(json: bool, d: Diag) -> Failure {
    Failure {
        diags: vec![d],
        json,
    }
}

fn parse_flags(args: &[String], spec: &[(&str, args::Kind)]) -> Result<args::Flags, Failure> {
    args::parse(args, spec)
        .map_err(|e| fail(false, Diag::error("Failed to parse command-line flags", e)))
}

fn data_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("TF_DATA_DIR")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ".terraform".into()),
    )
}

fn workspace() -> String {
    std::env::var("TF_WORKSPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string(data_dir().join("environment"))
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "default".into())
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn load_module(json: bool) -> Result<config::Module, Failure> {
    let m = load_module_for_init(json)?;
    if !m.validation_errors.is_empty() {
        let diags = m.validation_errors.clone();
        return Err(Failure { diags, json });
    }
    Ok(m)
}

/// The module as init reads it: calls to unknown functions are not its concern.
fn load_module_for_init(json: bool) -> Result<config::Module, Failure> {
    let dir = cwd();
    let files = config::read_files(&dir).map_err(|d| fail(json, d))?;
    let m = config::load(&dir, files).map_err(|diags| Failure { diags, json })?;
    check_version(&m, json)?;
    Ok(m)
}

fn check_version(m: &config::Module, json: bool) -> Result<(), Failure> {
    if let Some(c) = &m.required_version {
        if !config::version_allowed(c, ui::VERSION) {
            return Err(fail(
                json,
                Diag::error(
                    "Unsupported OpenTofu Core version",
                    format!("This configuration does not support OpenTofu version {}. To proceed, either choose another supported OpenTofu version or update this version constraint (\"{c}\").", ui::VERSION),
                ),
            ));
        }
    }
    Ok(())
}

fn init_required(kind: &str) -> Diag {
    Diag::error(
        "Backend initialization required, please run \"tofu init\"",
        format!("Reason: Initial configuration of the requested backend {kind:?}\n\nThe \"backend\" is the interface that OpenTofu uses to store state,\nperform operations, etc. If this message is showing up, it means that the\nOpenTofu configuration you're using is using a custom configuration for\nthe OpenTofu backend.\n\nChanges to backend configurations require reinitialization. This allows\nOpenTofu to set up the new configuration, copy existing state, etc. Please run\n\"tofu init\" with either the \"-reconfigure\" or \"-migrate-state\" flags to\nuse the current configuration."),
    )
}

fn open_backend(m: Option<&config::Module>, json: bool) -> Result<Backend, Failure> {
    let cache = state::read_backend_cache(&data_dir());
    let declared = m.and_then(|m| m.backend.as_ref());
    let (kind, cfg) = match (declared, cache) {
        (None, None) => ("local".to_string(), Map::new()),
        (None, Some((k, c))) if m.is_none() || k == "local" => (k, c),
        (None, Some((k, _))) => return Err(fail(json, init_required(&k))),
        (Some(b), Some((k, c))) if k == b.kind => (k, c),
        (Some(b), _) => return Err(fail(json, init_required(&b.kind))),
    };
    Backend::open(&kind, &cfg, &cwd(), &workspace()).map_err(|d| fail(json, d))
}

fn lock_timeout(f: &args::Flags) -> Result<Duration, Failure> {
    match f.value("lock-timeout") {
        None => Ok(Duration::ZERO),
        Some(s) => args::parse_duration(s).ok_or_else(|| {
            fail(
                false,
                Diag::error(
                    "Invalid lock-timeout",
                    format!("{s:?} is not a duration such as \"30s\""),
                ),
            )
        }),
    }
}

fn input_disabled(f: &args::Flags) -> bool {
    !f.bool_or(
        "input",
        std::env::var("TF_INPUT")
            .ok()
            .and_then(|v| args::parse_bool(&v))
            .unwrap_or(true),
    ) || f.bool("json")
}

// ---------------------------------------------------------------------------------------------

fn cmd_version(a: &[String]) -> CmdResult {
    let f = parse_flags(a, &[("json", Bool)])?;
    if f.bool("json") {
        let selections: Map<String, Value> = Map::new();
        let v = json!({"terraform_version": ui::VERSION, "platform": format!("linux_{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }), "provider_selections": selections});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("OpenTofu v{}\non linux_amd64\n\n(tofu-double: a stand-in for tests; see tests/tofu-double/README.md)", ui::VERSION);
    }
    Ok(0)
}

/// `-lockfile` takes only `readonly`, which `-upgrade` contradicts.
fn check_lockfile_flags(f: &args::Flags, json: bool) -> Result<(), Failure> {
    if let Some(l) = f.value("lockfile") {
        if l != "readonly" {
            return Err(fail(
                json,
                Diag::error(
                    "Invalid lockfile mode",
                    format!("The only valid value for -lockfile is \"readonly\", got {l:?}."),
                ),
            ));
        }
        if f.bool("upgrade") {
            return Err(fail(
                json,
                Diag::error(
                    "Conflicting options",
                    "The -upgrade flag conflicts with -lockfile=readonly.",
                ),
            ));
        }
    }
    Ok(())
}

/// One `-backend-config`: `key=value`, or a file of backend attributes.
fn backend_config(bc: &str, cfg: &mut Map<String, Value>, json: bool) -> Result<(), Failure> {
    match bc.split_once('=') {
        Some((k, v)) if !Path::new(bc).is_file() => {
            cfg.insert(k.trim().to_string(), Value::String(v.to_string()));
        }
        _ => {
            let src = std::fs::read_to_string(bc).map_err(|e| {
                fail(
                    json,
                    Diag::error(
                        "Failed to read file",
                        format!("The file {bc:?} could not be read: {e}"),
                    ),
                )
            })?;
            let body = hcl::parse(&src).map_err(|e| {
                fail(
                    json,
                    Diag::error("Invalid backend configuration file", format!("{bc}: {e}")),
                )
            })?;
            for at in body.attributes() {
                let v = eval::eval_static(at.expr()).map_err(|e| {
                    fail(json, Diag::error("Invalid backend configuration file", e))
                })?;
                cfg.insert(at.key().to_string(), v);
            }
        }
    }
    Ok(())
}

fn cmd_init(a: &[String]) -> CmdResult {
    let f = parse_flags(
        a,
        &[
            ("input", Bool),
            ("no-color", Bool),
            ("backend", Bool),
            ("backend-config", Repeat),
            ("plugin-dir", Repeat),
            ("lockfile", Val),
            ("reconfigure", Bool),
            ("migrate-state", Bool),
            ("force-copy", Bool),
            ("get", Bool),
            ("upgrade", Bool),
            ("lock", Bool),
            ("lock-timeout", Val),
            ("var", Repeat),
            ("var-file", Repeat),
            ("json", Bool),
        ],
    )?;
    let json = f.bool("json");
    check_lockfile_flags(&f, json)?;
    let m = load_module_for_init(json)?;
    let dd = data_dir();
    std::fs::create_dir_all(&dd).map_err(|e| {
        fail(
            json,
            Diag::error("Failed to create data directory", e.to_string()),
        )
    })?;
    println!("\nInitializing the backend...");
    if f.bool_or("backend", true) {
        let (kind, mut cfg) = match &m.backend {
            Some(b) => (b.kind.clone(), b.attrs.clone()),
            None => ("local".to_string(), Map::new()),
        };
        for bc in f.all("backend-config") {
            backend_config(bc, &mut cfg, json)?;
        }
        if m.backend.is_some() {
            let be = Backend::open(&kind, &cfg, &cwd(), &workspace()).map_err(|d| fail(json, d))?;
            // Init reads the state once (to learn which providers it needs).
            be.read().map_err(|mut d| {
                d.summary = format!("Error loading state: {}", d.summary);
                fail(json, d)
            })?;
            println!("\nSuccessfully configured the backend {kind:?}! OpenTofu will automatically\nuse this backend unless the backend configuration changes.");
            state::write_backend_cache(&dd, &kind, &cfg).map_err(|e| {
                fail(
                    json,
                    Diag::error("Failed to save backend configuration", e.to_string()),
                )
            })?;
        }
    }
    let dirs = f.all("plugin-dir");
    if !dirs.is_empty() {
        std::fs::write(
            dd.join("plugin_path"),
            serde_json::to_vec(&dirs).unwrap_or_default(),
        )
        .ok();
    }
    println!("\nInitializing provider plugins...\n\nOpenTofu has been successfully initialized!");
    if std::env::var("TF_IN_AUTOMATION")
        .map(|v| v.is_empty())
        .unwrap_or(true)
    {
        println!("\nYou may now begin working with OpenTofu. Try running \"tofu plan\" to see\nany changes that are required for your infrastructure.");
    }
    Ok(0)
}

fn cmd_validate(a: &[String]) -> CmdResult {
    let f = parse_flags(a, &[("json", Bool), ("no-color", Bool)])?;
    let dir = cwd();
    let diags = match config::read_files(&dir) {
        Err(d) => vec![d],
        Ok(files) => match config::load(&dir, files) {
            Ok(m) if !m.validation_errors.is_empty() => m.validation_errors,
            Ok(m) => config::topo_order(&m).err().into_iter().collect(),
            Err(d) => d,
        },
    };
    let valid = diags.is_empty();
    if f.bool("json") {
        let v = json!({"format_version": "1.0", "valid": valid, "error_count": diags.len(), "warning_count": 0, "diagnostics": diags.iter().map(Diag::to_json).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if valid {
        println!("Success! The configuration is valid.");
    } else {
        let ui = Ui { json: false };
        diags.iter().for_each(|d| ui.diag(d));
    }
    Ok(if valid { 0 } else { 1 })
}

const PLAN_FLAGS: &[(&str, args::Kind)] = &[
    ("out", Val),
    ("destroy", Bool),
    ("refresh-only", Bool),
    ("refresh", Bool),
    ("detailed-exitcode", Bool),
    ("json", Bool),
    ("var", Repeat),
    ("var-file", Repeat),
    ("lock", Bool),
    ("lock-timeout", Val),
    ("parallelism", Val),
    ("input", Bool),
    ("no-color", Bool),
    ("compact-warnings", Bool),
    ("show-sensitive", Bool),
    ("auto-approve", Bool),
];

fn var_args(f: &args::Flags) -> Vec<(String, String)> {
    f.repeats
        .iter()
        .filter(|(n, _)| n == "var" || n == "var-file")
        .cloned()
        .collect()
}

fn mode_of(f: &args::Flags, json: bool) -> Result<Mode, Failure> {
    match (f.bool("destroy"), f.bool("refresh-only")) {
        (true, true) => Err(fail(
            json,
            Diag::error(
                "Incompatible plan mode options",
                "The -destroy and -refresh-only options are mutually-exclusive.",
            ),
        )),
        (true, _) => Ok(Mode::Destroy),
        (_, true) => Ok(Mode::RefreshOnly),
        _ => Ok(Mode::Normal),
    }
}

/// The stand-in's plan, saved as the `tfplan` entry of a zip archive like OpenTofu's plan files
/// (opaque to everyone but the stand-in).
#[derive(serde::Serialize, serde::Deserialize)]
struct PlanFile {
    format: String,
    mode: Mode,
    variables: Map<String, Value>,
    config: Vec<(String, String)>,
    prior_serial: u64,
    prior_lineage: String,
    errored: bool,
    changes: Vec<(String, String)>,
    plan_json: Value,
    /// When the plan began (`plantimestamp` while applying it).
    #[serde(default)]
    plan_timestamp: Option<String>,
}

/// The stand-in's plan from a saved plan file (a zip archive with a `tfplan` entry).
fn read_plan(bytes: &[u8]) -> Option<PlanFile> {
    let entries = planfile::unzip(bytes)?;
    let (_, plan) = entries.iter().find(|(n, _)| n == "tfplan")?;
    serde_json::from_slice(plan).ok()
}

/// Writes a saved plan: the stand-in's plan as JSON (`tfplan`), the state it started from
/// (`tfstate`) and the configuration (`tfconfig/`), as a zip archive like OpenTofu's.
fn save_plan(
    path: &str,
    m: &config::Module,
    vars: &Map<String, Value>,
    mode: Mode,
    (prior, out): (&Option<StateFile>, &engine::Outcome),
    json: bool,
) -> Result<(), Failure> {
    let pf = PlanFile {
        format: "tofu-double-plan/1".into(),
        mode,
        variables: vars.clone(),
        config: m.files.clone(),
        prior_serial: prior.as_ref().map(|p| p.serial).unwrap_or(0),
        prior_lineage: prior
            .as_ref()
            .map(|p| p.lineage.clone())
            .unwrap_or_default(),
        errored: false,
        changes: out
            .changes
            .iter()
            .map(|c| (c.addr(), format!("{:?}", c.action)))
            .collect(),
        plan_json: engine::plan_json(m, vars, prior, out, mode, false),
        plan_timestamp: datetime::plan_time(),
    };
    let mut entries = vec![(
        "tfplan".to_string(),
        serde_json::to_vec(&pf).unwrap_or_default(),
    )];
    entries.extend(
        prior
            .as_ref()
            .map(|p| ("tfstate".to_string(), p.to_bytes())),
    );
    entries.extend(
        m.files
            .iter()
            .map(|(n, src)| (format!("tfconfig/{n}"), src.clone().into_bytes())),
    );
    std::fs::write(path, planfile::zip(&entries)).map_err(|e| {
        fail(
            json,
            Diag::error("Failed to write plan file", e.to_string()),
        )
    })
}

fn cmd_plan(a: &[String]) -> CmdResult {
    let f = parse_flags(a, PLAN_FLAGS)?;
    let json = f.bool("json");
    let ui = Ui { json };
    signals::notice_on_interrupt(json);
    ui.version_line();
    let mode = mode_of(&f, json)?;
    if f.value("out")
        .is_some_and(|o| o.ends_with(".tf") || o.ends_with(".tofu"))
    {
        let d = Diag::error(
            "Invalid plan file name",
            "The plan file name must not end in \".tf\" or \".tofu\".",
        );
        return Err(fail(json, d));
    }
    let m = load_module(json)?;
    datetime::set_plan_time(None);
    let vars = engine::collect_vars(&m, &var_args(&f)).map_err(|diags| Failure { diags, json })?;
    let mut be = open_backend(Some(&m), json)?;
    let locking = f.bool_or("lock", true) && be.locking_enabled();
    if locking {
        be.lock("OperationTypePlan", lock_timeout(&f)?, &ui)
            .map_err(|d| fail(json, d))?;
    }
    let result = (|| {
        let read = be.read().map_err(|d| fail(json, d))?;
        // `moved` blocks apply to the state before anything else looks at it.
        let (prior, moved) = engine::apply_moves(&read, &m);
        if !sleep_hook("TOFU_DOUBLE_SLEEP_BEFORE", "plan") {
            return Err(fail(json, Diag::error("execution halted", "")));
        }
        if f.bool_or("refresh", true) {
            engine::report_refresh(&ui, &prior, &m);
        }
        let walk = Walk {
            module: &m,
            vars: &vars,
            mode,
            prior: &prior,
            moved: &moved,
            workspace: workspace(),
            ui: &ui,
            apply: false,
            persist: None,
        };
        let out = walk.run();
        remote_state::report(&ui, &out.data);
        if let Some(d) = out.error {
            return Err(fail(json, d));
        }
        let outs = engine::output_changes(&m, &prior, &out.outputs, mode);
        let changed = engine::has_changes(&out.changes, &outs);
        engine::report_plan(&ui, &out.changes, &outs, mode, true);
        engine::report_forgets(&ui, &out.changes);
        engine::report_checks(&ui, &out.checks);
        if let Some(path) = f.value("out") {
            let planned = (&prior, &out);
            save_plan(path, &m, &vars, mode, planned, json)?;
            if std::env::var("TF_IN_AUTOMATION").map_or(true, |v| v.is_empty()) {
                ui.human(&format!("\nSaved the plan to: {path}\n\nTo perform exactly these actions, run the following command to apply:\n    tofu apply \"{path}\""));
            }
        }
        sleep_hook("TOFU_DOUBLE_SLEEP_AFTER", "plan");
        Ok(changed)
    })();
    if locking {
        if let Err(d) = be.unlock() {
            ui.diag(&d);
        }
    }
    let changed = result?;
    Ok(if f.bool("detailed-exitcode") && changed {
        2
    } else {
        0
    })
}

/// What an apply works from: the module, the variables, the mode and the saved plan, if any.
type ApplyInputs = (config::Module, Map<String, Value>, Mode, Option<PlanFile>);

/// The saved plan's inputs, or the configuration's with the command line's variables.
fn apply_inputs(
    f: &args::Flags,
    plan_path: Option<&str>,
    destroy_cmd: bool,
) -> Result<ApplyInputs, Failure> {
    let json = f.bool("json");
    Ok(match plan_path {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| {
                fail(
                    json,
                    Diag::error(
                        "Failed to load plan file",
                        format!("Failed to read plan from plan file: {e}"),
                    ),
                )
            })?;
            let pf: PlanFile = read_plan(&bytes).ok_or_else(|| {
                fail(
                    json,
                    Diag::error(
                        "Failed to load plan file",
                        format!("The given plan file {p:?} is not a valid plan file."),
                    ),
                )
            })?;
            if pf.errored {
                return Err(fail(json, Diag::error("Cannot apply incomplete plan", "OpenTofu encountered an error when generating this plan, so it cannot be applied.")));
            }
            let m =
                config::load(&cwd(), pf.config.clone()).map_err(|diags| Failure { diags, json })?;
            let vars = pf.variables.clone();
            let mode = pf.mode;
            datetime::set_plan_time(pf.plan_timestamp.clone());
            (m, vars, mode, Some(pf))
        }
        None => {
            let m = load_module(json)?;
            let vars =
                engine::collect_vars(&m, &var_args(f)).map_err(|diags| Failure { diags, json })?;
            let mode = if destroy_cmd {
                Mode::Destroy
            } else {
                mode_of(f, json)?
            };
            datetime::set_plan_time(None);
            (m, vars, mode, None)
        }
    })
}

/// Fails unless a saved plan still applies to the state read (same lineage and serial).
fn still_applies(pf: &PlanFile, prior: &Option<StateFile>, json: bool) -> Result<(), Failure> {
    let cur_serial = prior.as_ref().map(|p| p.serial).unwrap_or(0);
    let cur_lineage = prior
        .as_ref()
        .map(|p| p.lineage.clone())
        .unwrap_or_default();
    if !pf.prior_lineage.is_empty() && cur_lineage != pf.prior_lineage {
        return Err(fail(json, Diag::error("Saved plan does not match the given state", "The given plan file can not be applied because it was created from a different state lineage.")));
    }
    if cur_serial != pf.prior_serial {
        return Err(fail(json, Diag::error("Saved plan is stale", "The given plan file can no longer be applied because the state was changed by another operation after the plan was created.")));
    }
    Ok(())
}

/// The summary of an apply and its outputs (a sensitive value left out of the `-json` message).
fn report_applied(ui: &Ui, out: &engine::Outcome, persisted: &Option<StateFile>, mode: Mode) {
    let s = engine::summary(&out.changes);
    let (op, msg) = if mode == Mode::Destroy {
        (
            "destroy",
            format!("Destroy complete! Resources: {} destroyed.", s.remove),
        )
    } else {
        (
            "apply",
            format!(
                "Apply complete! Resources: {} added, {} changed, {} destroyed{}.",
                s.add,
                s.change,
                s.remove,
                s.forgets("forgotten")
            ),
        )
    };
    ui.line("info", "change_summary", &msg, json!({"changes": {"add": s.add, "change": s.change, "import": 0, "remove": s.remove, "forget": s.forget, "operation": op}}));
    ui.human(&format!("\n{msg}"));
    let outputs: Map<String, Value> = persisted
        .as_ref()
        .map(|st| {
            st.outputs
                .iter()
                .map(|(k, o)| {
                    // A sensitive value is left out of the message, as the real binary does.
                    let mut v = json!({"sensitive": o.sensitive, "type": o.typ});
                    if !o.sensitive {
                        v["value"] = o.value.clone();
                    }
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    // The `-json` stream always ends with the outputs message, `Outputs: 0` included.
    ui.line(
        "info",
        "outputs",
        &format!("Outputs: {}", outputs.len()),
        json!({ "outputs": outputs }),
    );
    if !outputs.is_empty() {
        ui.human("\nOutputs:\n");
        if let Some(st) = &persisted {
            for (k, o) in &st.outputs {
                ui.human(&format!(
                    "{k} = {}",
                    if o.sensitive {
                        "<sensitive>".into()
                    } else {
                        o.value.to_string()
                    }
                ));
            }
        }
    }
}

/// An apply with neither a saved plan nor `-auto-approve`: refused, as no one can approve.
fn no_approval(f: &args::Flags, json: bool) -> CmdResult {
    if json {
        return Err(fail(json, Diag::error("Plan file or auto-approve required", "OpenTofu cannot ask for interactive approval when -json is set. You can either apply a saved plan file, or enable the -auto-approve option.")));
    }
    if input_disabled(f) {
        return Err(fail(json, Diag::error("No approval given", "Apply cancelled: approval requires interactive input; use -auto-approve or apply a saved plan file.")));
    }
    eprintln!("tofu-double: interactive approval is not supported; use -auto-approve");
    Ok(1)
}

/// The plan an apply makes first; without a saved plan it is reported as `plan` reports it
/// (refresh, data sources, changes, summary, forgotten instances).
fn plan_before_apply(planner: &Walk, report: bool, refresh: bool) -> Result<(), Diag> {
    let (ui, m, prior) = (planner.ui, planner.module, planner.prior);
    if report && refresh {
        engine::report_refresh(ui, prior, m);
    }
    let planned = planner.run();
    if report {
        remote_state::report(ui, &planned.data);
    }
    if let Some(d) = planned.error {
        return Err(d);
    }
    let outs = engine::output_changes(m, prior, &planned.outputs, planner.mode);
    engine::report_plan(ui, &planned.changes, &outs, planner.mode, report);
    if report {
        engine::report_forgets(ui, &planned.changes);
    }
    Ok(())
}

/// Writes state as an apply goes (every persist interval) and at its end; each write counts
/// from the last one.
struct StateWriter<'a, 'b> {
    local: bool,
    /// The state last written (at first, the one read).
    written: std::cell::RefCell<Option<StateFile>>,
    backend: std::cell::RefCell<&'b mut Backend>,
    read: &'a Option<StateFile>,
    module: &'a config::Module,
    mode: Mode,
}

impl StateWriter<'_, '_> {
    fn write(&self, st: &StateFile) -> Result<(), Diag> {
        let mut be = self.backend.borrow_mut();
        if self.written.borrow().is_none() {
            // A brand-new state is read once more before the first write.
            let _ = be.read();
        }
        be.write(st)?;
        *self.written.borrow_mut() = Some(st.clone());
        Ok(())
    }

    /// What the next write holds, if anything: a local file is rewritten whenever it differs
    /// from the state read at the start (each write a serial), remote state when it differs
    /// from the last write.
    fn next_state(&self, o: &engine::Outcome) -> Option<StateFile> {
        let last = self.written.borrow().clone();
        let base = if self.local { self.read } else { &last };
        let mut st = engine::new_state(base, o, self.module, self.mode)?;
        if let Some(l) = &last {
            st.serial = l.serial + 1;
            st.lineage = l.lineage.clone();
        }
        Some(st)
    }

    /// The final write: the state now (also when the write fails, then saved to
    /// `errored.tfstate` as OpenTofu does).
    fn last(&self, o: &engine::Outcome) -> Result<Option<StateFile>, Diag> {
        let Some(st) = self.next_state(o) else {
            return Ok(self.written.borrow().clone());
        };
        self.write(&st).map_err(|mut d| {
            let _ = std::fs::write("errored.tfstate", st.to_bytes());
            d.detail.push_str("\n\nOpenTofu encountered an error saving the state to the backend and wrote it to \"errored.tfstate\" in the current directory. Retry with: tofu state push errored.tfstate");
            d
        })?;
        Ok(Some(st))
    }
}

fn cmd_apply(a: &[String], destroy_cmd: bool) -> CmdResult {
    let f = parse_flags(a, PLAN_FLAGS)?;
    let json = f.bool("json");
    let ui = Ui { json };
    let plan_path = f.positional.first().cloned();
    if plan_path.is_none() && !f.bool("auto-approve") {
        return no_approval(&f, json);
    }
    signals::notice_on_interrupt(json);
    ui.version_line();
    let (m, vars, mode, saved) = apply_inputs(&f, plan_path.as_deref(), destroy_cmd)?;
    let mut be = open_backend(Some(&m), json)?;
    let locking = f.bool_or("lock", true) && be.locking_enabled();
    if locking {
        be.lock("OperationTypeApply", lock_timeout(&f)?, &ui)
            .map_err(|d| fail(json, d))?;
    }
    let result = (|| -> CmdResult {
        let read = be.read().map_err(|d| fail(json, d))?;
        // `moved` blocks apply to the state before anything else looks at it.
        let (prior, moved) = engine::apply_moves(&read, &m);
        if let Some(pf) = &saved {
            still_applies(pf, &prior, json)?;
        }
        if !sleep_hook("TOFU_DOUBLE_SLEEP_BEFORE", "apply") {
            return Err(fail(json, Diag::error("execution halted", "")));
        }
        let planner = Walk {
            module: &m,
            vars: &vars,
            mode,
            prior: &prior,
            moved: &moved,
            workspace: workspace(),
            ui: &ui,
            apply: false,
            persist: None,
        };
        let refresh = f.bool_or("refresh", true);
        plan_before_apply(&planner, saved.is_none(), refresh).map_err(|d| fail(json, d))?;
        let writer = StateWriter {
            local: be.is_local(),
            written: std::cell::RefCell::new(read.clone()),
            backend: std::cell::RefCell::new(&mut be),
            read: &read,
            module: &m,
            mode,
        };
        let intermediate = |o: &engine::Outcome| {
            if let Some(st) = writer.next_state(o) {
                let _ = writer.write(&st);
            }
        };
        let persist = engine::Persist::new(&intermediate, writer.local);
        let walk = Walk {
            apply: true,
            persist: Some(&persist),
            ..planner
        };
        let out = walk.run();
        // Persist whatever was done, even on failure or interrupt.
        let persisted = writer.last(&out).map_err(|d| fail(json, d))?;
        if let Some(d) = out.error {
            return Err(fail(json, d));
        }
        engine::report_checks(&ui, &out.checks);
        sleep_hook("TOFU_DOUBLE_SLEEP_AFTER", "apply");
        report_applied(&ui, &out, &persisted, mode);
        Ok(0)
    })();
    if locking {
        if let Err(d) = be.unlock() {
            ui.diag(&d);
            return Ok(1);
        }
    }
    result
}

fn cmd_show(a: &[String]) -> CmdResult {
    let f = parse_flags(
        a,
        &[("json", Bool), ("no-color", Bool), ("show-sensitive", Bool)],
    )?;
    let doc = match f.positional.first() {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| {
                fail(
                    false,
                    Diag::error(
                        "Failed to read the given file as a state or plan file",
                        e.to_string(),
                    ),
                )
            })?;
            if let Some(pf) = read_plan(&bytes) {
                pf.plan_json
            } else {
                let st = StateFile::parse(&bytes).map_err(|_| {
                    fail(
                        false,
                        Diag::error(
                            "Failed to read the given file as a state or plan file",
                            format!("{p} is neither a plan file nor a state file."),
                        ),
                    )
                })?;
                engine::state_json(&Some(st))
            }
        }
        None => {
            let be = open_backend(None, false)?;
            engine::state_json(&be.read().map_err(|d| fail(false, d))?)
        }
    };
    if f.bool("json") {
        println!("{doc}");
    } else {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    Ok(0)
}

fn cmd_output(a: &[String]) -> CmdResult {
    let f = parse_flags(
        a,
        &[
            ("json", Bool),
            ("raw", Bool),
            ("no-color", Bool),
            ("state", Val),
            ("show-sensitive", Bool),
        ],
    )?;
    let st = match f.value("state") {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(StateFile::parse(&b).map_err(|d| fail(false, d))?),
            Err(_) => None,
        },
        None => open_backend(None, false)?
            .read()
            .map_err(|d| fail(false, d))?,
    };
    let outputs = st.map(|s| s.outputs).unwrap_or_default();
    match f.positional.first() {
        Some(name) => {
            let o = outputs.get(name).ok_or_else(|| {
                fail(false, Diag::error(format!("Output {name:?} not found"), "The output variable requested could not be found in the state file. If you recently added this to your configuration, be sure to run `tofu apply`, since the state won't be updated with new output variables until that command is run."))
            })?;
            if f.bool("raw") {
                match &o.value {
                    Value::String(s) => print!("{s}"),
                    Value::Number(n) => print!("{n}"),
                    Value::Bool(b) => print!("{b}"),
                    _ => return Err(fail(false, Diag::error("Unsupported value for raw output", format!("The -raw option only supports strings, numbers, and boolean values, but output value {name:?} is not.")))),
                }
            } else if f.bool("json") {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&o.value).unwrap_or_default()
                );
            } else {
                println!("{}", o.value);
            }
        }
        None => {
            if f.bool("json") {
                let m: Map<String, Value> = outputs
                    .iter()
                    .map(|(k, o)| {
                        // `output -json` shows sensitive values in clear (unlike the UI stream).
                        let v = json!({"sensitive": o.sensitive, "type": o.typ, "value": o.value});
                        (k.clone(), v)
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default()
                );
            } else if outputs.is_empty() {
                eprintln!("╷\n│ Warning: No outputs found\n╵");
            } else {
                for (k, o) in &outputs {
                    println!(
                        "{k} = {}",
                        if o.sensitive {
                            "<sensitive>".into()
                        } else {
                            o.value.to_string()
                        }
                    );
                }
            }
        }
    }
    Ok(0)
}

fn cmd_state_pull(a: &[String]) -> CmdResult {
    parse_flags(a, &[])?;
    let be = open_backend(None, false)?;
    if let Some(st) = be.read().map_err(|d| fail(false, d))? {
        std::io::stdout().write_all(&st.to_bytes()).ok();
    }
    Ok(0)
}

fn cmd_state_push(a: &[String]) -> CmdResult {
    let f = parse_flags(
        a,
        &[
            ("force", Bool),
            ("lock", Bool),
            ("lock-timeout", Val),
            ("ignore-remote-version", Bool),
        ],
    )?;
    let Some(src) = f.positional.first() else {
        return Err(fail(
            false,
            Diag::error(
                "Exactly one argument expected",
                "tofu state push [options] PATH",
            ),
        ));
    };
    let mut bytes = Vec::new();
    if src == "-" {
        std::io::stdin().read_to_end(&mut bytes).ok();
    } else {
        bytes = std::fs::read(src).map_err(|e| {
            fail(
                false,
                Diag::error("Error reading source state", format!("{src}: {e}")),
            )
        })?;
    }
    let pushed = StateFile::parse(&bytes).map_err(|d| fail(false, d))?;
    let ui = Ui { json: false };
    let mut be = open_backend(None, false)?;
    let locking = f.bool_or("lock", true) && be.locking_enabled();
    if locking {
        be.lock("state-push", lock_timeout(&f)?, &ui)
            .map_err(|d| fail(false, d))?;
    }
    let result = (|| -> CmdResult {
        let remote = be.read().map_err(|d| fail(false, d))?;
        let mut to_write = pushed.clone();
        match &remote {
            Some(r) => {
                if !f.bool("force") {
                    let err = if r.lineage != pushed.lineage {
                        Some(format!("cannot import state with lineage {:?} over unrelated state with lineage {:?}", pushed.lineage, r.lineage))
                    } else if pushed.serial < r.serial {
                        Some(format!(
                            "cannot import state with serial {} over newer state with serial {}",
                            pushed.serial, r.serial
                        ))
                    } else if pushed.serial == r.serial && !pushed.same_content(r) {
                        Some(format!("cannot overwrite existing state with serial {} with a different state that has the same serial", r.serial))
                    } else {
                        None
                    };
                    if let Some(e) = err {
                        return Err(fail(false, Diag::error("Failed to write state", e)));
                    }
                }
                to_write.serial = pushed.serial + 1;
            }
            None => {
                to_write.lineage = uuid::Uuid::new_v4().to_string();
                to_write.serial = 1;
            }
        }
        be.write(&to_write).map_err(|d| fail(false, d))?;
        Ok(0)
    })();
    if locking {
        be.unlock().map_err(|d| fail(false, d))?;
    }
    result
}

fn cmd_force_unlock(a: &[String]) -> CmdResult {
    let f = parse_flags(a, &[("force", Bool)])?;
    let Some(id) = f.positional.first() else {
        return Err(fail(
            false,
            Diag::error("Expected a single argument", "tofu force-unlock LOCK_ID"),
        ));
    };
    if !f.bool("force") {
        return Err(fail(
            false,
            Diag::error(
                "Unlock cancelled",
                "force-unlock needs confirmation; run it with -force.",
            ),
        ));
    }
    let mut be = open_backend(None, false)?;
    if !be.locking_enabled() {
        return Err(fail(
            false,
            Diag::error(
                "Locking is disabled for this backend",
                "The http backend has no unlock_address configured.",
            ),
        ));
    }
    match &be {
        Backend::Local { path, .. } => {
            let lp = path.with_file_name(format!(
                ".{}.lock.info",
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
            let held: Value = std::fs::read(&lp)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            if held.get("ID").and_then(Value::as_str) != Some(id.as_str()) {
                return Err(fail(
                    false,
                    Diag::error(
                        "Failed to unlock state",
                        format!("lock ID {id:?} does not match existing lock"),
                    ),
                ));
            }
            std::fs::remove_file(lp).ok();
        }
        Backend::Http { .. } => {
            let body = if std::env::var("TOFU_DOUBLE_FORCE_UNLOCK_STYLE").as_deref() == Ok("1.9") {
                None
            } else {
                Some(serde_json::to_vec(&json!({"ID": id, "Operation": "", "Info": "", "Who": "", "Version": "", "Created": "0001-01-01T00:00:00Z", "Path": ""})).unwrap_or_default())
            };
            be.send_unlock(body).map_err(|mut d| {
                d.summary = "Failed to unlock state".into();
                fail(false, d)
            })?;
        }
    }
    println!("OpenTofu state has been successfully unlocked!\n\nThe state has been unlocked, and OpenTofu commands should now be able to\nobtain a new lock on the remote state.");
    Ok(0)
}

fn cmd_fmt(a: &[String]) -> CmdResult {
    let f = parse_flags(
        a,
        &[
            ("check", Bool),
            ("list", Bool),
            ("write", Bool),
            ("diff", Bool),
            ("recursive", Bool),
            ("no-color", Bool),
        ],
    )?;
    let mut targets: Vec<PathBuf> = f.positional.iter().map(PathBuf::from).collect();
    if targets.is_empty() {
        targets.push(PathBuf::from("."));
    }
    let mut files = Vec::new();
    fn collect(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('~') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                if recursive {
                    collect(&p, recursive, out);
                }
            } else if [".tf", ".tofu", ".tfvars", ".tftest.hcl", ".tofutest.hcl"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                out.push(p);
            }
        }
    }
    for t in &targets {
        if t.is_dir() {
            collect(t, f.bool("recursive"), &mut files);
        } else {
            files.push(t.clone());
        }
    }
    let mut unformatted = 0;
    for p in &files {
        let src = std::fs::read_to_string(p).map_err(|e| {
            fail(
                false,
                Diag::error("Failed to read file", format!("{}: {e}", p.display())),
            )
        })?;
        if let Err(e) = hcl::parse(&src) {
            eprintln!("╷\n│ Error: Invalid syntax\n│\n│ {}: {e}\n╵", p.display());
            return Ok(2);
        }
        let want = fmt::format(&src);
        if want != src {
            unformatted += 1;
            if f.bool_or("list", true) {
                println!("{}", p.strip_prefix("./").unwrap_or(p).display());
            }
            if !f.bool("check") && f.bool_or("write", true) {
                std::fs::write(p, want).ok();
            }
        }
    }
    Ok(if f.bool("check") && unformatted > 0 {
        3
    } else {
        0
    })
}
