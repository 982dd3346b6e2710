use super::*;

fn t(key: &str, deps: &[&str], state: TargetState) -> Target {
    Target {
        key: key.into(),
        stack: key.into(),
        each: None,
        workspace: key.into(),
        pool: String::new(),
        deps: deps.iter().map(|d| d.to_string()).collect(),
        tags: BTreeMap::new(),
        state,
        run_id: String::new(),
        runs: Vec::new(),
        reason: String::new(),
        candidate: 0,
        cleaning: false,
    }
}

use TargetState::*;

#[test]
fn roots_start_first_and_dependants_when_their_upstreams_succeeded() {
    let ts = [
        t("a", &[], Waiting),
        t("b", &["a"], Waiting),
        t("c", &[], Waiting),
    ];
    assert_eq!(next(&ts, false).start, ["a", "c"]);
    let ts = [
        t("a", &[], Succeeded),
        t("b", &["a", "c"], Waiting),
        t("c", &[], Running),
    ];
    let n = next(&ts, false);
    assert!(n.start.is_empty() && n.end.is_none());
    let ts = [
        t("a", &[], Succeeded),
        t("b", &["a", "c"], Waiting),
        t("c", &[], Succeeded),
    ];
    assert_eq!(next(&ts, false).start, ["b"]);
}

#[test]
fn a_failure_skips_its_dependants_transitively_and_leaves_siblings_alone() {
    let ts = [
        t("a", &[], Failed),
        t("b", &["a"], Waiting),
        t("c", &["b"], Waiting),
        t("d", &[], Waiting),
    ];
    let n = next(&ts, false);
    assert_eq!(
        n.skip,
        [
            ("b".to_string(), "skipped: a failed".to_string()),
            ("c".to_string(), "skipped: a failed".to_string())
        ]
    );
    assert_eq!(n.start, ["d"]);
    assert_eq!(n.end, None);
    let done = [
        t("a", &[], Failed),
        t("b", &["a"], Skipped),
        t("d", &[], Succeeded),
    ];
    assert_eq!(next(&done, false).end, Some(WorkflowState::Failed));
}

#[test]
fn destroy_goes_in_reverse_order() {
    let ts = [t("net", &[], Waiting), t("gpu", &["net"], Waiting)];
    assert_eq!(next(&ts, true).start, ["gpu"]);
    let ts = [t("net", &[], Waiting), t("gpu", &["net"], Succeeded)];
    assert_eq!(next(&ts, true).start, ["net"]);
}

#[test]
fn the_end_state_says_how_it_went() {
    let ok = [t("a", &[], Succeeded), t("b", &["a"], Succeeded)];
    assert_eq!(next(&ok, false).end, Some(WorkflowState::Succeeded));
    let cancelled = [t("a", &[], Cancelled), t("b", &["a"], Waiting)];
    let n = next(&cancelled, false);
    assert_eq!(n.skip[0].1, "skipped: a was cancelled");
    assert_eq!(
        n.end,
        Some(WorkflowState::Cancelled),
        "decided with the skips"
    );
}

#[test]
fn run_ends_map_to_target_states() {
    assert_eq!(outcome(RunState::Applied, "").unwrap().0, Succeeded);
    assert_eq!(
        outcome(RunState::PlannedNoChanges, "").unwrap().0,
        Succeeded
    );
    assert_eq!(
        outcome(RunState::Failed, "tofu apply failed").unwrap(),
        (Failed, "its run failed: tofu apply failed".to_string())
    );
    assert_eq!(outcome(RunState::Rejected, "").unwrap().0, Failed);
    assert_eq!(outcome(RunState::Cancelled, "").unwrap().0, Cancelled);
    assert!(outcome(RunState::AwaitingApproval, "").is_none());
}
