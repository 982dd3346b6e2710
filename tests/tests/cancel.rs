//! Cancel during a long apply: SIGINT reaches tofu, the run ends cancelled, and nothing the task
//! started is left running.

use std::time::Duration;
use tofuflow_e2e::{example, pids_matching, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_long_apply_interrupts_tofu_and_leaves_no_process() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        cancel_grace: Some("10s"),
        ..Default::default()
    })
    .await;
    // A distinctive duration so this test finds its own `sleep`.
    let id = c.submit(
        &example("long-apply"),
        "cancel/long",
        &["--auto-approve", "--var", "seconds=987"],
    );
    c.wait_state(&id, &["applying"], T).await;
    let cid = id.clone();
    let cc = &c;
    wait_for("the long local-exec to start", T, || {
        let cid = cid.clone();
        async move {
            let out = cc.cli(&["run", "logs", &cid]);
            String::from_utf8_lossy(&out.stdout)
                .contains("(local-exec): started")
                .then_some(())
        }
    })
    .await;
    assert!(
        !pids_matching("sleep 987").is_empty(),
        "the provisioner is running"
    );
    let out = c.cli(&["run", "cancel", &id, "--reason", "wrong window", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.wait_state(&id, &["cancelled"], T).await;
    assert!(
        r.transitions
            .iter()
            .any(|t| t.reason.contains("cancel requested") && t.actor == "tester"),
        "{:?}",
        r.transitions
    );
    // tofu saw SIGINT and exited 1 by itself (not SIGKILL), as OpenTofu does on interrupt.
    let exits: Vec<_> = c
        .tofu_trace()
        .into_iter()
        .filter(|e| e["event"] == "exit" && e["args"][0] == "apply" && e["run"] == id.as_str())
        .collect();
    assert_eq!(exits.len(), 1, "tofu apply exited on its own after SIGINT");
    assert_eq!(exits[0]["code"], 1);
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(logs.contains("Interrupt received"), "{logs}");
    assert!(
        pids_matching("sleep 987").is_empty(),
        "no child process is left"
    );
}
