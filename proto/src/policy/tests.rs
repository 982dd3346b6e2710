use super::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(5);

fn plan(actions: &[(&str, &str, &[&str])]) -> String {
    let rcs: Vec<_> = actions
        .iter()
        .map(|(address, ty, acts)| {
            json!({"address": address, "type": ty, "change": {"actions": acts, "before": {"input": {"protected": true}}}})
        })
        .collect();
    json!({"format_version": "1.2", "resource_changes": rcs}).to_string()
}

fn eval(source: &str, plan_json: &str) -> Evaluation {
    let input = Input::new(plan_json, &json!({"workspace": "dev/app"})).unwrap();
    evaluate("p", source, &input, LIMIT)
}

#[test]
fn deny_and_warn_messages_are_collected_sorted_and_outcome_is_the_strongest() {
    let src = r#"package main
import rego.v1
deny contains sprintf("%s is deleted", [rc.address]) if { some rc in input.resource_changes; "delete" in rc.change.actions }
warn_size contains "big" if count(input.resource_changes) > 1
"#;
    let e = eval(
        src,
        &plan(&[("b.x", "t", &["delete"]), ("a.x", "t", &["delete"])]),
    );
    assert_eq!(e.deny, vec!["a.x is deleted", "b.x is deleted"]);
    assert_eq!(e.warn, vec!["big"]);
    assert_eq!(e.outcome(), Outcome::Deny);
    let e = eval(src, &plan(&[("a.x", "t", &["create"])]));
    assert_eq!(e.outcome(), Outcome::Pass);
}

#[test]
fn conftest_v0_policies_and_structured_messages_work_unchanged() {
    let src = r#"package main
deny[msg] { input.resource_changes[_].type == "aws_iam_user"; msg := "no IAM users" }
violation[{"msg": m}] { input.resource_changes[_].type == "aws_iam_user"; m := "still no IAM users" }
"#;
    assert_eq!(check("p", src).unwrap().syntax, Syntax::V0);
    let e = eval(src, &plan(&[("u", "aws_iam_user", &["create"])]));
    assert_eq!(e.deny, vec!["no IAM users", "still no IAM users"]);
}

#[test]
fn auto_approve_and_the_context_are_read() {
    let src = r#"package tofuflow.plans
import rego.v1
auto_approve if input.tofuflow.workspace == "dev/app"
"#;
    let e = eval(src, &plan(&[]));
    assert!(e.auto_approve);
    assert_eq!(e.outcome(), Outcome::AutoApprove);
    assert_eq!(check("p", src).unwrap().package, "data.tofuflow.plans");
}

#[test]
fn a_policy_that_does_not_compile_is_refused_with_the_reason() {
    let err = check(
        "broken",
        "package main\nimport rego.v1\ndeny contains msg if {",
    )
    .unwrap_err();
    assert!(
        err.starts_with("policy broken does not compile: broken.rego:3:"),
        "{err}"
    );
    let err = check("nopkg", "deny := true").unwrap_err();
    assert!(err.contains("does not compile"), "{err}");
}

#[test]
fn a_looping_policy_is_stopped_by_its_time_limit() {
    let src = r#"package main
import rego.v1
deny contains "never" if { some i in numbers.range(1, 100000); some j in numbers.range(1, 100000); i * j < 0 }
"#;
    check("loop", src).unwrap();
    let input = Input::new(&plan(&[]), &json!({})).unwrap();
    let limit = Duration::from_millis(50);
    let e = evaluate("loop", src, &input, limit);
    assert_eq!(e.error, Some(EvalError::TimedOut { limit }));
    assert_eq!(e.outcome(), Outcome::Error);
    assert!(e.duration < Duration::from_secs(2), "{:?}", e.duration);
}

#[test]
fn an_input_that_is_not_a_plan_object_is_refused() {
    assert!(Input::new("[1]", &json!({})).is_err());
    assert!(Input::new("not json", &json!({})).is_err());
}

#[test]
fn outcomes_round_trip_by_name_and_order_by_strength() {
    for o in Outcome::ALL {
        assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
    }
    assert!(Outcome::Error > Outcome::Deny && Outcome::Deny > Outcome::Warn);
    assert!(Outcome::Warn > Outcome::AutoApprove && Outcome::AutoApprove > Outcome::Pass);
}
