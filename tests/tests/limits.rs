//! Limits on what a task may do: CPU time, file size and wall time each end the task with a
//! result that says which limit it hit; nothing a task started outlives it.

use std::time::Duration;
use tofuflow_e2e::{example, pids_matching, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

fn module(c: &Cluster, name: &str, command: &str) -> std::path::PathBuf {
    let dir = c.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), format!("resource \"terraform_data\" \"x\" {{\n  provisioner \"local-exec\" {{\n    command = \"{command}\"\n  }}\n}}\n")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_and_file_size_limits_stop_the_task_and_say_so() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        args: vec!["--limit-cpu", "1", "--limit-fsize", "1000000"],
        ..Default::default()
    })
    .await;
    let hog = module(&c, "cpu-hog", "while :; do :; done");
    let id = c.submit(&hog, "limits/cpu", &["--auto-approve"]);
    c.wait_state(&id, &["failed"], T).await;
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(logs.contains("signal: CPU time limit exceeded"), "{logs}");

    let big = module(&c, "big-file", "head -c 5000000 /dev/zero > big.bin");
    let id = c.submit(&big, "limits/fsize", &["--auto-approve"]);
    c.wait_state(&id, &["failed"], T).await;
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(
        logs.to_lowercase().contains("file size limit exceeded"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_past_its_timeout_fails_as_timed_out_and_leaves_no_process() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        args: vec!["--task-timeout", "3s"],
        ..Default::default()
    })
    .await;
    let id = c.submit(
        &example("long-apply"),
        "limits/timeout",
        &["--auto-approve", "--var", "seconds=876"],
    );
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(
        r.error.contains("timed out after 3s (--task-timeout)"),
        "{}",
        r.error
    );
    assert!(
        pids_matching("sleep 876").is_empty(),
        "nothing of the task is alive"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_background_child_of_local_exec_does_not_outlive_its_task() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let bg = module(
        &c,
        "background",
        "sleep 1234 & echo started in the background",
    );
    let id = c.submit(&bg, "limits/background", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    assert!(
        pids_matching("sleep 1234").is_empty(),
        "the background sleep died with its task"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_sets_its_own_limits_within_the_agents_and_run_show_names_the_one_hit() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        args: vec!["--task-timeout", "1h", "--limit-fsize", "1000000"],
        ..Default::default()
    })
    .await;
    // Stricter than the agent: the run's own timeout applies.
    let id = c.submit(
        &example("long-apply"),
        "limits/own-timeout",
        &["--auto-approve", "--var", "seconds=765", "--timeout", "2s"],
    );
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(r.error.contains("timed out after 2s"), "{}", r.error);
    assert_eq!(r.limit_hit, "timeout");
    assert!(pids_matching("sleep 765").is_empty());
    let show = String::from_utf8_lossy(&c.cli(&["run", "show", &id]).stdout).to_string();
    assert!(show.contains("Limits     timeout 2s"), "{show}");
    assert!(show.contains("Limit hit  timeout"), "{show}");
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(
        logs.contains("limits for this run (within the agent's maxima): cpu none s, memory none bytes, processes none, file size 1000000 bytes, timeout 2s"),
        "{logs}"
    );
    // Looser than the agent: the agent's maximum wins.
    let big = module(&c, "big-file-2", "head -c 5000000 /dev/zero > big.bin");
    let id = c.submit(
        &big,
        "limits/capped",
        &["--auto-approve", "--limit-fsize", "100000000"],
    );
    c.wait_state(&id, &["failed"], T).await;
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(logs.contains("file size 1000000 bytes"), "{logs}");
    assert!(
        logs.to_lowercase().contains("file size limit exceeded"),
        "{logs}"
    );
}
