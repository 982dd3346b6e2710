//! A rollout's gate (pure): which of a `for_each` stack's targets may start now, and how the
//! rollout's own state moves (next wave, pause, halt on an exceeded failure budget, done).
//! The rules (rounding, "exceeded") are in `tofuflow_proto::workflow::rollout`.

use super::{Target, TargetState};
use tofuflow_proto::workflow::rollout::{Pause, Rollout};

macro_rules! rollout_states {
    ($($v:ident = $s:literal),*) => {
        /// The state of one stack's rollout in a workflow run.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum RolloutState { $($v),* }
        impl RolloutState {
            pub fn as_str(self) -> &'static str { match self { $(RolloutState::$v => $s),* } }
            pub fn parse(s: &str) -> Option<RolloutState> { match s { $($s => Some(RolloutState::$v),)* _ => None } }
        }
    };
}

rollout_states!(
    Running = "running",
    Paused = "paused",
    Halted = "halted",
    Aborted = "aborted",
    Done = "done"
);

/// A rollout's progress, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub stack: String,
    pub state: RolloutState,
    /// The current wave (0-based).
    pub wave: usize,
    /// Failures already counted before a resume after a halt (the budget applies to new ones).
    pub forgiven: usize,
    /// The next wave waits until then (a timed pause); 0: no wait.
    pub resume_after_ms: i64,
    pub reason: String,
}

impl Progress {
    pub fn new(stack: &str) -> Progress {
        Progress {
            stack: stack.to_string(),
            state: RolloutState::Running,
            wave: 0,
            forgiven: 0,
            resume_after_ms: 0,
            reason: String::new(),
        }
    }
}

/// Failures that count against the budget.
pub fn failures(p: &Progress, targets: &[&Target]) -> usize {
    let failed = targets
        .iter()
        .filter(|t| t.state == TargetState::Failed)
        .count();
    failed.saturating_sub(p.forgiven)
}

/// What the gate needs to know of a rollout's targets, however it was read: the whole list
/// ([`StackView::of`]) or a few indexed counts (the engine's step for one run's end).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StackView {
    pub total: usize,
    pub failed: usize,
    pub running: usize,
    /// The index (in the stack's order) of the first target not ended yet; `total` if none.
    pub first_open: usize,
}

impl StackView {
    pub fn of(targets: &[&Target]) -> StackView {
        let count = |s: TargetState| targets.iter().filter(|t| t.state == s).count();
        StackView {
            total: targets.len(),
            failed: count(TargetState::Failed),
            running: count(TargetState::Running),
            first_open: targets
                .iter()
                .position(|t| !t.state.is_end())
                .unwrap_or(targets.len()),
        }
    }
}

/// What the gate lets go now: up to `room` of the waiting targets among the first `end`, in
/// order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Release {
    pub end: usize,
    pub room: usize,
}

/// Moves the rollout on (next wave, pause, halt, done) and answers what may start now.
pub fn decide(r: &Rollout, p: &mut Progress, v: &StackView, now_ms: i64) -> Option<Release> {
    let ends = r.wave_ends(v.total);
    let budget = r.budget(v.total);
    let failed = v.failed.saturating_sub(p.forgiven);
    if p.state == RolloutState::Running && failed > budget {
        p.state = RolloutState::Halted;
        p.reason = format!("halted: {failed} failed, more than the {budget} max_failures allows; running targets finish; `tofuflow rollout resume` goes on, `rollout retry-failed` runs the failed ones again, `rollout abort` stops");
    }
    if p.state != RolloutState::Running || now_ms < p.resume_after_ms {
        return None;
    }
    p.resume_after_ms = 0;
    while p.wave < ends.len() && ends[p.wave] <= v.first_open {
        if p.wave + 1 == ends.len() {
            p.state = RolloutState::Done;
            p.reason = format!("all {} waves done", ends.len());
            return None;
        }
        p.wave += 1;
        let done = format!("wave {} of {} done", p.wave, ends.len());
        match r.pause {
            Pause::None => {}
            Pause::Approval => {
                p.state = RolloutState::Paused;
                p.reason = format!("{done}: `tofuflow rollout resume` starts the next");
                return None;
            }
            Pause::For(ms) => {
                p.resume_after_ms = now_ms + ms as i64;
                p.reason = format!("{done}: the next starts after a pause of {}s", ms / 1000);
                return None;
            }
        }
    }
    let room = if r.max_parallel == 0 {
        usize::MAX
    } else {
        (r.max_parallel as usize).saturating_sub(v.running)
    };
    Some(Release {
        end: ends.get(p.wave).copied().unwrap_or(v.total),
        room,
    })
}

/// Moves the rollout on and answers which of its targets (in order) may start now.
pub fn gate(r: &Rollout, p: &mut Progress, targets: &[&Target], now_ms: i64) -> Vec<String> {
    let Some(rel) = decide(r, p, &StackView::of(targets), now_ms) else {
        return Vec::new();
    };
    targets[..rel.end]
        .iter()
        .filter(|t| t.state == TargetState::Waiting)
        .take(rel.room)
        .map(|t| t.key.clone())
        .collect()
}

/// The wave (1-based) each target of a rollout goes out in.
pub fn wave_of(r: &Rollout, total: usize, index: usize) -> usize {
    r.wave_ends(total)
        .iter()
        .position(|e| index < *e)
        .unwrap_or(0)
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tofuflow_proto::workflow::rollout::Size;
    use TargetState::*;

    fn ts(states: &[TargetState]) -> Vec<Target> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| Target {
                key: format!("t{i:02}"),
                stack: "s".into(),
                each: None,
                workspace: format!("w{i}"),
                pool: String::new(),
                deps: Vec::new(),
                tags: BTreeMap::new(),
                state: *s,
                run_id: String::new(),
                runs: Vec::new(),
                reason: String::new(),
                candidate: 0,
                cleaning: false,
            })
            .collect()
    }

    fn rollout(max_failures: Size, pause: Pause) -> Rollout {
        Rollout {
            canary: 1,
            waves: vec![Size::Percent(50), Size::Percent(100)],
            max_parallel: 0,
            max_failures,
            pause,
            pos: Default::default(),
        }
    }

    fn run(r: &Rollout, p: &mut Progress, states: &[TargetState]) -> Vec<String> {
        let t = ts(states);
        let refs: Vec<&Target> = t.iter().collect();
        gate(r, p, &refs, 1000)
    }

    #[test]
    fn the_canary_goes_first_then_each_wave_when_the_last_ended() {
        let r = rollout(Size::Count(0), Pause::None);
        let mut p = Progress::new("s");
        assert_eq!(run(&r, &mut p, &[Waiting; 4]), ["t00"]);
        assert_eq!(
            run(&r, &mut p, &[Running, Waiting, Waiting, Waiting]),
            Vec::<String>::new()
        );
        assert_eq!(
            run(&r, &mut p, &[Succeeded, Waiting, Waiting, Waiting]),
            ["t01"]
        );
        assert_eq!(p.wave, 1);
        assert_eq!(
            run(&r, &mut p, &[Succeeded, Succeeded, Waiting, Waiting]),
            ["t02", "t03"]
        );
        run(&r, &mut p, &[Succeeded; 4]);
        assert_eq!(p.state, RolloutState::Done);
    }

    #[test]
    fn a_budget_equalled_goes_on_and_exceeded_halts() {
        let r = rollout(Size::Count(1), Pause::None);
        let mut p = Progress::new("s");
        p.wave = 1;
        assert_eq!(
            run(&r, &mut p, &[Succeeded, Failed, Waiting, Waiting]),
            ["t02", "t03"]
        );
        assert_eq!(p.state, RolloutState::Running);
        assert!(run(&r, &mut p, &[Succeeded, Failed, Failed, Running]).is_empty());
        assert_eq!(p.state, RolloutState::Halted);
        assert!(
            p.reason.starts_with("halted: 2 failed, more than the 1"),
            "{}",
            p.reason
        );
        // Resumed with the old failures forgiven: the budget applies to new ones.
        p.state = RolloutState::Running;
        p.forgiven = 2;
        assert!(run(&r, &mut p, &[Succeeded, Failed, Failed, Running]).is_empty());
        assert_eq!(p.state, RolloutState::Running);
    }

    #[test]
    fn pauses_wait_for_approval_or_time_and_parallelism_is_capped() {
        let mut r = rollout(Size::Count(0), Pause::Approval);
        let mut p = Progress::new("s");
        assert!(run(&r, &mut p, &[Succeeded, Waiting, Waiting, Waiting]).is_empty());
        assert_eq!((p.state, p.wave), (RolloutState::Paused, 1));
        r.pause = Pause::For(60_000);
        let mut p = Progress::new("s");
        assert!(run(&r, &mut p, &[Succeeded, Waiting, Waiting, Waiting]).is_empty());
        assert_eq!(p.resume_after_ms, 61_000);
        r.max_parallel = 1;
        r.waves = vec![Size::Percent(100)];
        let mut p = Progress::new("s");
        p.wave = 1;
        assert_eq!(
            run(&r, &mut p, &[Succeeded, Waiting, Waiting, Waiting]),
            ["t01"]
        );
        assert_eq!(wave_of(&r, 4, 0), 1);
        assert_eq!(wave_of(&r, 4, 3), 2);
    }
}
