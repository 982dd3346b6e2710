//! Workflow files: stacks that pass real outputs to each other, fanned out with `for_each`.
//! Shared by the CLI (`workflow validate` offline, which module directories to pack) and the
//! coordinator (which checks again and runs it). Pure: no I/O.
//!
//! ```hcl
//! workflow { approval = "each" }        # or "once" (the workflow run as a whole) or "auto"
//! stack "network" {
//!   source    = "./modules/network"     # a directory, relative to the workflow file
//!   workspace = "net/${each.key}"
//!   for_each  = { eu = "10.1.0.0/16", us = "10.2.0.0/16" }
//!   inputs    = { cidr = each.value }
//! }
//! stack "gpu" {
//!   source     = "./modules/gpu"
//!   workspace  = "gpu/${each.key}"
//!   for_each   = ["eu", "us"]
//!   inputs     = { subnet = stack.network[each.key].outputs.subnet_id }
//!   depends_on = ["other"]
//! }
//! ```
//!
//! Parsing (`parse.rs`) keeps every position; `graph.rs` finds the references between stacks
//! and refuses cycles; `expand.rs` fans stacks out into targets with their dependencies;
//! `eval.rs` evaluates a target's inputs once its upstreams' outputs are known.

mod eval;
mod expand;
mod graph;
mod parse;
pub mod rollout;

pub use eval::{inputs, Outputs, Upstream};
pub use expand::{expand, target_key, Target};
pub use graph::{Index, Ref};
pub use parse::parse;

use std::fmt;

/// A position in a workflow file (1-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The position of byte `offset` of `text`.
    pub fn of(text: &str, offset: usize) -> Pos {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Pos { line, column }
    }
}

/// What is wrong with a workflow file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All problems of a file, one per line.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Who approves a workflow run's applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Approval {
    /// Every stack's plan waits for `tofuflow run approve` (the default).
    #[default]
    Each,
    /// The workflow run is approved once (`tofuflow workflow approve`) before anything starts;
    /// its plans then apply without asking again.
    Once,
    /// Plans apply without approval (workspace rules that demand approval still hold).
    Auto,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Each => "each",
            Approval::Once => "once",
            Approval::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Option<Approval> {
        match s {
            "each" => Some(Approval::Each),
            "once" => Some(Approval::Once),
            "auto" => Some(Approval::Auto),
            _ => None,
        }
    }
}

/// One `input = expression` of a stack.
#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub expr: hcl::Expression,
    pub pos: Pos,
}

/// One `stack "<name>" { ... }` block.
#[derive(Clone, Debug)]
pub struct Stack {
    pub name: String,
    pub pos: Pos,
    /// The module directory, relative to the workflow file.
    pub source: String,
    /// The workspace name, a template that may use `each.key` / `each.value`.
    pub workspace: hcl::Expression,
    pub pool: Option<String>,
    pub inputs: Vec<Input>,
    /// Stacks named in `depends_on` (order only), with where they were named.
    pub depends_on: Vec<(String, Pos)>,
    pub for_each: Option<(hcl::Expression, Pos)>,
    pub tags: Vec<(String, hcl::Expression)>,
    /// The `stack.<name>...` references in its inputs (found by `graph.rs`).
    pub refs: Vec<Ref>,
    /// How its targets go out, for a `for_each` stack.
    pub rollout: Option<rollout::Rollout>,
    /// Candidates for one variable, tried in order when a run fails for lack of capacity.
    pub fallback: Option<Fallback>,
}

/// `fallback { variable = "region", values = [...] }`: the variable starts with the first
/// value; a capacity error moves the target to the next (after cleaning up what it left).
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub variable: String,
    pub values: Vec<serde_json::Value>,
    pub pos: Pos,
}

/// A parsed, checked workflow file.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub approval: Approval,
    pub stacks: Vec<Stack>,
}

impl Workflow {
    pub fn stack(&self, name: &str) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.name == name)
    }

    /// The module directories the stacks use, each once, in file order.
    pub fn sources(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.stacks {
            if !out.contains(&s.source) {
                out.push(s.source.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
