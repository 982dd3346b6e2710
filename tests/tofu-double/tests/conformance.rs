//! The differential check (issue 18): every module under `conformance/modules/` runs through the
//! stand-in and through a real Terraform or OpenTofu (`TOFUFLOW_REAL_TOFU`, else
//! `/usr/local/bin/terraform`, else `tofu` or `terraform` on PATH): `init`, `validate -json`,
//! `plan -json -out`, `show -json` of the saved plan, `apply` of it, `output -json`, and a
//! second plan over the state the apply left (`show -json` of it too); a module with a
//! `stage2/` directory then has that configuration planned, shown and applied over it. Both
//! results are normalised (ids, timestamps, versions) and compared; the test fails on any
//! difference not listed, with its reason, in `conformance/allow-list.toml`. Without a real
//! binary it says so loudly and compares nothing.
//!
//! By hand, against any binary: `TOFUFLOW_REAL_TOFU=/path/to/tofu cargo test -p tofu-double
//! --test conformance -- --nocapture` (`TOFU_CONFORMANCE_MODULES=04,09` runs only the modules
//! whose names contain one of those strings; `TOFU_CONFORMANCE_VERBOSE=1` prints every allowed
//! difference too).

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const STAND_IN: &str = env!("CARGO_BIN_EXE_tofu-double");

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// The real binary to compare with, found as `tests/tests/real_binary.rs` finds it.
fn real_binary() -> Option<PathBuf> {
    let given = std::env::var_os("TOFUFLOW_REAL_TOFU").map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|d| [d.join("tofu"), d.join("terraform")]);
    given
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin/terraform")])
        .chain(on_path)
        .find(|p| p.is_file())
}

/// One entry of the allow-list: a difference at `path` (segments joined by `.`, `*` matching one
/// segment, a prefix matching everything below it), in `modules` (all when empty), and why it is
/// harmless to tofuflow.
#[derive(Deserialize, Debug)]
struct Allowed {
    path: String,
    #[serde(default)]
    modules: Vec<String>,
    reason: String,
}

#[derive(Deserialize)]
struct AllowList {
    allow: Vec<Allowed>,
}

fn allow_list() -> Vec<Allowed> {
    let text = std::fs::read_to_string(corpus().join("allow-list.toml")).unwrap();
    let list: AllowList = toml::from_str(&text).expect("allow-list.toml parses");
    for a in &list.allow {
        assert!(
            a.reason.trim().len() > 20,
            "{}: every entry says why it is harmless",
            a.path
        );
    }
    list.allow
}

fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let d: Vec<&str> = path.split('.').collect();
    p.len() <= d.len() && p.iter().zip(&d).all(|(a, b)| *a == "*" || a == b)
}

/// A read-only `http` state server for both binaries (modules read state through it with
/// `data "terraform_remote_state"`): `GET /PATH` answers the corpus file at PATH. Its address
/// reaches modules as `var.conformance_http` (through `TF_VAR_conformance_http`).
fn state_server() -> &'static str {
    static ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDR.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                serve_file(s);
            }
        });
        addr
    })
}

fn serve_file(mut s: std::net::TcpStream) {
    use std::io::{BufRead, Write};
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    let _ = r.read_line(&mut first);
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/");
    let file = corpus().join(path.trim_start_matches('/'));
    let (code, body) = match std::fs::read(&file) {
        Ok(b) if !path.contains("..") => (200, b),
        _ => (404, Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body);
}

/// Runs `bin` with `args` in `dir`, isolated from the caller's tofu settings.
fn run(bin: &Path, dir: &Path, args: &[&str]) -> (i32, String) {
    let cli_config = dir.join("..").join("empty.tfrc");
    let _ = std::fs::write(&cli_config, "");
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TF_VAR_conformance_http", state_server())
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .env_remove("TF_CLI_ARGS")
        .env_remove("TF_DATA_DIR")
        .env_remove("TF_WORKSPACE")
        .env_remove("TF_LOG")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into())
}

/// The `diagnostic` messages of a `-json` stream, as severity, summary and detail, sorted: the
/// real binary reports what its graph walk finds in no fixed order.
fn diagnostics(stream: &str) -> Value {
    let mut diags: Vec<Value> = stream
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "diagnostic")
        .map(|l| {
            let d = &l["diagnostic"];
            json!({"severity": d["severity"], "summary": d["summary"], "detail": d["detail"]})
        })
        .collect();
    diags.sort_by_key(|d| d.to_string());
    Value::Array(diags)
}

fn parsed(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|_| json!({ "unparsed": out }))
}

/// Everything one binary says about one module, as one JSON document.
fn observe(bin: &Path, module: &Path, work: &Path) -> Value {
    let dir = work.join("m");
    copy_files(module, &dir);
    let mut doc = Map::new();
    let (code, _) = run(bin, &dir, &["init", "-input=false", "-no-color"]);
    doc.insert("init".into(), json!({ "exit": code }));
    let (code, out) = run(bin, &dir, &["validate", "-json", "-no-color"]);
    doc.insert(
        "validate".into(),
        json!({"exit": code, "json": parsed(&out)}),
    );
    if code != 0 {
        return Value::Object(doc);
    }
    let plan = ["plan", "-input=false", "-no-color", "-json", "-out=tfplan"];
    let (code, out) = run(bin, &dir, &plan);
    let mut p = json!({"exit": code, "diagnostics": diagnostics(&out)});
    if code == 0 {
        p["show"] = parsed(&run(bin, &dir, &["show", "-json", "tfplan"]).1);
    }
    doc.insert("plan".into(), p);
    if code != 0 {
        return Value::Object(doc);
    }
    let (code, out) = run(
        bin,
        &dir,
        &["apply", "-input=false", "-no-color", "-json", "tfplan"],
    );
    doc.insert(
        "apply".into(),
        json!({"exit": code, "diagnostics": diagnostics(&out)}),
    );
    let (code, out) = run(bin, &dir, &["output", "-json"]);
    doc.insert("output".into(), json!({"exit": code, "json": parsed(&out)}));
    // A second plan, over the state the apply left.
    let replan = ["plan", "-input=false", "-no-color", "-json", "-out=again"];
    let (code, out) = run(bin, &dir, &replan);
    let mut p = json!({"exit": code, "diagnostics": diagnostics(&out)});
    if code == 0 {
        p["show"] = parsed(&run(bin, &dir, &["show", "-json", "again"]).1);
    }
    doc.insert("replan".into(), p);
    if module.join("stage2").is_dir() {
        doc.insert("stage2".into(), stage2(bin, module, &dir));
    }
    Value::Object(doc)
}

/// The module's files (not its directories) copied into `dir`.
fn copy_files(from: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in std::fs::read_dir(from).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
}

/// A second configuration (`stage2/`) planned, shown and applied over the first one's state.
fn stage2(bin: &Path, module: &Path, dir: &Path) -> Value {
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        if f.path().extension().is_some_and(|e| e == "tf") {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    copy_files(&module.join("stage2"), dir);
    let plan = ["plan", "-input=false", "-no-color", "-json", "-out=stage2"];
    let (code, out) = run(bin, dir, &plan);
    let mut doc = json!({"exit": code, "diagnostics": diagnostics(&out)});
    if code == 0 {
        doc["show"] = parsed(&run(bin, dir, &["show", "-json", "stage2"]).1);
        let apply = ["apply", "-input=false", "-no-color", "-json", "stage2"];
        doc["apply_exit"] = json!(run(bin, dir, &apply).0);
        doc["output"] = parsed(&run(bin, dir, &["output", "-json"]).1);
    }
    doc
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `s` with every UUID in it (whole, or inside a JSON-encoded string) replaced by `<uuid>`.
fn without_ids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && is_uuid(&rest[..36]) {
            out.push_str("<uuid>");
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Replaces what differs from run to run and binary to binary by placeholders: ids (UUIDs, also
/// inside strings),
/// timestamps, versions, and the product's name in messages ("Terraform requires ..."); sorts
/// what the contract leaves unordered (`relevant_attributes`).
fn normalise(v: &mut Value) {
    match v {
        Value::String(s) => *s = without_ids(s).replace("Terraform", "OpenTofu"),
        Value::Array(a) => a.iter_mut().for_each(normalise),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match k.as_str() {
                    "timestamp" => *x = json!("<timestamp>"),
                    "terraform_version" => *x = json!("<version>"),
                    // Its order is left open (the real binary's varies with its maps).
                    "relevant_attributes" => {
                        if let Value::Array(a) = x {
                            a.sort_by_key(|e| e.to_string());
                        }
                    }
                    // So is the order of `validate -json`'s diagnostics (by severity, summary
                    // and detail here: positions are not compared).
                    "diagnostics" => {
                        if let Value::Array(a) = x {
                            a.iter_mut().for_each(normalise);
                            a.sort_by_key(|d| {
                                let key = [&d["severity"], &d["summary"], &d["detail"]];
                                key.map(|k| k.to_string())
                            });
                        }
                    }
                    _ => normalise(x),
                }
            }
        }
        _ => {}
    }
}

/// Every difference between `real` and `stand_in`, as (path, what differs).
fn diff(real: &Value, stand_in: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (real, stand_in) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a {
                match b.get(k) {
                    Some(y) => diff(x, y, &at(k), out),
                    None => out.push((at(k), format!("only the real binary writes {x}"))),
                }
            }
            for (k, y) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                out.push((at(k), format!("only the stand-in writes {y}")));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &at(&i.to_string()), out);
            }
        }
        (a, b) if a != b => out.push((path.to_string(), format!("real {a}, stand-in {b}"))),
        _ => {}
    }
}

/// One difference: the module, the path, what differs, and the allow-list's reason if listed.
struct Found {
    module: String,
    path: String,
    what: String,
    why: Option<String>,
}

/// The differences for one module, each with its allow-list reason when it has one.
fn compare(real_bin: &Path, module: &Path, allow: &[Allowed]) -> Vec<Found> {
    let name = module.file_name().unwrap().to_string_lossy().to_string();
    let work = std::env::temp_dir().join(format!("tofu-conf-{}", uuid::Uuid::new_v4().simple()));
    let mut real = observe(real_bin, module, &work.join("real"));
    let mut double = observe(Path::new(STAND_IN), module, &work.join("double"));
    let _ = std::fs::remove_dir_all(&work);
    normalise(&mut real);
    normalise(&mut double);
    let mut found = Vec::new();
    diff(&real, &double, "", &mut found);
    found
        .into_iter()
        .map(|(path, what)| {
            let why = allow
                .iter()
                .find(|a| {
                    matches(&a.path, &path) && (a.modules.is_empty() || a.modules.contains(&name))
                })
                .map(|a| a.reason.clone());
            Found {
                module: name.clone(),
                path,
                what,
                why,
            }
        })
        .collect()
}

fn selected_modules() -> Vec<PathBuf> {
    let only = std::env::var("TOFU_CONFORMANCE_MODULES").unwrap_or_default();
    let filters: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let mut modules: Vec<PathBuf> = std::fs::read_dir(corpus().join("modules"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            filters.is_empty() || filters.iter().any(|f| n.contains(f))
        })
        .collect();
    modules.sort();
    modules
}

#[test]
fn the_stand_in_matches_the_real_binary_on_the_corpus() {
    let allow = allow_list();
    let verbose = std::env::var_os("TOFU_CONFORMANCE_VERBOSE").is_some();
    let modules = selected_modules();
    assert!(modules.len() >= 10 || std::env::var_os("TOFU_CONFORMANCE_MODULES").is_some());
    let Some(real) = real_binary() else {
        eprintln!("CONFORMANCE CHECK SKIPPED: no Terraform or OpenTofu found (set TOFUFLOW_REAL_TOFU=/path/to/tofu); {} modules not compared", modules.len());
        return;
    };
    eprintln!(
        "conformance: {} modules, stand-in vs {}",
        modules.len(),
        real.display()
    );
    let halves: Vec<&[PathBuf]> = modules.chunks(modules.len().div_ceil(2).max(1)).collect();
    let found: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = halves
            .iter()
            .map(|h| {
                s.spawn(|| {
                    h.iter()
                        .flat_map(|m| compare(&real, m, &allow))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut unexpected = Vec::new();
    for f in &found {
        let at = format!("{}: {}: {}", f.module, f.path, f.what);
        match &f.why {
            Some(_) if verbose => eprintln!("  allowed  {at}"),
            Some(_) => {}
            None => unexpected.push(at),
        }
    }
    for a in &allow {
        let n = found
            .iter()
            .filter(|f| f.why.as_ref() == Some(&a.reason))
            .count();
        eprintln!("  allowed {n:>3} x {}: {}", a.path, a.reason);
    }
    assert!(
        unexpected.is_empty(),
        "{} differences from {} not in the allow-list:\n{}",
        unexpected.len(),
        real.display(),
        unexpected.join("\n")
    );
}

#[test]
fn the_normaliser_and_differ_report_paths() {
    let mut a = json!({"timestamp": "2024-01-01T00:00:00Z", "id": "0b7f8f3c-1d2e-4a5b-8c9d-0e1f2a3b4c5d", "x": [1, {"y": 2}], "only": true, "m": "Terraform requires", "j": "[\"0b7f8f3c-1d2e-4a5b-8c9d-0e1f2a3b4c5d\"]"});
    let mut b = json!({"timestamp": "2026-12-06T22:00:00Z", "id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "x": [1, {"y": 3}], "extra": 1, "m": "OpenTofu requires", "j": "[\"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\"]"});
    normalise(&mut a);
    normalise(&mut b);
    let mut found = Vec::new();
    diff(&a, &b, "", &mut found);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["only", "x.1.y", "extra"]);
    assert!(matches(
        "plan.show.configuration",
        "plan.show.configuration.root_module.x"
    ));
    assert!(matches(
        "validate.json.diagnostics.*.range",
        "validate.json.diagnostics.0.range"
    ));
    assert!(!matches("plan.show.configuration", "plan.show.checks"));
}
