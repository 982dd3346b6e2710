//! Agents cannot act for each other (reliability matrix S5, issue defect 4). A holder of the
//! shared agent token registers an agent of its own and goes after a live apply of a real agent:
//! it cannot complete it with made-up outputs (whatever epoch it tries), read its bundle or plan,
//! write its log or artifacts, renew or steal its lease, pose as the real agent, or reject other
//! pools' tasks. A pool token opens only its pool. The real apply finishes untouched.

use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{example, fake_agent, wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

const T: Duration = Duration::from_secs(90);
const TOKEN: &str = "shared-agent-token-5e1f3a";
const GPU_TOKEN: &str = "gpu-pool-only-token-8c2d4b";

fn refused(what: &str, r: Result<impl std::fmt::Debug, tonic::Status>) -> tonic::Code {
    match r {
        Ok(v) => panic!("{what} was accepted: {v:?}"),
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_holder_cannot_act_for_another_agent_or_outside_its_pools() {
    let mut c = Cluster::builder(Db::Sqlite)
        .pools(&["default", "gpu"])
        .agent_token(TOKEN)
        .coordinator_args(&["--agent-pool-token", &format!("gpu={GPU_TOKEN}")])
        .start()
        .await;
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "apply:8".to_string(),
    )]);
    let real = c
        .agent(AgentOpts {
            env: slow,
            ..Default::default()
        })
        .await;
    let id = c.submit(&example("gpu-pool"), "ident/ws", &["--auto-approve"]);
    c.wait_state(&id, &["applying"], T).await;
    let cc = &c;
    let cid = id.clone();
    wait_for("tofu apply to start", T, || {
        let cid = cid.clone();
        async move { (cc.tofu_starts(&cid, "apply") == 1).then_some(()) }
    })
    .await;
    let (task_id, epoch) = c.task_of(&id, "apply").await;
    let run = c.run(&id).await;

    // The forger: a registered agent of its own, with the shared token.
    let (mut f, forger_id) = fake_agent(&c, &["default"], "forger", None).await.unwrap();
    for e in epoch.saturating_sub(3)..=epoch + 3 {
        let forged = v1::CompleteRequest {
            task_id: task_id.clone(),
            attempt: 1,
            epoch: e,
            outcome: v1::Outcome::Succeeded as i32,
            outputs_json: r#"{"pool_name":{"value":"forged","type":"string"}}"#.into(),
            lease_token: format!("guess-{e}"),
            ..Default::default()
        };
        let code = refused("a forged completion", f.complete(forged).await);
        assert!(
            matches!(
                code,
                tonic::Code::PermissionDenied | tonic::Code::FailedPrecondition
            ),
            "epoch {e}: {code:?}"
        );
    }
    let as_real = v1::CompleteRequest {
        agent_id: c.agents[real].id.clone(),
        task_id: task_id.clone(),
        attempt: 1,
        epoch,
        ..Default::default()
    };
    assert_eq!(
        refused("acting as the real agent", f.complete(as_real).await),
        tonic::Code::PermissionDenied
    );
    let fetch = v1::FetchBlobRequest {
        task_id: task_id.clone(),
        attempt: 1,
        epoch,
        digest: run.bundle_digest.clone(),
        lease_token: "guess".into(),
        ..Default::default()
    };
    let got = match f.fetch_blob(fetch).await {
        Ok(s) => s.into_inner().next().await.map(|c| c.map(|c| c.data.len())),
        Err(e) => Some(Err(e)),
    };
    assert!(
        matches!(got, Some(Err(ref e)) if e.code() == tonic::Code::PermissionDenied),
        "bundle read: {got:?}"
    );
    let batch = v1::EventBatch {
        task_id: task_id.clone(),
        attempt: 1,
        epoch,
        events: vec![v1::Event {
            seq: 9999,
            unix_ms: 1,
            stream: 1,
            line: "FORGED LINE".into(),
        }],
        lease_token: "guess".into(),
    };
    assert_eq!(
        refused(
            "forged log lines",
            f.report_events(tokio_stream::iter(vec![batch])).await
        ),
        tonic::Code::PermissionDenied
    );
    let art = v1::ArtifactChunk {
        task_id: task_id.clone(),
        attempt: 1,
        epoch,
        kind: v1::ArtifactKind::PlanFile as i32,
        data: b"forged plan".to_vec(),
        lease_token: "guess".into(),
    };
    assert_eq!(
        refused(
            "a forged artifact",
            f.upload_artifact(tokio_stream::iter(vec![art])).await
        ),
        tonic::Code::PermissionDenied
    );
    let hb = f
        .heartbeat(v1::HeartbeatRequest {
            protocol_version: tofuflow_proto::PROTOCOL_VERSION,
            leases: vec![v1::HeldLease {
                task_id: task_id.clone(),
                attempt: 1,
                epoch,
                lease_token: "guess".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hb.lost_task_ids,
        vec![task_id.clone()],
        "the forger holds no lease"
    );

    // Posing as the real agent: its id without its secret, or re-registering its id.
    let (mut wrong, _) = fake_agent(&c, &["default"], "poser", None).await.unwrap();
    let poser = tonic::Request::new(v1::HeartbeatRequest {
        protocol_version: tofuflow_proto::PROTOCOL_VERSION,
        ..Default::default()
    });
    let mut poser = poser;
    poser.metadata_mut().insert(
        tofuflow_proto::auth::AGENT_ID,
        c.agents[real].id.parse().unwrap(),
    );
    poser.metadata_mut().insert(
        tofuflow_proto::auth::AGENT_SECRET,
        "not-its-secret".parse().unwrap(),
    );
    let mut bare = v1::agent_service_client::AgentServiceClient::new(
        tonic::transport::Endpoint::from_shared(c.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    poser
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert_eq!(
        refused("a wrong agent secret", bare.heartbeat(poser).await),
        tonic::Code::Unauthenticated
    );
    let rereg = v1::RegisterRequest {
        protocol_version: tofuflow_proto::PROTOCOL_VERSION,
        agent_id: c.agents[real].id.clone(),
        name: "thief".into(),
        pools: vec!["default".into()],
        capacity: 1,
        ..Default::default()
    };
    assert_eq!(
        refused("taking over the agent's id", wrong.register(rereg).await),
        tonic::Code::PermissionDenied
    );

    // Pools: a pool token opens its pool only; a default-pool agent cannot reject gpu tasks.
    let e = fake_agent(&c, &["default"], "gpu-token-on-default", Some(GPU_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("not valid for pool \"default\""),
        "{}",
        e.message()
    );
    let (_gpu, _) = fake_agent(&c, &["gpu"], "gpu-agent", Some(GPU_TOKEN))
        .await
        .expect("its own pool");
    let gpu_run = c.submit(&example("gpu-pool"), "ident/gpu", &["--pool", "gpu"]);
    let (gpu_task, _) = c.task_of(&gpu_run, "plan").await;
    let reject = v1::RejectTaskRequest {
        task_id: gpu_task,
        attempt: 1,
        reason: "poison".into(),
        ..Default::default()
    };
    assert_eq!(
        refused("rejecting another pool's task", f.reject_task(reject).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        c.run(&gpu_run).await.state,
        "queued",
        "the gpu run is untouched"
    );
    let claim = f
        .claim(v1::ClaimRequest {
            task_id: task_id.clone(),
            attempt: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !claim.granted && claim.spec.is_none(),
        "no second lease: {}",
        claim.reason
    );

    // The real agent's apply is untouched: it ends applied with its own outputs, once.
    let r = c.wait_state(&id, &["applied"], T).await;
    assert!(
        !r.outputs_json.contains("forged") && r.outputs_json.contains("pool_name"),
        "{}",
        r.outputs_json
    );
    assert_eq!(r.transitions.last().unwrap().actor, c.agents[real].id);
    assert_eq!(c.tofu_starts(&id, "apply"), 1);
    let log = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(!log.contains("FORGED LINE"));
    assert!(
        !r.transitions.iter().any(|t| t.actor == forger_id),
        "the forger is nowhere in the history"
    );
}
