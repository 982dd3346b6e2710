//! Plan policies on both databases: adding, replacing (the version grows, the digest follows
//! the source), listing, removing, each audited as `policy_changed`; a plan whose workspace a
//! policy covers gets the verdict recorded with the run (and a `policy_evaluated` entry) and
//! the plan's JSON and the submitter in the policy's input; the previous run is found.

use super::*;
use crate::audit::AuditKind;

const WARN_ALWAYS: &str = r#"package main
import rego.v1
warn contains sprintf("%s by %s: %d changes", [input.tofuflow.workspace, input.tofuflow.actor, count(input.resource_changes)]) if true
"#;

fn plan_policy(name: &str, glob: &str, source: &str) -> PlanPolicy {
    PlanPolicy {
        name: name.into(),
        workspaces: glob.into(),
        source: source.into(),
        ..PlanPolicy::default()
    }
}

#[tokio::test]
async fn policies_are_versioned_listed_removed_and_audited() {
    for (name, st, _g, _d) in stores().await {
        let p1 = st
            .put_plan_policy(&plan_policy("warn", "ml/*", WARN_ALWAYS), "admin")
            .await
            .unwrap();
        assert_eq!(
            (p1.version, p1.digest.clone()),
            (1, policy_digest(WARN_ALWAYS)),
            "{name}"
        );
        let p2 = st
            .put_plan_policy(&plan_policy("warn", "ml/**", "package main"), "root")
            .await
            .unwrap();
        assert_eq!(p2.version, 2, "{name}");
        assert_eq!(p2.created_ms, p1.created_ms, "{name}");
        assert_ne!(p2.digest, p1.digest, "{name}");
        assert_eq!(
            (p2.workspaces.as_str(), p2.updated_by.as_str()),
            ("ml/**", "root")
        );
        assert_eq!(
            st.plan_policies().await.unwrap(),
            vec![p2.clone()],
            "{name}"
        );
        assert_eq!(st.delete_plan_policy("warn", "root").await.unwrap(), p2);
        assert!(
            matches!(st.plan_policy("warn").await, Err(Error::NotFound(_))),
            "{name}"
        );
        let f = AuditFilter {
            kind: Some(AuditKind::PolicyChanged),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(st.audit_entries(&f).await.unwrap().len(), 3, "{name}");
    }
}

#[tokio::test]
async fn a_covered_plan_gets_its_verdict_recorded_and_waits_for_a_human() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        st.put_plan_policy(&plan_policy("warn", "ml/*", WARN_ALWAYS), "admin")
            .await
            .unwrap();
        let run = st.submit(new_run("ml/pol", true), &p).await.unwrap();
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        st.mark_sent(st.unsent(1).await.unwrap()[0].id)
            .await
            .unwrap();
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        let (plan, _) = st
            .put_blob(br#"{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["create"]}}]}"#)
            .await
            .unwrap();
        st.set_artifact(proof(&g), crate::runs::Artifact::PlanJson, &plan)
            .await
            .unwrap();
        let done = complete(
            &g.task,
            g.epoch,
            &g.lease_token,
            v1::Outcome::Succeeded,
            true,
        );
        st.complete_task(&done, &p).await.unwrap();
        let after = st.get_run(&run.id).await.unwrap();
        assert_eq!(
            after.state,
            RunState::AwaitingApproval,
            "{name}: a warn beats --auto-approve"
        );
        let v = st.policy_verdicts(&run.id).await.unwrap();
        assert_eq!(v.len(), 1, "{name}");
        assert_eq!(
            v[0].outcome,
            tofuflow_proto::policy::Outcome::Warn,
            "{name}"
        );
        assert_eq!(v[0].warn, vec!["ml/pol by alice: 1 changes"], "{name}");
        let f = AuditFilter {
            run_id: run.id.clone(),
            kind: Some(AuditKind::PolicyEvaluated),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(st.audit_entries(&f).await.unwrap().len(), 1, "{name}");
        let first = st.submit(new_run("ml/other", true), &p).await.unwrap();
        st.cancel(&first.id, "alice", "not this one").await.unwrap();
        let other = st.submit(new_run("ml/other", false), &p).await.unwrap();
        let prev = st.previous_run(&other).await.unwrap().unwrap();
        assert_eq!(
            (prev.id.as_str(), prev.state.as_str()),
            (first.id.as_str(), "cancelled"),
            "{name}"
        );
    }
}
