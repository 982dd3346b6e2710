//! Bad input gets a clear error that says what to do, and changes nothing.

use tofuflow_e2e::{example, AgentOpts, Cluster, Db};

#[tokio::test(flavor = "multi_thread")]
async fn cli_errors_name_the_problem() {
    let c = Cluster::start(Db::Sqlite).await;
    let gpu = example("gpu-pool");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "submit", gpu.to_str().unwrap(), "-w", "../etc"],
            "invalid workspace",
        ),
        (
            vec![
                "run",
                "submit",
                gpu.to_str().unwrap(),
                "-w",
                "ok",
                "--pool",
                "a.b",
            ],
            "invalid pool",
        ),
        (
            vec![
                "run",
                "submit",
                gpu.to_str().unwrap(),
                "-w",
                "ok",
                "--var",
                "novalue",
            ],
            "must look like NAME=VALUE",
        ),
        (
            vec!["run", "submit", "/nonexistent", "-w", "ok"],
            "cannot read module directory",
        ),
        (vec!["run", "show", "no-such-run"], "no run with id"),
        (vec!["run", "list", "--state", "bogus"], "unknown run state"),
    ];
    for (args, want) in cases {
        let out = c.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
    }
    let out = c.cli(&["run", "list", "-o", "json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([]),
        "nothing was stored"
    );

    let out = std::process::Command::new(tofuflow_e2e::bin_dir().join("tofuflow"))
        .args(["run", "list", "--coordinator", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot reach the coordinator at http://127.0.0.1:1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_the_stand_in_cannot_run_fails_with_its_diagnostic() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let dir = c.dir.join("bad-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), "variable \"n\" {\n  type = number\n}\n\nresource \"terraform_data\" \"x\" {\n  input = var.n\n}\n").unwrap();
    let id = c.submit(&dir, "w/bad", &[]);
    let r = c
        .wait_state(&id, &["failed"], std::time::Duration::from_secs(60))
        .await;
    assert!(r.error.contains("tofu plan failed (exit 1)"), "{}", r.error);
    let out = c.cli(&["run", "logs", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("No value for required variable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submit_with_a_bad_name_is_refused_before_anything_is_uploaded() {
    let c = Cluster::start(Db::Sqlite).await;
    let gpu = example("gpu-pool");
    let g = gpu.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-w", "../etc"], "invalid workspace \"../etc\""),
        (vec!["-w", "a//b"], "invalid workspace"),
        (
            vec!["-w", "ok", "--var", "bad name=1"],
            "invalid variable name \"bad name\"",
        ),
        (vec!["-w", "ok", "--var", "1x=1"], "invalid variable name"),
        (vec!["-w", "ok", "--pool", "a.b"], "invalid pool"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run", "submit", g];
        args.extend(extra);
        let out = c.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(
            !err.contains("bundle sha256:"),
            "{args:?}: the CLI uploaded first: {err}"
        );
        assert_eq!(c.blob_count().await, 0, "{args:?}: a bundle was uploaded");
    }

    // The coordinator still refuses the same names from a caller that is not the CLI.
    let mut api = c.client().await;
    for (ws, var) in [("../etc", "ok"), ("ok", "bad name")] {
        let e = api
            .submit_run(tofuflow_proto::v1::SubmitRunRequest {
                workspace: ws.into(),
                bundle_digest: "sha256:none".into(),
                variables: [(var.to_string(), "1".to_string())].into(),
                actor: "tester".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{ws} {var}: {e}");
    }

    // A good submission does upload (the count above can see a bundle).
    c.submit(&gpu, "ok", &["--plan-only", "--var", "gpu_count=2"]);
    assert_eq!(c.blob_count().await, 1);
}
