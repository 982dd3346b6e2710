//! Loading a root module: `*.tf` / `*.tofu` files parsed with hcl-rs into the blocks the stand-in
//! understands. Anything outside that subset is a clear diagnostic, never silent success.

use crate::ui::Diag;
use hcl::{Block, Body, Expression};
use std::path::{Path, PathBuf};

pub struct VarDecl {
    pub name: String,
    pub type_expr: Option<String>,
    pub default: Option<Expression>,
    pub sensitive: bool,
    pub validations: Vec<(Expression, Expression)>,
}

pub struct Provisioner {
    pub command: Expression,
    pub environment: Option<Expression>,
    pub working_dir: Option<Expression>,
    pub interpreter: Option<Expression>,
    pub when_destroy: bool,
    pub on_failure_continue: bool,
}

pub struct ResourceDecl {
    pub name: String,
    pub input: Option<Expression>,
    pub triggers_replace: Option<Expression>,
    pub count: Option<Expression>,
    pub for_each: Option<Expression>,
    pub provisioners: Vec<Provisioner>,
    /// Names of other `terraform_data` resources this one depends on (directly or via locals).
    pub deps: Vec<String>,
    /// Names of the `terraform_remote_state` data sources it refers to (directly or via locals).
    pub data_deps: Vec<String>,
    pub text: String,
}

/// A `data "terraform_remote_state"` block.
pub struct DataDecl {
    pub name: String,
    pub backend: Expression,
    pub config: Option<Expression>,
    pub defaults: Option<Expression>,
}

pub struct OutputDecl {
    pub name: String,
    pub value: Expression,
    pub sensitive: bool,
}

/// A `terraform_data` resource (no key) or one of its instances, as a `moved` block names it.
#[derive(Clone, Debug, PartialEq)]
pub struct MoveAddr {
    pub name: String,
    pub key: Option<serde_json::Value>,
}

impl MoveAddr {
    /// Parses `terraform_data.NAME`, `terraform_data.NAME[0]` or `terraform_data.NAME["k"]`.
    fn parse(text: &str) -> Option<MoveAddr> {
        let rest = text.trim().strip_prefix("terraform_data.")?;
        let (name, key) = match rest.split_once('[') {
            Some((n, k)) => {
                let k = k.strip_suffix(']')?;
                let key = match k.parse::<i64>() {
                    Ok(i) => serde_json::json!(i),
                    Err(_) => serde_json::json!(k.strip_prefix('"')?.strip_suffix('"')?),
                };
                (n, Some(key))
            }
            None => (rest, None),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
        valid.then(|| MoveAddr {
            name: name.to_string(),
            key,
        })
    }
}

pub struct BackendDecl {
    pub kind: String,
    pub attrs: serde_json::Map<String, serde_json::Value>,
}

pub struct Module {
    pub dir: PathBuf,
    /// File name and source of every configuration file, kept so a saved plan can carry them.
    pub files: Vec<(String, String)>,
    pub backend: Option<BackendDecl>,
    pub required_version: Option<String>,
    pub variables: Vec<VarDecl>,
    pub locals: Vec<(String, Expression)>,
    pub resources: Vec<ResourceDecl>,
    pub data: Vec<DataDecl>,
    pub outputs: Vec<OutputDecl>,
    /// `moved` blocks: from and to, each a resource name with an optional instance key.
    pub moves: Vec<(MoveAddr, MoveAddr)>,
    /// `removed` blocks: the resource name and whether its instances are destroyed
    /// (`lifecycle { destroy = false }` forgets them instead).
    pub removed: Vec<(String, bool)>,
    /// `check` blocks: name and assertions (condition, error message).
    pub checks: Vec<(String, Vec<(Expression, Expression)>)>,
    /// Errors the real binary reports when it validates (validate, plan, apply; not init):
    /// `Call to unknown function` for each function the stand-in lacks, `Output refers to
    /// sensitive values`.
    pub validation_errors: Vec<Diag>,
}

/// Reads the configuration files of `dir` (`.tofu` wins over a `.tf` of the same stem).
pub fn read_files(dir: &Path) -> Result<Vec<(String, String)>, Diag> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Diag::error(
            "Failed to read module directory",
            format!(
                "Module directory {} does not exist or cannot be read: {e}",
                dir.display()
            ),
        )
    })?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| (n.ends_with(".tf") || n.ends_with(".tofu")) && !n.starts_with('.'))
        .collect();
    names.sort();
    let tofu_stems: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".tofu").map(str::to_string))
        .collect();
    names.retain(|n| match n.strip_suffix(".tf") {
        Some(stem) => !tofu_stems.iter().any(|s| s == stem),
        None => true,
    });
    let mut files = Vec::new();
    for n in names {
        let src = std::fs::read_to_string(dir.join(&n)).map_err(|e| {
            Diag::error(
                "Failed to read file",
                format!("The file {n:?} could not be read: {e}"),
            )
        })?;
        files.push((n, src));
    }
    Ok(files)
}

fn unsupported(what: &str, detail: &str) -> Diag {
    Diag::error(
        format!("Unsupported {what}"),
        format!(
            "{detail}\n\nThe tofu stand-in (tofu-double) implements only the built-in provider \
             (resource \"terraform_data\"), variables, locals, outputs and local-exec provisioners. \
             Run this configuration with real OpenTofu."
        ),
    )
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn literal_bool(e: Option<&Expression>) -> bool {
    matches!(e, Some(Expression::Bool(true)))
}

/// Renders an expression back to HCL text (for type constraints and dependency scanning).
pub fn expr_text(e: &Expression) -> String {
    hcl::format::to_string(e).unwrap_or_default()
}

/// Finds `prefix.NAME` references in HCL text.
pub fn refs(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let pat = format!("{prefix}.");
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(i) = text[start..].find(&pat) {
        let at = start + i;
        let before_ok = at == 0 || {
            let c = bytes[at - 1] as char;
            !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
        };
        let mut end = at + pat.len();
        while end < bytes.len() {
            let c = bytes[end] as char;
            if c.is_alphanumeric() || c == '_' || c == '-' {
                end += 1;
            } else {
                break;
            }
        }
        if before_ok && end > at + pat.len() {
            let name = text[at + pat.len()..end].to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
        start = end.max(at + 1);
    }
    out
}

/// Parses and checks a module from its files.
pub fn load(dir: &Path, files: Vec<(String, String)>) -> Result<Module, Vec<Diag>> {
    let mut m = Module {
        dir: dir.to_path_buf(),
        files: Vec::new(),
        backend: None,
        required_version: None,
        variables: Vec::new(),
        locals: Vec::new(),
        resources: Vec::new(),
        data: Vec::new(),
        outputs: Vec::new(),
        moves: Vec::new(),
        removed: Vec::new(),
        checks: Vec::new(),
        validation_errors: Vec::new(),
    };
    let mut diags = Vec::new();
    for (name, src) in &files {
        let body = match hcl::parse(src) {
            Ok(b) => b,
            Err(e) => {
                diags.push(Diag::error(
                    "Invalid configuration syntax",
                    format!("{name}: {e}"),
                ));
                continue;
            }
        };
        m.validation_errors
            .extend(crate::lazy::unknown_functions(&body));
        for s in body.attributes() {
            diags.push(Diag::error(
                "Unsupported argument",
                format!(
                    "{name}: an argument named {:?} is not expected here.",
                    s.key()
                ),
            ));
        }
        for b in body.blocks() {
            if let Err(d) = load_block(&mut m, name, b) {
                diags.push(d);
            }
        }
    }
    m.files = files;
    if diags.is_empty() {
        resolve_deps(&mut m);
        crate::sensitivity::answer_issensitive(&mut m);
        let leaks = sensitive_outputs(&m);
        m.validation_errors.extend(leaks);
        let keys = sensitive_for_each(&m);
        m.validation_errors.extend(keys);
        Ok(m)
    } else {
        Err(diags)
    }
}

fn label(b: &Block, i: usize) -> String {
    b.labels()
        .get(i)
        .map(|l| l.as_str().to_string())
        .unwrap_or_default()
}

fn load_block(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    match b.identifier() {
        "terraform" => load_terraform(m, file, b),
        "variable" => load_variable(m, b),
        "locals" => {
            for a in b.body().attributes() {
                m.locals.push((a.key().to_string(), a.expr().clone()));
            }
            Ok(())
        }
        "output" => {
            let value = attr(b.body(), "value").cloned().ok_or_else(|| {
                Diag::error(
                    "Missing required argument",
                    format!(
                        "{file}: output {:?} needs a \"value\" argument.",
                        label(b, 0)
                    ),
                )
            })?;
            m.outputs.push(OutputDecl {
                name: label(b, 0),
                value,
                sensitive: literal_bool(attr(b.body(), "sensitive")),
            });
            Ok(())
        }
        "resource" => load_resource(m, file, b),
        "provider" => Err(unsupported(
            "provider",
            &format!("{file}: provider {:?} is not built in.", label(b, 0)),
        )),
        "data" if label(b, 0) == "terraform_remote_state" => load_remote_state(m, file, b),
        "data" => Err(unsupported(
            "data source",
            &format!("{file}: data \"{}\" \"{}\".", label(b, 0), label(b, 1)),
        )),
        "module" => Err(unsupported(
            "module call",
            &format!(
                "{file}: module {:?}: child modules are not implemented.",
                label(b, 0)
            ),
        )),
        "moved" => load_moved(m, file, b),
        "check" => load_check(m, file, b),
        "removed" => load_removed(m, file, b),
        "import" => Err(unsupported(
            "block",
            &format!("{file}: {} blocks are not implemented.", b.identifier()),
        )),
        other => Err(Diag::error(
            "Unsupported block type",
            format!("{file}: blocks of type {other:?} are not expected here."),
        )),
    }
}

/// The `terraform` block: `required_version`, one `backend`, built-in providers only.
fn load_terraform(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    if let Some(Expression::String(v)) = attr(b.body(), "required_version") {
        m.required_version = Some(v.clone());
    }
    for inner in b.body().blocks() {
        match inner.identifier() {
            "backend" => {
                let kind = label(inner, 0);
                if kind != "local" && kind != "http" {
                    return Err(unsupported(
                        "backend type",
                        &format!("{file}: backend {kind:?} needs network access to a cloud store."),
                    ));
                }
                if m.backend.is_some() {
                    return Err(Diag::error(
                        "Duplicate backend configuration",
                        "A module may have only one backend configuration.",
                    ));
                }
                let mut attrs = serde_json::Map::new();
                for a in inner.body().attributes() {
                    let v = crate::eval::eval_static(a.expr()).map_err(|e| {
                        Diag::error(
                            "Variables not allowed",
                            format!("{file}: backend attribute {:?}: {e}", a.key()),
                        )
                    })?;
                    attrs.insert(a.key().to_string(), v);
                }
                m.backend = Some(BackendDecl { kind, attrs });
            }
            "required_providers" => {
                for a in inner.body().attributes() {
                    if a.key() != "terraform" {
                        return Err(unsupported(
                            "provider",
                            &format!(
                                "{file}: provider {:?} would be installed from a registry.",
                                a.key()
                            ),
                        ));
                    }
                }
            }
            "encryption" | "cloud" => {
                return Err(unsupported(
                    "terraform block",
                    &format!(
                        "{file}: terraform {{ {} }} is not implemented.",
                        inner.identifier()
                    ),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A `variable` block.
fn load_variable(m: &mut Module, b: &Block) -> Result<(), Diag> {
    let body = b.body();
    let mut validations = Vec::new();
    for v in body.blocks().filter(|x| x.identifier() == "validation") {
        if let (Some(c), Some(msg)) = (attr(v.body(), "condition"), attr(v.body(), "error_message"))
        {
            validations.push((c.clone(), msg.clone()));
        }
    }
    m.variables.push(VarDecl {
        name: label(b, 0),
        type_expr: attr(body, "type").map(expr_text),
        default: attr(body, "default").cloned(),
        sensitive: literal_bool(attr(body, "sensitive")),
        validations,
    });
    Ok(())
}

/// A `resource "terraform_data"` block.
fn load_resource(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    let typ = label(b, 0);
    let name = label(b, 1);
    if typ != "terraform_data" {
        return Err(unsupported(
            "resource type",
            &format!(
                "{file}: resource \"{typ}\" \"{name}\" belongs to a provider that is not built in."
            ),
        ));
    }
    let body = b.body();
    let provisioners = resource_blocks(m, file, &name, body)?;
    unexpected_arguments(m, body);
    if attr(body, "count").is_some() && attr(body, "for_each").is_some() {
        return Err(Diag::error(
            "Invalid combination of \"count\" and \"for_each\"",
            format!("{file}: terraform_data.{name} may not use both."),
        ));
    }
    if m.resources.iter().any(|r| r.name == name) {
        return Err(Diag::error(
            "Duplicate resource \"terraform_data\" configuration",
            format!("A terraform_data resource named {name:?} was already declared."),
        ));
    }
    let text = hcl::format::to_string(body).unwrap_or_default();
    m.resources.push(ResourceDecl {
        name,
        input: attr(body, "input").cloned(),
        triggers_replace: attr(body, "triggers_replace").cloned(),
        count: attr(body, "count").cloned(),
        for_each: attr(body, "for_each").cloned(),
        provisioners,
        deps: Vec::new(),
        data_deps: Vec::new(),
        text,
    });
    Ok(())
}

/// The provisioners of a `terraform_data` resource; other nested blocks are the schema's errors
/// (at validate and plan).
fn resource_blocks(
    m: &mut Module,
    file: &str,
    name: &str,
    body: &Body,
) -> Result<Vec<Provisioner>, Diag> {
    let mut provisioners = Vec::new();
    for p in body.blocks() {
        match p.identifier() {
            "provisioner" if label(p, 0) == "local-exec" => {
                let pb = p.body();
                let command = attr(pb, "command").cloned().ok_or_else(|| {
                    Diag::error(
                        "Missing required argument",
                        format!("{file}: local-exec in terraform_data.{name} needs \"command\"."),
                    )
                })?;
                let when = attr(pb, "when").map(expr_text).unwrap_or_default();
                let on_failure = attr(pb, "on_failure").map(expr_text).unwrap_or_default();
                provisioners.push(Provisioner {
                    command,
                    environment: attr(pb, "environment").cloned(),
                    working_dir: attr(pb, "working_dir").cloned(),
                    interpreter: attr(pb, "interpreter").cloned(),
                    when_destroy: when.trim() == "destroy",
                    on_failure_continue: on_failure.trim() == "continue",
                });
            }
            "provisioner" => {
                return Err(unsupported(
                    "provisioner",
                    &format!(
                        "{file}: provisioner {:?} in terraform_data.{name}.",
                        label(p, 0)
                    ),
                ))
            }
            "lifecycle" | "connection" => {}
            // terraform_data has no nested block types: the schema check fails at
            // validate and plan (not init), naming a `dynamic` block by its label.
            other => {
                let shown = if other == "dynamic" {
                    label(p, 0)
                } else {
                    other.to_string()
                };
                m.validation_errors.push(Diag::error(
                    "Unsupported block type",
                    format!("Blocks of type {shown:?} are not expected here."),
                ));
            }
        }
    }
    Ok(provisioners)
}

/// `Unsupported argument` (at validate and plan) for each argument `terraform_data` lacks.
fn unexpected_arguments(m: &mut Module, body: &Body) {
    for a in body.attributes() {
        if ![
            "input",
            "triggers_replace",
            "count",
            "for_each",
            "depends_on",
            "provider",
        ]
        .contains(&a.key())
        {
            m.validation_errors.push(Diag::error(
                "Unsupported argument",
                format!("An argument named {:?} is not expected here.", a.key()),
            ));
        }
    }
}

/// A `moved` block between `terraform_data` resources or instances.
fn load_moved(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    let at = |k: &str| {
        attr(b.body(), k)
            .map(expr_text)
            .and_then(|t| MoveAddr::parse(&t))
    };
    match (at("from"), at("to")) {
        (Some(from), Some(to)) if from.key.is_some() == to.key.is_some() => {
            m.moves.push((from, to));
            Ok(())
        }
        _ => Err(unsupported(
            "moved block",
            &format!(
                "{file}: only moves between terraform_data resources or instances are implemented."
            ),
        )),
    }
}

/// A `data "terraform_remote_state"` block (no `count`, `for_each` or `workspace`).
fn load_remote_state(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    let name = label(b, 1);
    let known = ["backend", "config", "defaults", "depends_on"];
    let other = b.body().attributes().find(|a| !known.contains(&a.key()));
    if other.is_some() || b.body().blocks().next().is_some() {
        return Err(unsupported(
            "data source argument",
            &format!("{file}: data \"terraform_remote_state\" {name:?}: only backend, config, defaults and depends_on are implemented."),
        ));
    }
    let backend = attr(b.body(), "backend").cloned().ok_or_else(|| {
        Diag::error(
            "Missing required argument",
            "The argument \"backend\" is required, but no definition was found.",
        )
    })?;
    m.data.push(DataDecl {
        name,
        backend,
        config: attr(b.body(), "config").cloned(),
        defaults: attr(b.body(), "defaults").cloned(),
    });
    Ok(())
}

/// A `removed` block for a `terraform_data` resource, with an optional `lifecycle { destroy }`.
fn load_removed(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    let from = attr(b.body(), "from").map(expr_text).unwrap_or_default();
    let Some(addr) = MoveAddr::parse(&from) else {
        return Err(unsupported(
            "removed block",
            &format!("{file}: only removed blocks for terraform_data resources are implemented."),
        ));
    };
    if addr.key.is_some() {
        return Err(Diag::error(
            "Resource instance keys not allowed",
            "Resource address must be a resource (e.g. \"test_instance.foo\"), not a resource instance (e.g. \"test_instance.foo[1]\").",
        ));
    }
    let mut destroy = true;
    for inner in b.body().blocks() {
        let flag = attr(inner.body(), "destroy").map(expr_text);
        match (inner.identifier(), flag.as_deref()) {
            ("lifecycle", Some("false")) => destroy = false,
            ("lifecycle", Some("true") | None) => {}
            _ => {
                return Err(unsupported(
                    "removed block",
                    &format!("{file}: removed {from}: only a lifecycle block with a literal destroy is implemented (no provisioners)."),
                ))
            }
        }
    }
    m.removed.push((addr.name, destroy));
    Ok(())
}

/// A `check` block of `assert`s.
fn load_check(m: &mut Module, file: &str, b: &Block) -> Result<(), Diag> {
    let mut asserts = Vec::new();
    for inner in b.body().blocks() {
        let (c, msg) = (
            attr(inner.body(), "condition"),
            attr(inner.body(), "error_message"),
        );
        match (inner.identifier(), c, msg) {
                    ("assert", Some(c), Some(msg)) => asserts.push((c.clone(), msg.clone())),
                    _ => return Err(unsupported(
                        "check block",
                        &format!("{file}: check {:?}: only assert blocks with condition and error_message are implemented.", label(b, 0)),
                    )),
                }
    }
    m.checks.push((label(b, 0), asserts));
    Ok(())
}

/// Computes each resource's dependencies on other resources, directly or through locals.
fn resolve_deps(m: &mut Module) {
    let local_texts: Vec<(String, String)> = m
        .locals
        .iter()
        .map(|(n, e)| (n.clone(), expr_text(e)))
        .collect();
    let names: Vec<String> = m.resources.iter().map(|r| r.name.clone()).collect();
    for r in &mut m.resources {
        let (mut deps, mut data_deps) = (Vec::new(), Vec::new());
        let mut seen_locals: Vec<String> = Vec::new();
        let mut texts = vec![r.text.clone()];
        while let Some(t) = texts.pop() {
            for d in refs(&t, "terraform_data") {
                if d != r.name && names.contains(&d) && !deps.contains(&d) {
                    deps.push(d);
                }
            }
            for d in refs(&t, "data.terraform_remote_state") {
                if !data_deps.contains(&d) {
                    data_deps.push(d);
                }
            }
            for l in refs(&t, "local") {
                if !seen_locals.contains(&l) {
                    if let Some((_, lt)) = local_texts.iter().find(|(n, _)| *n == l) {
                        texts.push(lt.clone());
                    }
                    seen_locals.push(l);
                }
            }
        }
        r.deps = deps;
        r.data_deps = data_deps;
    }
}

impl Module {
    /// `Removed resource still exists` for a `removed` block whose resource is still declared.
    pub fn removed_still_declared(&self) -> Option<Diag> {
        let (name, _) = self
            .removed
            .iter()
            .find(|(n, _)| self.resources.iter().any(|r| &r.name == n))?;
        Some(Diag::error(
            "Removed resource still exists",
            format!("This statement declares that terraform_data.{name} was removed, but it is still declared in configuration."),
        ))
    }

    /// True when a `removed` block says to forget the resource's instances, not destroy them.
    pub fn forgets(&self, name: &str) -> bool {
        self.removed
            .iter()
            .any(|(n, destroy)| n == name && !destroy)
    }

    /// True when HCL text refers to a sensitive variable or calls `sensitive(...)`, directly or
    /// through locals, outside `nonsensitive(...)` (sensitivity carried through resources is not
    /// tracked by the stand-in).
    pub fn refers_to_sensitive(&self, text: &str) -> bool {
        let secret = |v: &String| self.variables.iter().any(|d| d.sensitive && d.name == *v);
        let mut seen: Vec<String> = Vec::new();
        let mut texts = vec![crate::sensitivity::without_nonsensitive(text)];
        while let Some(t) = texts.pop() {
            if refs(&t, "var").iter().any(secret) || crate::sensitivity::calls_sensitive(&t) {
                return true;
            }
            for l in refs(&t, "local") {
                if seen.contains(&l) {
                    continue;
                }
                if let Some((_, e)) = self.locals.iter().find(|(n, _)| *n == l) {
                    texts.push(crate::sensitivity::without_nonsensitive(&expr_text(e)));
                }
                seen.push(l);
            }
        }
        false
    }
}

/// `Output refers to sensitive values` for each output not marked sensitive whose value refers
/// to a sensitive variable.
fn sensitive_outputs(m: &Module) -> Vec<Diag> {
    m.outputs
        .iter()
        .filter(|o| !o.sensitive && m.refers_to_sensitive(&expr_text(&o.value)))
        .map(|_| {
            Diag::error(
                "Output refers to sensitive values",
                "To reduce the risk of accidentally exporting sensitive data that was intended to be only internal, OpenTofu requires that any root module output containing sensitive data be explicitly marked as sensitive, to confirm your intent.\n\nIf you do intend to export this data, annotate the output value as sensitive by adding the following argument:\n    sensitive = true",
            )
        })
        .collect()
}

/// `Invalid for_each argument` for each resource whose `for_each` is sensitive: its keys would
/// show the value.
fn sensitive_for_each(m: &Module) -> Vec<Diag> {
    let sensitive = |r: &&ResourceDecl| {
        let e = r.for_each.as_ref();
        e.is_some_and(|e| m.refers_to_sensitive(&expr_text(e)))
    };
    m.resources
        .iter()
        .filter(sensitive)
        .map(|_| {
            Diag::error(
                "Invalid for_each argument",
                "Sensitive values, or values derived from sensitive values, cannot be used as for_each arguments. If used, the sensitive value could be exposed as a resource instance key.",
            )
        })
        .collect()
}

/// Orders resources so that each comes after those it depends on (file order otherwise).
pub fn topo_order(m: &Module) -> Result<Vec<usize>, Diag> {
    let mut order = Vec::new();
    let mut state = vec![0u8; m.resources.len()];
    fn visit(m: &Module, i: usize, st: &mut [u8], out: &mut Vec<usize>) -> Result<(), Diag> {
        if st[i] == 2 {
            return Ok(());
        }
        if st[i] == 1 {
            return Err(Diag::error(
                "Cycle in resource dependencies",
                format!("terraform_data.{} depends on itself.", m.resources[i].name),
            ));
        }
        st[i] = 1;
        for d in &m.resources[i].deps {
            if let Some(j) = m.resources.iter().position(|r| &r.name == d) {
                visit(m, j, st, out)?;
            }
        }
        st[i] = 2;
        out.push(i);
        Ok(())
    }
    for i in 0..m.resources.len() {
        visit(m, i, &mut state, &mut order)?;
    }
    Ok(order)
}

/// Checks `required_version` against the stand-in's version (`>=`, `>`, `<=`, `<`, `=`, `!=`,
/// `~>`, comma-separated).
pub fn version_allowed(constraint: &str, version: &str) -> bool {
    fn parse(v: &str) -> Vec<u64> {
        v.trim()
            .trim_start_matches('v')
            .split(['.', '-'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    }
    let have = parse(version);
    constraint.split(',').all(|c| {
        let c = c.trim();
        let (op, v) = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| c.strip_prefix(op).map(|rest| (*op, rest)))
            .unwrap_or(("=", c));
        let want = parse(v);
        let cmp = |a: &[u64], b: &[u64]| {
            let n = a.len().max(b.len());
            (0..n)
                .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        match op {
            ">=" => cmp(&have, &want).is_ge(),
            ">" => cmp(&have, &want).is_gt(),
            "<=" => cmp(&have, &want).is_le(),
            "<" => cmp(&have, &want).is_lt(),
            "!=" => cmp(&have, &want).is_ne(),
            "~>" => {
                let parts = v.trim().split('.').count();
                let prefix = parts.saturating_sub(1).max(1);
                cmp(&have, &want).is_ge()
                    && have[..prefix.min(have.len())] == want[..prefix.min(want.len())]
            }
            _ => cmp(&have, &want).is_eq(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        assert_eq!(
            refs(
                "x = terraform_data.a.id + local.b\ny = \"${terraform_data.c_d.output}\"",
                "terraform_data"
            ),
            vec!["a", "c_d"]
        );
        assert_eq!(refs("var.region", "local"), Vec::<String>::new());
    }

    #[test]
    fn version_constraints() {
        assert!(version_allowed(">= 1.6", "1.9.0"));
        assert!(version_allowed(">= 1.6, < 2.0", "1.9.0"));
        assert!(!version_allowed(">= 1.10", "1.9.0"));
        assert!(version_allowed("~> 1.9", "1.9.0"));
        assert!(!version_allowed("~> 1.8.0", "1.9.0"));
    }

    #[test]
    fn rejects_other_providers_clearly() {
        let err = load(
            Path::new("."),
            vec![(
                "main.tf".into(),
                "resource \"aws_instance\" \"x\" {}\n".into(),
            )],
        )
        .err()
        .unwrap();
        assert_eq!(err[0].summary, "Unsupported resource type");
        assert!(err[0].detail.contains("aws_instance"));
    }
}
