//! TLS: a coordinator serving gRPC and HTTP over TLS runs a plan and an apply with an agent that
//! presents a client certificate (mutual TLS), its state reached over https through the agent's
//! relay; agents without a certificate signed by the client CA are refused, and so is a CLI that
//! does not trust the coordinator's CA, each with an error that says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tofuflow_e2e::{bin_dir, example, AgentOpts, Cluster, Db, TlsFiles};

const T: Duration = Duration::from_secs(60);

/// A CA that can sign server and client certificates.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// Writes `<name>.pem` and `<name>.key` into `dir`: a certificate for `names` (DNS names or
    /// IP addresses) with the extended key usage `usage`.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("{name}.pem"));
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

/// The test's PKI in a directory of its own: the cluster's CA (server and agent certificates)
/// and a second CA nobody trusts, with a client certificate of its own.
struct Pki {
    _dir: TempDir,
    files: TlsFiles,
    agent: (PathBuf, PathBuf),
    rogue_ca: PathBuf,
    rogue_agent: (PathBuf, PathBuf),
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!("tofuflow-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("tofuflow test CA");
    let (cert, key) = ca.issue(
        &dir,
        "coordinator",
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let agent = ca.issue(
        &dir,
        "agent",
        &["agent-0"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let rogue = Ca::new("somebody else's CA");
    let rogue_agent = rogue.issue(
        &dir,
        "rogue-agent",
        &["agent-x"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let ca_file = ca.write(&dir, "ca");
    Pki {
        files: TlsFiles {
            ca: ca_file.clone(),
            cert,
            key,
            client_ca: Some(ca_file),
        },
        agent,
        rogue_ca: rogue.write(&dir, "rogue-ca"),
        rogue_agent,
        _dir: TempDir(dir),
    }
}

fn client_cert_args((cert, key): &(PathBuf, PathBuf)) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_apply_run_through_a_tls_coordinator_with_an_mtls_agent() {
    let pki = pki();
    let mut c = Cluster::builder(Db::Sqlite)
        .tls(pki.files.clone())
        .start()
        .await;
    // Network none: the task reaches nothing but the state backend, through the relay.
    c.agent(AgentOpts {
        args: vec!["--sandbox", "required", "--network", "none"],
        owned_args: client_cert_args(&pki.agent),
        ..Default::default()
    })
    .await;

    // The CLI connects without a client certificate: users need none.
    let gpu = example("gpu-pool");
    let id = c.submit(&gpu, "ml/tls", &["--var", "gpu_count=2", "--auto-approve"]);
    let run = c.wait_state(&id, &["applied"], T).await;
    assert_eq!(run.state, "applied");

    let out = c.cli(&["state", "pull", "ml/tls"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"lineage\""),
        "the state was written over https through the agent's relay: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs_tail()
    );
    let relayed = format!(
        "-backend-config=address=http://127.0.0.1:{}/state/ml/tls",
        c.http_port
    );
    assert!(
        c.tofu_trace().iter().any(|e| e["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == relayed.as_str()))),
        "tofu spoke plain http to the relay on its loopback: {:?}",
        c.tofu_trace()
    );
    let logs = c.cli(&["run", "logs", &id]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("state in the coordinator's http backend (https://"),
        "{logs}"
    );

    let (code, body) = c.get("/metrics").expect("/metrics over https");
    assert_eq!(code, 200, "{body}");
    let plain = tofuflow_e2e::http_get(&format!("http://127.0.0.1:{}/healthz", c.http_port));
    assert!(
        !plain.is_ok_and(|(code, _)| code == 200),
        "the HTTP side does not answer plain http"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_host_network_real_terraform_trusts_the_coordinator_ca() {
    // The stand-in speaks plain http only; the machine's real Terraform speaks https itself.
    let terraform = PathBuf::from("/usr/local/bin/terraform");
    if !terraform.exists() {
        eprintln!("skipped: no {} on this machine", terraform.display());
        return;
    }
    let pki = pki();
    let mut c = Cluster::builder(Db::Sqlite)
        .tls(pki.files.clone())
        .start()
        .await;
    c.agent(AgentOpts {
        args: vec!["--network", "host"],
        owned_args: client_cert_args(&pki.agent),
        tofu_bin: Some(terraform),
        ..Default::default()
    })
    .await;
    let id = c.submit(&example("gpu-pool"), "ml/host", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    let out = c.cli(&["state", "pull", "ml/host"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"lineage\""),
        "{}",
        c.logs_tail()
    );
}

/// Starts an agent of `c` with `args` and waits for it to give up; returns its exit status and
/// output.
fn agent_refused(c: &Cluster, name: &str, args: &[String]) -> (std::process::ExitStatus, String) {
    let work = c.dir.join(name);
    let out = Command::new(bin_dir().join("tofuflow-agent"))
        .args(["--coordinator", &c.grpc_url(), "--amqp-url", &c.amqp_url])
        .args(["--pool", "default", "--name", name])
        .arg("--tofu-bin")
        .arg(bin_dir().join("tofu-double"))
        .arg("--work-root")
        .arg(&work)
        .args([
            "--tls-ca",
            &c.tls.as_ref().unwrap().ca.display().to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the agent");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_without_a_client_certificate_of_the_client_ca_are_refused() {
    let pki = pki();
    let c = Cluster::builder(Db::Sqlite)
        .tls(pki.files.clone())
        .start()
        .await;

    let (status, out) = agent_refused(&c, "no-cert", &[]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("requires a client certificate signed by the coordinator's --tls-client-ca"),
        "the agent says what it lacks:\n{out}"
    );

    let (status, out) = agent_refused(&c, "rogue", &client_cert_args(&pki.rogue_agent));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("TLS with the coordinator") && out.contains("--tls-client-ca"),
        "the agent says its certificate was refused:\n{out}"
    );
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    assert!(
        log.contains("TLS handshake failed")
            && log.contains("the client's certificate is not signed by --tls-client-ca"),
        "the coordinator logs the refused handshake:\n{log}"
    );

    let agents = c.cli(&["agent", "list", "-o", "json"]);
    assert!(
        !String::from_utf8_lossy(&agents.stdout).contains("rogue"),
        "no refused agent registered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_with_the_wrong_ca_fails_clearly() {
    let pki = pki();
    let c = Cluster::builder(Db::Sqlite)
        .tls(pki.files.clone())
        .start()
        .await;
    let out = Command::new(bin_dir().join("tofuflow"))
        .args(["--coordinator", &c.grpc_url(), "run", "list"])
        .arg("--tls-ca")
        .arg(&pki.rogue_ca)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not signed by a CA this client trusts") && err.contains("--tls-ca"),
        "{err}"
    );

    let plain = c.grpc_url().replace("https://", "http://");
    let out = Command::new(bin_dir().join("tofuflow"))
        .args(["--coordinator", &plain, "run", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("use https://"),
        "a plain client is told to use https: {err}"
    );

    let missing = pki.rogue_ca.with_file_name("missing.pem");
    let out = Command::new(bin_dir().join("tofuflow"))
        .args(["--coordinator", &c.grpc_url(), "run", "list"])
        .arg("--tls-ca")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot read --tls-ca file {}", missing.display())),
        "{err}"
    );
}

/// Runs the coordinator with `args` (TLS flags) and returns what it printed when it exited.
fn coordinator_refuses(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin_dir().join("tofuflow-coordinator"))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}/c.db", dir.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the coordinator");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "started with {args:?}: {text}");
    text
}

#[test]
fn the_coordinator_names_a_missing_or_unusable_certificate_file() {
    let pki = pki();
    let dir = pki.files.ca.parent().unwrap().to_path_buf();
    let missing = dir.join("missing.pem");
    let (cert, key, ca) = (
        pki.files.cert.to_str().unwrap(),
        pki.files.key.to_str().unwrap(),
        pki.files.ca.to_str().unwrap(),
    );
    let err = coordinator_refuses(
        &dir,
        &["--tls-cert", missing.to_str().unwrap(), "--tls-key", key],
    );
    assert!(
        err.contains(&format!(
            "cannot read --tls-cert file {}",
            missing.display()
        )),
        "{err}"
    );
    let err = coordinator_refuses(&dir, &["--tls-cert", key, "--tls-key", key]);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let err = coordinator_refuses(&dir, &["--tls-cert", cert, "--tls-key", cert]);
    assert!(err.contains("holds no usable PEM private key"), "{err}");
    let (_, other_key) = &pki.agent;
    let err = coordinator_refuses(
        &dir,
        &["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()],
    );
    assert!(
        err.contains("is the key the one of this certificate?"),
        "{err}"
    );
    let err = coordinator_refuses(&dir, &["--tls-client-ca", ca]);
    assert!(err.contains("--tls-cert"), "{err}");
}
