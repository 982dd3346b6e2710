//! The references between stacks (`stack.<name>.outputs.<output>` in inputs, `depends_on`):
//! found, checked against the stacks that exist, and refused when they form a cycle.

use super::{Pos, Problem, Stack, Workflow};
use hcl::expr::{Expression as E, TemplateExpr, TraversalOperator as Op};
use std::collections::BTreeMap;

/// Which target of a `for_each` stack a reference means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Index {
    /// The stack has no `for_each`: its only target.
    None,
    /// `stack.x[each.key]`: the target with the referring target's own key.
    EachKey,
    /// `stack.x["eu"]`: that one.
    Key(String),
}

/// One `stack.<name>[...].outputs.<output>` in a stack's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    pub stack: String,
    pub index: Index,
    /// The output named (None: the whole `outputs` object).
    pub output: Option<String>,
    pub pos: Pos,
}

/// The stack an expression names: `"network"` or `stack.network`.
pub fn stack_named(e: &E) -> Option<String> {
    match e {
        E::String(s) => Some(s.clone()),
        E::Traversal(t) => match (&t.expr, t.operators.as_slice()) {
            (E::Variable(v), [Op::GetAttr(n)]) if v.as_str() == "stack" => Some(n.to_string()),
            _ => None,
        },
        _ => None,
    }
}

const REF_SHAPE: &str = "refer to another stack's outputs as stack.NAME.outputs.OUTPUT (stack.NAME[each.key].outputs.OUTPUT for a stack with for_each)";

/// Every reference to a stack inside `e` (`pos` is where `e` is); misshapen ones are problems.
pub fn refs(e: &E, pos: Pos, out: &mut Vec<Ref>, bad: &mut Vec<(Pos, String)>) {
    match e {
        E::Variable(v) if v.as_str() == "stack" => bad.push((pos, REF_SHAPE.into())),
        E::Traversal(t) => {
            if matches!(&t.expr, E::Variable(v) if v.as_str() == "stack") {
                match one_ref(&t.operators, pos) {
                    Some(r) => out.push(r),
                    None => bad.push((pos, REF_SHAPE.into())),
                }
            } else {
                refs(&t.expr, pos, out, bad);
            }
            for op in &t.operators {
                if let Op::Index(i) = op {
                    refs(i, pos, out, bad);
                }
            }
        }
        E::Array(items) => items.iter().for_each(|x| refs(x, pos, out, bad)),
        E::Object(o) => o.values().for_each(|x| refs(x, pos, out, bad)),
        E::FuncCall(f) => f.args.iter().for_each(|x| refs(x, pos, out, bad)),
        E::Parenthesis(x) => refs(x, pos, out, bad),
        E::Conditional(c) => {
            for x in [&c.cond_expr, &c.true_expr, &c.false_expr] {
                refs(x, pos, out, bad);
            }
        }
        E::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => refs(&u.expr, pos, out, bad),
            hcl::expr::Operation::Binary(b) => {
                refs(&b.lhs_expr, pos, out, bad);
                refs(&b.rhs_expr, pos, out, bad);
            }
        },
        E::ForExpr(f) => {
            let mut parts = vec![&f.collection_expr, &f.value_expr];
            parts.extend(f.key_expr.as_ref());
            parts.extend(f.cond_expr.as_ref());
            parts.into_iter().for_each(|x| refs(x, pos, out, bad));
        }
        E::TemplateExpr(t) => template_refs(t, pos, out, bad),
        _ => {}
    }
}

/// The references inside a string template's interpolations.
fn template_refs(t: &TemplateExpr, pos: Pos, out: &mut Vec<Ref>, bad: &mut Vec<(Pos, String)>) {
    let Ok(tpl) = hcl::Template::from_expr(t) else {
        return;
    };
    for el in tpl.elements() {
        if let hcl::template::Element::Interpolation(i) = el {
            refs(&i.expr, pos, out, bad);
        } else if let hcl::template::Element::Directive(_) = el {
            bad.push((pos, "template directives (%{ if }, %{ for }) are not supported in a workflow file: use a conditional or for expression".into()));
        }
    }
}

/// `.name[index].outputs.output` after `stack`.
fn one_ref(ops: &[Op], pos: Pos) -> Option<Ref> {
    let (Op::GetAttr(name), rest) = ops.split_first()? else {
        return None;
    };
    let (index, rest) = match rest.split_first() {
        Some((Op::Index(i), rest)) => (index_of(i)?, rest),
        _ => (Index::None, rest),
    };
    let output = match rest {
        [Op::GetAttr(o)] if o.as_str() == "outputs" => None,
        [Op::GetAttr(o), Op::GetAttr(n), ..] if o.as_str() == "outputs" => Some(n.to_string()),
        _ => return None,
    };
    Some(Ref {
        stack: name.to_string(),
        index,
        output,
        pos,
    })
}

fn index_of(i: &E) -> Option<Index> {
    match i {
        E::String(s) => Some(Index::Key(s.clone())),
        E::Traversal(t) => match (&t.expr, t.operators.as_slice()) {
            (E::Variable(v), [Op::GetAttr(k)]) if v.as_str() == "each" && k.as_str() == "key" => {
                Some(Index::EachKey)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Finds every stack's references and checks them: known stacks, indexed as their `for_each`
/// says, nothing referenced where it must be known at the start, and no cycle.
pub fn check(wf: &mut Workflow, file: &str, problems: &mut Vec<Problem>) {
    let fanned: BTreeMap<String, bool> = wf
        .stacks
        .iter()
        .map(|s| (s.name.clone(), s.for_each.is_some()))
        .collect();
    let mut bad = Vec::new();
    for s in &mut wf.stacks {
        let mut found = Vec::new();
        for i in &s.inputs {
            refs(&i.expr, i.pos, &mut found, &mut bad);
        }
        let mut early = Vec::new();
        let fe = s.for_each.iter().map(|(e, p)| (e, *p));
        for (e, p) in fe.chain(std::iter::once((&s.workspace, s.pos))) {
            refs(e, p, &mut early, &mut bad);
        }
        for t in &s.tags {
            refs(&t.1, s.pos, &mut early, &mut bad);
        }
        for r in early {
            bad.push((r.pos, format!("stack {:?}: for_each, workspace and tags must be known when the workflow starts; they cannot use stack.{}", s.name, r.stack)));
        }
        for r in &found {
            if let Some(m) = ref_problem(s, r, &fanned) {
                bad.push((r.pos, m));
            }
        }
        for (d, p) in &s.depends_on {
            if !fanned.contains_key(d) {
                bad.push((*p, unknown(d, &fanned)));
            }
        }
        s.refs = found;
    }
    problems.extend(bad.into_iter().map(|(pos, message)| Problem {
        file: file.to_string(),
        pos: Some(pos),
        message,
    }));
    if let Some((cycle, pos)) = find_cycle(wf) {
        problems.push(Problem {
            file: file.to_string(),
            pos: Some(pos),
            message: format!("dependency cycle: {}", cycle.join(" -> ")),
        });
    }
}

fn unknown(name: &str, known: &BTreeMap<String, bool>) -> String {
    let names: Vec<&str> = known.keys().map(|k| k.as_str()).collect();
    format!("no stack named {name:?} (stacks: {})", names.join(", "))
}

/// What is wrong with one reference of stack `s`, if anything.
fn ref_problem(s: &Stack, r: &Ref, fanned: &BTreeMap<String, bool>) -> Option<String> {
    let Some(&their_fan) = fanned.get(&r.stack) else {
        return Some(unknown(&r.stack, fanned));
    };
    if r.stack == s.name {
        return Some(format!(
            "stack {:?} uses its own outputs: a stack cannot depend on itself",
            s.name
        ));
    }
    match (&r.index, their_fan) {
        (Index::None, true) => Some(format!("stack {:?} has for_each: say which one, stack.{}[each.key].outputs... or stack.{}[\"KEY\"].outputs...", r.stack, r.stack, r.stack)),
        (Index::EachKey | Index::Key(_), false) => Some(format!("stack {:?} has no for_each: refer to it as stack.{}.outputs...", r.stack, r.stack)),
        (Index::EachKey, true) if s.for_each.is_none() => Some(format!("stack {:?} has no for_each, so each.key means nothing in it", s.name)),
        _ => None,
    }
}

/// The stacks each stack waits for (references and `depends_on`), by name.
pub fn upstreams(s: &Stack) -> Vec<String> {
    let mut out: Vec<String> = s.refs.iter().map(|r| r.stack.clone()).collect();
    out.extend(s.depends_on.iter().map(|d| d.0.clone()));
    out.sort();
    out.dedup();
    out
}

/// A cycle among the stacks, named in order, with where its first stack is.
fn find_cycle(wf: &Workflow) -> Option<(Vec<String>, Pos)> {
    // 0 unvisited, 1 on the path, 2 done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    let mut path: Vec<&str> = Vec::new();
    fn visit<'a>(
        wf: &'a Workflow,
        n: &'a str,
        mark: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| *p == n)?;
                let mut c: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        let s = wf.stack(n)?;
        mark.insert(n, 1);
        path.push(n);
        for u in upstreams(s) {
            let Some(u) = wf.stack(&u).map(|x| x.name.as_str()) else {
                continue;
            };
            if let Some(c) = visit(wf, u, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark.insert(n, 2);
        None
    }
    for s in &wf.stacks {
        if let Some(c) = visit(wf, &s.name, &mut mark, &mut path) {
            let pos = wf.stack(&c[0]).map(|s| s.pos).unwrap_or_default();
            return Some((c, pos));
        }
    }
    None
}
