//! The engine's step after one target changed (its run ended): reads only what that change can
//! move — the target's dependants and what they wait for, the indexed counts of its rollout, and
//! one seek for the workflow run's end — so the work per event does not grow with the workflow
//! run's size. Touches: workflow_targets, workflow_rollouts, workflow_runs, runs (the targets it
//! starts).
//!
//! The decisions are the same rules as the whole-run [`super::workflow::advance`] (which
//! commands such as start, retry and resume use): a dependant starts once everything it waits
//! for succeeded, a failure skips what waits for it (naming it), a rollout's gate
//! ([`rollout::decide`]) lets its waves go.

use super::workflow::{finish, parsed, start_one};
use crate::error::Result;
use crate::store::*;
use crate::workflows::rollout::{self, Progress, Release, StackView};
use crate::workflows::{Target, TargetState, WorkflowState};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use tofuflow_proto::workflow as wf;

/// A workflow run's shape, which never changes once it starts: each target's stack and
/// position, and whom it reads from and who reads from it.
pub(crate) struct Graph {
    position: HashMap<String, i64>,
    stack_of: HashMap<String, String>,
    deps: HashMap<String, Vec<String>>,
    dependants: HashMap<String, Vec<String>>,
    /// Each stack's targets' positions, in order (an index in the stack → its position).
    stacks: HashMap<String, Vec<i64>>,
}

impl Graph {
    fn of(targets: &[Target]) -> Graph {
        let mut g = Graph {
            position: HashMap::new(),
            stack_of: HashMap::new(),
            deps: HashMap::new(),
            dependants: HashMap::new(),
            stacks: HashMap::new(),
        };
        for (n, t) in targets.iter().enumerate() {
            g.position.insert(t.key.clone(), n as i64);
            g.stack_of.insert(t.key.clone(), t.stack.clone());
            g.deps.insert(t.key.clone(), t.deps.clone());
            g.stacks.entry(t.stack.clone()).or_default().push(n as i64);
            for d in &t.deps {
                g.dependants
                    .entry(d.clone())
                    .or_default()
                    .push(t.key.clone());
            }
        }
        g
    }

    /// What `key` waits for: its upstreams, or for a destroy its dependants.
    fn waits(&self, key: &str, destroy: bool) -> &[String] {
        let m = if destroy {
            &self.dependants
        } else {
            &self.deps
        };
        m.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Who waits for `key` (the other direction).
    fn waited_by(&self, key: &str, destroy: bool) -> &[String] {
        self.waits(key, !destroy)
    }
}

/// A workflow run's graph, built once per process from its targets.
async fn graph(tx: &mut Tx, w: &WorkflowRun) -> Result<Arc<Graph>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Graph>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(g) = cache.lock().ok().and_then(|c| c.get(&w.id).cloned()) {
        return Ok(g);
    }
    let g = Arc::new(Graph::of(&targets_c(tx, &w.id).await?));
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(w.id.clone(), g.clone());
    }
    Ok(g)
}

/// Moves a workflow run on after `changed` targets changed state (written already).
pub(crate) async fn step(
    tx: &mut Tx,
    policy: &Policy,
    w: &WorkflowRun,
    changed: Target,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    let result = step_inner(tx, policy, w, changed).await;
    // The engine's own time (`/metrics`: tofuflow_workflow_step_seconds).
    crate::metrics::recorded().workflow_step(t0.elapsed());
    result
}

async fn step_inner(tx: &mut Tx, policy: &Policy, w: &WorkflowRun, changed: Target) -> Result<()> {
    if w.state != WorkflowState::Running {
        return Ok(());
    }
    let file = parsed(w)?;
    let g = graph(tx, w).await?;
    let mut changed = vec![changed];
    while !changed.is_empty() {
        let (candidates, stacks) = propagate(tx, w, &g, &changed).await?;
        let mut start = ready(tx, w, &g, candidates.iter().map(String::as_str), |k| {
            !has_rollout(&file, &g, k)
        })
        .await?;
        let released = gate(tx, w, &file, &g, &stacks).await?;
        start.extend(ready(tx, w, &g, released.iter().map(String::as_str), |_| true).await?);
        changed = start_all(tx, policy, w, &file, start).await?;
    }
    end_if_done(tx, w).await
}

fn has_rollout(file: &wf::Workflow, g: &Graph, key: &str) -> bool {
    g.stack_of
        .get(key)
        .and_then(|s| file.stack(s))
        .is_some_and(|s| s.rollout.is_some())
}

/// Skips what waits for a target that did not succeed (transitively, naming the first
/// failure), and answers the targets that may now be ready (those waiting for a target that
/// succeeded, and a target waiting again) and the stacks whose counts changed.
async fn propagate(
    tx: &mut Tx,
    w: &WorkflowRun,
    g: &Graph,
    changed: &[Target],
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut candidates = BTreeSet::new();
    let mut stacks = BTreeSet::new();
    let mut blocked: Vec<(String, String)> = Vec::new();
    for t in changed {
        stacks.insert(t.stack.clone());
        match t.state {
            TargetState::Succeeded => {
                candidates.extend(g.waited_by(&t.key, w.destroy).iter().cloned())
            }
            TargetState::Waiting => {
                candidates.insert(t.key.clone());
            }
            TargetState::Failed => {
                blocked.push((t.key.clone(), format!("skipped: {} failed", t.key)))
            }
            TargetState::Cancelled => {
                blocked.push((t.key.clone(), format!("skipped: {} was cancelled", t.key)))
            }
            TargetState::Skipped => blocked.push((t.key.clone(), t.reason.clone())),
            TargetState::Running => {}
        }
    }
    while let Some((key, why)) = blocked.pop() {
        let next: Vec<&str> = g
            .waited_by(&key, w.destroy)
            .iter()
            .map(String::as_str)
            .collect();
        for d in targets_named_c(tx, &w.id, &next).await? {
            if d.state != TargetState::Waiting {
                continue;
            }
            set_target(tx, &w.id, &d, TargetState::Skipped, None, &why).await?;
            stacks.insert(d.stack.clone());
            blocked.push((d.key, why.clone()));
        }
    }
    Ok((candidates, stacks))
}

/// Of `keys`, those waiting with everything they wait for succeeded (and `pick` true).
async fn ready<'a>(
    tx: &mut Tx,
    w: &WorkflowRun,
    g: &Graph,
    keys: impl Iterator<Item = &'a str>,
    pick: impl Fn(&str) -> bool,
) -> Result<Vec<Target>> {
    let mine: Vec<&str> = keys.filter(|k| pick(k)).collect();
    let mut out = Vec::new();
    for t in targets_named_c(tx, &w.id, &mine).await? {
        if t.state != TargetState::Waiting {
            continue;
        }
        let waits: Vec<&str> = g
            .waits(&t.key, w.destroy)
            .iter()
            .map(String::as_str)
            .collect();
        let up = targets_named_c(tx, &w.id, &waits).await?;
        if up.len() == waits.len() && up.iter().all(|u| u.state == TargetState::Succeeded) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Runs the gate of each rollout among `stacks` on its indexed counts; answers the targets it
/// lets go (they still start only when ready).
async fn gate(
    tx: &mut Tx,
    w: &WorkflowRun,
    file: &wf::Workflow,
    g: &Graph,
    stacks: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let stored = rollouts_c(tx, &w.id).await?;
    let mut out = Vec::new();
    for name in stacks {
        let Some(r) = file.stack(name).and_then(|s| s.rollout.as_ref()) else {
            continue;
        };
        let positions = g.stacks.get(name).map(Vec::as_slice).unwrap_or_default();
        let before = stored.iter().find(|p| &p.stack == name).cloned();
        let mut p = before.clone().unwrap_or_else(|| Progress::new(name));
        let view = stack_view(tx, &w.id, name, positions).await?;
        if let Some(Release { end, room }) = rollout::decide(r, &mut p, &view, now_ms()) {
            if let Some(last) = end.checked_sub(1).and_then(|e| positions.get(e)) {
                out.extend(waiting_upto_c(tx, &w.id, name, *last, room).await?);
            }
        }
        if before.as_ref() != Some(&p) {
            save_rollout(tx, &w.id, &p).await?;
        }
    }
    Ok(out)
}

/// A rollout stack's counts, read through the indexes (a few seeks, whatever its size).
async fn stack_view(tx: &mut Tx, id: &str, stack: &str, positions: &[i64]) -> Result<StackView> {
    let waiting = first_in_state_c(tx, id, stack, TargetState::Waiting).await?;
    let running = first_in_state_c(tx, id, stack, TargetState::Running).await?;
    let first_open = match waiting.into_iter().chain(running).min() {
        Some(pos) => positions.partition_point(|p| *p < pos),
        None => positions.len(),
    };
    Ok(StackView {
        total: positions.len(),
        failed: count_in_state_c(tx, id, stack, TargetState::Failed).await?,
        running: count_in_state_c(tx, id, stack, TargetState::Running).await?,
        first_open,
    })
}

/// Starts each target; answers those that could not start (now failed: their dependants are
/// skipped in the next round).
async fn start_all(
    tx: &mut Tx,
    policy: &Policy,
    w: &WorkflowRun,
    file: &wf::Workflow,
    start: Vec<Target>,
) -> Result<Vec<Target>> {
    let mut failed = Vec::new();
    let mut seen = BTreeSet::new();
    for mut t in start {
        if !seen.insert(t.key.clone()) {
            continue;
        }
        if !start_one(tx, policy, w, file, &mut t).await? {
            failed.push(t);
        }
    }
    Ok(failed)
}

/// Ends the workflow run when no target is waiting or running (two index seeks).
async fn end_if_done(tx: &mut Tx, w: &WorkflowRun) -> Result<()> {
    for open in [TargetState::Waiting, TargetState::Running] {
        if any_in_state_c(tx, &w.id, open).await? {
            return Ok(());
        }
    }
    let end = if any_in_state_c(tx, &w.id, TargetState::Failed).await? {
        WorkflowState::Failed
    } else if any_in_state_c(tx, &w.id, TargetState::Skipped).await?
        || any_in_state_c(tx, &w.id, TargetState::Cancelled).await?
    {
        WorkflowState::Cancelled
    } else {
        WorkflowState::Succeeded
    };
    finish(tx, w, end).await
}
