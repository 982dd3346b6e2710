//! Reading a workflow file into [`Workflow`]: every problem found, each with its position.

use super::{graph, Approval, Input, Pos, Problem, Stack, Workflow};
use hcl_edit::expr::{Expression as Ex, ObjectKey};
use hcl_edit::structure::{Attribute, Block, BlockLabel, Structure};
use hcl_edit::Span;

/// What a file's blocks say, collected with its problems.
struct Reader<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn pos(&self, span: Option<std::ops::Range<usize>>) -> Pos {
        span.map(|r| Pos::of(self.text, r.start))
            .unwrap_or_default()
    }

    fn problem(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            pos: Some(pos),
            message: message.into(),
        });
    }

    /// A string literal, or a problem naming the attribute.
    fn literal(&mut self, a: &Attribute, what: &str) -> Option<String> {
        match a.value.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                let pos = self.pos(a.value.span());
                self.problem(
                    pos,
                    format!("`{}` must be a quoted string ({what})", a.key.as_str()),
                );
                None
            }
        }
    }
}

/// Parses and checks a workflow file (`file` names it in problems).
pub fn parse(file: &str, text: &str) -> Result<Workflow, Vec<Problem>> {
    let body = hcl_edit::parser::parse_body(text).map_err(|e| {
        vec![Problem {
            file: file.to_string(),
            pos: Some(Pos {
                line: e.location().line(),
                column: e.location().column(),
            }),
            message: format!("not valid HCL: {}", e.message()),
        }]
    })?;
    let mut r = Reader {
        file,
        text,
        problems: Vec::new(),
    };
    let mut wf = Workflow {
        approval: Approval::Each,
        stacks: Vec::new(),
    };
    for s in body.iter() {
        match s {
            Structure::Block(b) if b.ident.as_str() == "stack" => {
                if let Some(stack) = read_stack(&mut r, b) {
                    if wf.stack(&stack.name).is_some() {
                        r.problem(
                            stack.pos,
                            format!(
                                "stack {:?} is defined twice: stack names must be unique",
                                stack.name
                            ),
                        );
                    } else {
                        wf.stacks.push(stack);
                    }
                }
            }
            Structure::Block(b) if b.ident.as_str() == "workflow" => {
                read_settings(&mut r, b, &mut wf)
            }
            Structure::Block(b) => {
                let pos = r.pos(b.span());
                r.problem(
                    pos,
                    format!(
                        "unknown block `{}`: a workflow file holds `workflow` and `stack` blocks",
                        b.ident.as_str()
                    ),
                );
            }
            Structure::Attribute(a) => {
                let pos = r.pos(a.span());
                r.problem(pos, format!("unexpected attribute `{}` at the top level: a workflow file holds `workflow` and `stack` blocks", a.key.as_str()));
            }
        }
    }
    if wf.stacks.is_empty() && r.problems.is_empty() {
        r.problems.push(Problem {
            file: file.to_string(),
            pos: None,
            message: "no `stack` blocks: a workflow needs at least one".into(),
        });
    }
    graph::check(&mut wf, file, &mut r.problems);
    if r.problems.is_empty() {
        Ok(wf)
    } else {
        Err(r.problems)
    }
}

/// The `workflow { approval = ... }` block.
fn read_settings(r: &mut Reader, b: &Block, wf: &mut Workflow) {
    for a in b.body.attributes() {
        match a.key.as_str() {
            "approval" => {
                let Some(v) = r.literal(a, "\"each\", \"once\" or \"auto\"") else {
                    continue;
                };
                match Approval::parse(&v) {
                    Some(x) => wf.approval = x,
                    None => {
                        let pos = r.pos(a.value.span());
                        r.problem(
                            pos,
                            format!("approval {v:?} is not one of \"each\", \"once\", \"auto\""),
                        );
                    }
                }
            }
            k => {
                let pos = r.pos(a.span());
                r.problem(
                    pos,
                    format!("unknown attribute `{k}` in `workflow`: it takes `approval`"),
                );
            }
        }
    }
}

/// One `stack "<name>" { ... }` block.
fn read_stack(r: &mut Reader, b: &Block) -> Option<Stack> {
    let pos = r.pos(b.span());
    let name = match b.labels.as_slice() {
        [BlockLabel::String(s)] => s.as_str().to_string(),
        [BlockLabel::Ident(i)] => i.as_str().to_string(),
        _ => {
            r.problem(
                pos,
                "a stack block takes one label, its name: stack \"network\" { ... }",
            );
            return None;
        }
    };
    if !valid_name(&name) {
        r.problem(
            pos,
            format!(
                "stack name {name:?}: use letters, digits, '_' and '-', starting with a letter"
            ),
        );
    }
    let mut st = Stack {
        name,
        pos,
        source: String::new(),
        workspace: hcl::Expression::Null,
        pool: None,
        inputs: Vec::new(),
        depends_on: Vec::new(),
        for_each: None,
        tags: Vec::new(),
        refs: Vec::new(),
        rollout: None,
        fallback: None,
    };
    for s in b.body.iter() {
        match s {
            Structure::Attribute(a) => stack_attribute(r, a, &mut st),
            Structure::Block(inner) if inner.ident.as_str() == "rollout" => {
                read_rollout(r, inner, &mut st)
            }
            Structure::Block(inner) if inner.ident.as_str() == "fallback" => {
                read_fallback(r, inner, &mut st)
            }
            Structure::Block(inner) => {
                let p = r.pos(inner.span());
                r.problem(
                    p,
                    format!(
                        "unknown block `{}` in stack {:?}: it takes `rollout` and `fallback` blocks",
                        inner.ident.as_str(),
                        st.name
                    ),
                );
            }
        }
    }
    if st.rollout.is_some() && st.for_each.is_none() {
        r.problem(pos, format!("stack {:?} has a rollout but no for_each: a rollout sends a for_each stack's targets out in waves", st.name));
    }
    for (attr, missing) in [
        ("source", st.source.is_empty()),
        ("workspace", st.workspace == hcl::Expression::Null),
    ] {
        if missing {
            r.problem(
                pos,
                format!("stack {:?} has no `{attr}`: it is required", st.name),
            );
        }
    }
    Some(st)
}

/// A stack's `rollout { ... }` block (its values are literals).
fn read_rollout(r: &mut Reader, b: &Block, st: &mut Stack) {
    let pos = r.pos(b.span());
    let mut attrs = Vec::new();
    for a in b.body.attributes() {
        let e: hcl::Expression = a.value.clone().into();
        match hcl::eval::Evaluate::evaluate(&e, &hcl::eval::Context::new()) {
            Ok(v) => attrs.push((a.key.as_str().to_string(), v)),
            Err(e) => {
                let p = r.pos(a.span());
                r.problem(p, format!("rollout {}: {e}", a.key.as_str()));
            }
        }
    }
    match super::rollout::read(&attrs, pos) {
        Ok(x) => st.rollout = Some(x),
        Err(m) => r.problem(pos, m),
    }
}

/// A stack's `fallback { variable = "region", values = [...] }` block.
fn read_fallback(r: &mut Reader, b: &Block, st: &mut Stack) {
    let pos = r.pos(b.span());
    let eval = |name: &str| {
        let a = b.body.get_attribute(name)?;
        let e: hcl::Expression = a.value.clone().into();
        hcl::eval::Evaluate::evaluate(&e, &hcl::eval::Context::new()).ok()
    };
    let variable = eval("variable").and_then(|v| v.as_str().map(str::to_string));
    let values = eval("values").and_then(|v| v.as_array().cloned());
    match (variable, values) {
        (Some(variable), Some(values)) if values.len() >= 2 => {
            if st.inputs.iter().any(|i| i.name == variable) {
                r.problem(
                    pos,
                    format!(
                        "stack {:?}: {variable} is set by the fallback; remove it from inputs",
                        st.name
                    ),
                );
            }
            let values = values.iter().map(super::expand::json).collect();
            st.fallback = Some(super::Fallback {
                variable,
                values,
                pos,
            });
        }
        _ => r.problem(
            pos,
            "fallback takes variable = \"NAME\" and values = [at least two candidates, literals]",
        ),
    }
}

/// One attribute of a stack block.
fn stack_attribute(r: &mut Reader, a: &Attribute, st: &mut Stack) {
    let vpos = r.pos(a.value.span());
    match a.key.as_str() {
        "source" => st.source = r.literal(a, "the module's directory, relative to this file").unwrap_or_default(),
        "pool" => st.pool = r.literal(a, "the agents' pool"),
        "workspace" => st.workspace = a.value.clone().into(),
        "for_each" => st.for_each = Some((a.value.clone().into(), vpos)),
        "inputs" => st.inputs = object_items(r, a),
        "tags" => st.tags = object_items(r, a).into_iter().map(|i| (i.name, i.expr)).collect(),
        "depends_on" => st.depends_on = stack_names(r, a),
        k => r.problem(
            r.pos(a.span()),
            format!("unknown attribute `{k}` in stack {:?}: it takes source, workspace, pool, inputs, depends_on, for_each, tags", st.name),
        ),
    }
}

/// The items of an object attribute (`inputs = { a = 1 }`), each with its position.
fn object_items(r: &mut Reader, a: &Attribute) -> Vec<Input> {
    let Ex::Object(o) = &a.value else {
        let pos = r.pos(a.value.span());
        r.problem(
            pos,
            format!(
                "`{}` must be an object: {{ name = value, ... }}",
                a.key.as_str()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in o.iter() {
        let (name, span) = match k {
            ObjectKey::Ident(i) => (i.as_str().to_string(), i.span()),
            ObjectKey::Expression(e) => match e.as_str() {
                Some(s) => (s.to_string(), e.span()),
                None => {
                    let pos = r.pos(e.span());
                    r.problem(pos, "a key here must be a name or a quoted string");
                    continue;
                }
            },
        };
        out.push(Input {
            name,
            expr: v.expr().clone().into(),
            pos: r.pos(span),
        });
    }
    out
}

/// `depends_on = ["a", stack.b]`.
fn stack_names(r: &mut Reader, a: &Attribute) -> Vec<(String, Pos)> {
    let Ex::Array(items) = &a.value else {
        let pos = r.pos(a.value.span());
        r.problem(
            pos,
            "`depends_on` must be a list of stack names: [\"network\"]",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in items.iter() {
        let pos = r.pos(e.span());
        let expr: hcl::Expression = e.clone().into();
        match graph::stack_named(&expr) {
            Some(n) => out.push((n, pos)),
            None => r.problem(
                pos,
                "name a stack in `depends_on` as \"network\" or stack.network",
            ),
        }
    }
    out
}

/// Stack names: a letter, then letters, digits, `_` and `-`.
pub(super) fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '-')
        && n.len() <= 64
}
