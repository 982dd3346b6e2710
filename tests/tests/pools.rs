//! Pools: an agent receives only its own pool's tasks; agents of one pool share its load.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;
use tofuflow_e2e::{example, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_only_receives_tasks_of_its_own_pool() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default", "gpu"], &[]).await;
    let cpu = c
        .agent(AgentOpts {
            pools: vec!["default".into()],
            ..Default::default()
        })
        .await;
    let gpu_agent = c
        .agent(AgentOpts {
            pools: vec!["gpu".into()],
            ..Default::default()
        })
        .await;
    let gpu = example("gpu-pool");
    let mut on_gpu = Vec::new();
    let mut on_cpu = Vec::new();
    for i in 0..3 {
        on_gpu.push(c.submit(&gpu, &format!("g/{i}"), &["--pool", "gpu", "--plan-only"]));
        on_cpu.push(c.submit(&gpu, &format!("c/{i}"), &["--plan-only"]));
    }
    for (ids, agent) in [(&on_gpu, gpu_agent), (&on_cpu, cpu)] {
        for id in ids {
            let r = c.wait_state(id, &["planned"], T).await;
            let claimer = &r.transitions[1].actor;
            assert_eq!(
                claimer, &c.agents[agent].id,
                "run {id} in pool {} was claimed by the wrong agent",
                r.pool
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_share_one_pools_load() {
    let mut c = Cluster::start(Db::Sqlite).await;
    // Each plan takes a while, so one agent cannot take them all.
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "plan:0.5".to_string(),
    )]);
    c.agent(AgentOpts {
        env: slow.clone(),
        ..Default::default()
    })
    .await;
    c.agent(AgentOpts {
        env: slow,
        ..Default::default()
    })
    .await;
    let gpu = example("gpu-pool");
    let ids: Vec<String> = (0..6)
        .map(|i| c.submit(&gpu, &format!("share/{i}"), &["--plan-only"]))
        .collect();
    let mut claimers = BTreeSet::new();
    for id in &ids {
        let r = c.wait_state(id, &["planned"], T).await;
        claimers.insert(r.transitions[1].actor.clone());
    }
    assert_eq!(claimers.len(), 2, "both agents took work: {claimers:?}");
}
