//! Run tags ("tag runs by DAG id"): given at submit, shown by `run show` (table and JSON),
//! filtered on by `run list --tag` (every tag must match), recorded in the run's audit entry and
//! in the coordinator's log of the submit (its trace span carries them too); a bad tag is
//! refused before anything is uploaded, naming the rule.

use std::time::Duration;
use tofuflow_e2e::{AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_carry_tags_that_list_show_audit_and_logs_see() {
    let mut c = Cluster::start(Db::Postgres).await;
    c.agent(AgentOpts::default()).await;
    let dir = c.dir.join("tagged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), "locals {\n  a = 1\n}\n").unwrap();
    let m = dir.to_str().unwrap();
    let submit = |ws: &str, tags: &[&str]| {
        let mut args = vec!["run", "submit", m, "-w", ws, "--plan-only"];
        for t in tags {
            args.extend(["--tag", t]);
        }
        ok(&c.cli(&args)).trim().to_string()
    };
    let a = submit("ml/a", &["dag_id=nightly_gpu", "team=ml"]);
    let b = submit("ml/b", &["dag_id=nightly_gpu"]);
    let other = submit("ml/c", &["dag_id=weekly"]);
    for id in [&a, &b, &other] {
        c.wait_state(id, &["planned_no_changes"], T).await;
    }

    let list = |tags: &[&str]| -> Vec<String> {
        let mut args = vec!["run", "list", "-o", "json"];
        for t in tags {
            args.extend(["--tag", t]);
        }
        let v: Vec<serde_json::Value> = serde_json::from_str(&ok(&c.cli(&args))).unwrap();
        let mut ids: Vec<String> = v
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut nightly = vec![a.clone(), b.clone()];
    nightly.sort();
    assert_eq!(list(&["dag_id=nightly_gpu"]), nightly);
    assert_eq!(list(&["dag_id=nightly_gpu", "team=ml"]), vec![a.clone()]);
    assert!(list(&["dag_id=never"]).is_empty());
    assert_eq!(list(&[]).len(), 3);
    let table = ok(&c.cli(&["run", "list", "--tag", "team=ml"]));
    assert!(table.contains("dag_id=nightly_gpu, team=ml"), "{table}");

    let show = ok(&c.cli(&["run", "show", &a]));
    assert!(
        show.contains("Tags       dag_id=nightly_gpu, team=ml"),
        "{show}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&c.cli(&["run", "show", &a, "-o", "json"]))).unwrap();
    assert_eq!(v["tags"]["dag_id"], "nightly_gpu", "{v}");
    let submitted = v["audit_entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "run_submitted")
        .expect("a run_submitted entry");
    assert_eq!(submitted["detail"]["tags"]["team"], "ml", "{submitted}");
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("run submitted") && l.contains("tags=dag_id=nightly_gpu,team=ml")),
        "the submit's log line (and span) carries the tags"
    );

    for (bad, why) in [
        ("Dag=x", "invalid tag key"),
        ("dag_id", "expected KEY=VALUE"),
        ("k=a\u{7}b", "no control characters"),
    ] {
        let out = c.cli(&["run", "submit", m, "-w", "ml/d", "--tag", bad]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{bad}: {err}");
    }
    assert_eq!(list(&[]).len(), 3, "nothing was submitted with a bad tag");
}
