//! The sandbox against hostile modules, through a real agent (reliability matrix S3, S4): a
//! module's `local-exec` probes for secrets, other tasks, the coordinator, the agent host's own
//! services and the network; fork bombs and memory hogs meet their limits; nothing of one task
//! is visible to the next.
//!
//! Each probe prints `PROBE name: REACHED` or `PROBE name: BLOCKED`; every test also has a
//! control probe that must be REACHED, so a broken probe cannot pass as "blocked".
//! These tests need root and namespaces (as CI has); without them they fail loudly rather than
//! pass vacuously: the agent refuses to start with `--sandbox required`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tofuflow_e2e::{example, pids_matching, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(90);
const SECRET: &str = "agent-token-3c9f7e1d5b";

/// A module whose only resource runs `NAME.sh` (with a `probe NAME COMMAND` helper) in bash. The
/// script is named after the module so that its processes can be told from those of the tests
/// running alongside.
fn module(c: &Cluster, name: &str, script: &str) -> PathBuf {
    let dir = c.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!("resource \"terraform_data\" \"probe\" {{\n  provisioner \"local-exec\" {{\n    command = \"bash ./{name}.sh\"\n  }}\n}}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.sh")),
        format!(
            "probe() {{ if ( eval \"$2\" ) >/dev/null 2>&1; then echo \"PROBE $1: REACHED\"; else echo \"PROBE $1: BLOCKED\"; fi; }}\n{script}\n"
        ),
    )
    .unwrap();
    dir
}

fn logs(c: &Cluster, id: &str) -> String {
    String::from_utf8_lossy(&c.cli(&["run", "logs", id]).stdout).to_string()
}

/// `PROBE name: VERDICT` lines of a run's log.
fn probes(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("PROBE ")? + 6..];
            let (name, verdict) = rest.split_once(": ")?;
            Some((
                name.to_string(),
                verdict
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .next()?
                    .to_string(),
            ))
        })
        .collect()
}

fn assert_probes(log: &str, reached: &[&str], blocked: &[&str]) {
    let p = probes(log);
    for name in reached {
        assert_eq!(
            p.get(*name).map(String::as_str),
            Some("REACHED"),
            "probe {name} must succeed (control):\n{log}"
        );
    }
    for name in blocked {
        assert_eq!(
            p.get(*name).map(String::as_str),
            Some("BLOCKED"),
            "probe {name} must be blocked:\n{log}"
        );
    }
}

fn port_of(url: &str) -> String {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_module_cannot_reach_secrets_other_tasks_or_the_coordinator() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--agent-token", SECRET]).await;
    c.agent_token = Some(SECRET.into());
    // The agent's environment file, world-readable: only the mount namespace hides it.
    let env_file = c.dir.join("agent.env");
    std::fs::write(&env_file, format!("TOFUFLOW_AGENT_TOKEN={SECRET}\n")).unwrap();
    c.agent(AgentOpts {
        concurrency: 2,
        args: vec!["--sandbox", "required", "--network", "none"],
        ..Default::default()
    })
    .await;
    // Another task, running: its working directory exists on the host.
    let other = c.submit(
        &example("long-apply"),
        "hostile/other",
        &["--auto-approve", "--var", "seconds=600"],
    );
    let cc = &c;
    let oid = other.clone();
    wait_for("the other task's provisioner to start", T, || {
        let oid = oid.clone();
        async move {
            logs(cc, &oid)
                .contains("(local-exec): started")
                .then_some(())
        }
    })
    .await;
    let other_wd = c.agents[0].work_root.join("work").join(&other);
    assert!(
        other_wd.is_dir(),
        "the other task's workdir exists on the host"
    );
    let agent_pid = std::fs::read_to_string(c.dir.join("agent-0.ready")).unwrap();
    let agent_pid: serde_json::Value = serde_json::from_str(&agent_pid).unwrap();
    let script = format!(
        r#"probe control-own-home 'echo x > "$HOME/x" && test -s "$HOME/x"'
probe control-state-backend 'test -n "$TF_HTTP_PASSWORD"'
probe agent-env-file 'cat {env}'
probe secret-in-any-process 'grep -qs {SECRET} /proc/[0-9]*/environ /proc/[0-9]*/cmdline'
probe pid1-environ 'cat /proc/1/environ'
probe agent-process 'test -e /proc/{apid}/environ'
probe other-workdir 'ls {owd}'
probe work-root 'ls {root}'
probe coordinator-grpc 'exec 3<>/dev/tcp/127.0.0.1/{grpc}'
probe write-system 'touch /usr/bin/tofuflow-probe'
probe write-host-dir 'touch {dir}/escaped'
probe kill-init 'kill -9 1'
probe mknod 'mknod ./null c 1 3'
probe sudo-root 'test "$(id -u)" = 0'
probe ptrace 'strace -f -o /dev/null true'
probe user-namespace 'unshare --user --map-root-user true'
probe control-threads-and-processes 'sleep 0.01 & sleep 0.01 & wait'
probe control-seccomp-filter 'grep -Eq "^Seccomp:[[:space:]]+2" /proc/self/status'
"#,
        env = env_file.display(),
        apid = agent_pid["pid"],
        owd = other_wd.display(),
        root = c.agents[0].work_root.display(),
        grpc = port_of(&c.grpc_url()),
        dir = c.dir.display(),
    );
    let probe = module(&c, "hostile", &script);
    let id = c.submit(&probe, "hostile/probe", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    let log = logs(&c, &id);
    assert_probes(
        &log,
        &[
            "control-own-home",
            "control-state-backend",
            "control-threads-and-processes",
            "control-seccomp-filter",
        ],
        &[
            "agent-env-file",
            "secret-in-any-process",
            "pid1-environ",
            "agent-process",
            "other-workdir",
            "work-root",
            "coordinator-grpc",
            "write-system",
            "write-host-dir",
            "kill-init",
            "mknod",
            "sudo-root",
            "ptrace",
            "user-namespace",
        ],
    );
    assert!(!log.contains(SECRET), "the token never reaches a log");
    assert!(!c.dir.join("escaped").exists());
    let out = c.cli(&["run", "cancel", &other, "--wait"]);
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_bomb_and_memory_hog_are_stopped_by_their_limits_and_the_agent_stays_healthy() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        cancel_grace: Some("2s"),
        args: vec![
            "--sandbox",
            "required",
            "--limit-nproc",
            "64",
            "--limit-memory",
            "268435456",
        ],
        ..Default::default()
    })
    .await;
    // The script's own shell stays (exec needs no new process) so the task is still going when
    // the agent sees the limit: with `wait` it could end before the agent looked, and apply.
    let bomb = module(&c, "bomb", "bomb() { bomb | bomb & }; bomb\nexec sleep 600");
    let id = c.submit(&bomb, "limits/bomb", &["--auto-approve"]);
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(
        r.error
            .contains("stopped at the process limit: the task tried to run more than 64 processes"),
        "{}",
        r.error
    );
    assert!(logs(&c, &id).contains("stopped at the process limit"));
    assert_eq!(r.limit_hit, "processes");
    // (Only this test's script: the other tests here run theirs at the same time.)
    assert!(pids_matching("./bomb.sh").is_empty(), "no bomb survives");

    let hog = module(&c, "hog", "head -c 2000000000 /dev/zero | tail > /dev/null");
    let id = c.submit(&hog, "limits/hog", &["--auto-approve"]);
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(
        r.error.starts_with(
            "killed for memory: the task reached its memory limit (268435456 bytes, --limit-memory)"
        ),
        "{}",
        r.error
    );
    assert!(logs(&c, &id).contains("killed for memory"));
    assert_eq!(r.limit_hit, "memory");

    // The agent is fine: the next run applies on it.
    let id = c.submit(&example("gpu-pool"), "limits/after", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_of_one_task_is_visible_to_the_next() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        args: vec!["--sandbox", "required"],
        ..Default::default()
    })
    .await;
    let plant = module(
        &c,
        "plant",
        r#"echo canary > /tmp/canary; echo canary > "$HOME/canary"; echo canary > /dev/shm/canary
(sleep 777 > /dev/null 2>&1 &)
setsid sleep 778 > /dev/null 2>&1 < /dev/null &
nohup sleep 779 > /dev/null 2>&1 &
probe control-planted 'test -s /tmp/canary && pgrep -f "sleep 77[89]"'"#,
    );
    let id = c.submit(&plant, "canary/plant", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    assert_probes(&logs(&c, &id), &["control-planted"], &[]);
    for s in ["sleep 777", "sleep 778", "sleep 779"] {
        assert!(pids_matching(s).is_empty(), "{s} died with its task");
    }
    assert!(
        !c.agents[0].work_root.join("work").join(&id).exists(),
        "the workdir is gone"
    );
    let look = module(
        &c,
        "look",
        r#"probe control-fresh-home 'test -d "$HOME" && test ! -e "$HOME/canary" && echo > "$HOME/mine"'
probe tmp-canary 'test -e /tmp/canary'
probe home-canary 'test -e "$HOME/canary"'
probe shm-canary 'test -e /dev/shm/canary'
probe process-canary 'pgrep -f "sleep 77"'
probe previous-workdir 'ls /tofuflow/run/../*/canary'"#,
    );
    let id = c.submit(&look, "canary/look", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    // Its tasks ran in sandboxes built while the agent waited for them (after the first task
    // showed their shape), and still nothing of the planting run was there.
    let look_logs = logs(&c, &id);
    assert_eq!(
        look_logs
            .matches("built (fresh, for this task alone) before it arrived")
            .count(),
        2,
        "{look_logs}"
    );
    assert_probes(
        &look_logs,
        &["control-fresh-home"],
        &[
            "tmp-canary",
            "home-canary",
            "shm-canary",
            "process-canary",
            "previous-workdir",
        ],
    );
}

/// A host on its own network namespace, joined to this one by a veth pair, serving HTTP on
/// ports 18001 and 18002.
struct TestHost {
    ns: String,
    ip: String,
    /// This host's end of the link: an address of the agent's own host.
    host_ip: String,
    servers: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestHost {
    async fn start() -> TestHost {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let ns = format!("tfth-{}", &id[..8]);
        let (outer, inner) = (format!("th{}", &id[..8]), format!("tp{}", &id[..8]));
        let (a, b) = (
            u8::from_str_radix(&id[8..10], 16).unwrap(),
            u8::from_str_radix(&id[10..12], 16).unwrap() & 0xfc,
        );
        let (host_ip, peer_ip) = (format!("10.{a}.{b}.1"), format!("10.{a}.{b}.2"));
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        let addr = format!("{peer_ip}/30");
        ip(&[
            "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inner,
        ]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let www = std::env::temp_dir().join(format!("tofuflow-www-{}", &id[..8]));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "hello from the test host\n").unwrap();
        let mut servers = Vec::new();
        for port in ["18001", "18002"] {
            servers.push(
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        "/usr/bin/python3",
                        "-m",
                        "http.server",
                        port,
                    ])
                    .args(["--bind", &peer_ip, "--directory"])
                    .arg(&www)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start python3 -m http.server"),
            );
        }
        for port in [18001u16, 18002] {
            let addr: std::net::SocketAddr = format!("{peer_ip}:{port}").parse().unwrap();
            wait_for("the test host's web server", T, || async move {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| ())
            })
            .await;
        }
        TestHost {
            ns,
            ip: peer_ip,
            host_ip,
            servers,
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn network_none_blocks_egress_and_the_allow_list_lets_only_listed_hosts_through() {
    let host = TestHost::start().await;
    let mut c = Cluster::start_with(Db::Sqlite, &["locked", "egress"], &[]).await;
    c.agent(AgentOpts {
        pools: vec!["locked".into(), "egress".into()],
        args: vec![
            "--pool-network",
            "locked=none",
            "--pool-network",
            "egress=allow-list",
        ],
        owned_args: vec![
            "--allow-host".into(),
            format!("{}:18001", host.ip),
            // Listed, but the agent host's own: still refused.
            "--allow-host".into(),
            "localhost:5672".into(),
        ],
        ..Default::default()
    })
    .await;
    let ipa = &host.ip;
    let script = format!(
        r#"probe control-loopback 'true'
probe listed 'curl -sf -m 5 http://{ipa}:18001/ | grep -q "hello from the test host"'
probe unlisted-port 'curl -sf -m 5 http://{ipa}:18002/'
probe unlisted-name 'curl -sf -m 5 https://registry.opentofu.org/'
probe bypass-proxy 'curl --noproxy "*" -sf -m 3 http://{ipa}:18001/'
probe raw-tcp 'exec 3<>/dev/tcp/{ipa}/18001'
probe metadata-service 'curl -sf -m 3 http://169.254.169.254/'
probe listed-loopback 'test "$(curl --noproxy "" -s -m 5 -p -o /dev/null -w "%{{http_connect}}" -x "$HTTPS_PROXY" http://localhost:5672/)" != 403'"#
    );
    let m = module(&c, "net", &script);
    let id = c.submit(&m, "net/locked", &["--pool", "locked", "--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    let log = logs(&c, &id);
    assert_probes(
        &log,
        &["control-loopback"],
        &[
            "listed",
            "unlisted-port",
            "unlisted-name",
            "bypass-proxy",
            "raw-tcp",
            "metadata-service",
            "listed-loopback",
        ],
    );
    assert!(log.contains("tofuflow: network none"), "{log}");

    let id = c.submit(&m, "net/egress", &["--pool", "egress", "--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    let log = logs(&c, &id);
    assert_probes(
        &log,
        &["control-loopback", "listed"],
        &[
            "unlisted-port",
            "unlisted-name",
            "bypass-proxy",
            "raw-tcp",
            "metadata-service",
            "listed-loopback",
        ],
    );
    for blocked in [
        "egress blocked: CONNECT localhost:5672: 127.0.0.1 is a loopback address".to_string(),
        format!("egress blocked: GET {ipa}:18002"),
        "egress blocked: CONNECT registry.opentofu.org:443".to_string(),
        "egress blocked: GET 169.254.169.254:80".to_string(),
    ] {
        assert!(log.contains(&blocked), "the log says {blocked:?}:\n{log}");
    }
}

/// A service of the agent's host on `addr` (a port it picks): answers every connection with
/// `HTTP/1.0 200` and the body `host-service`.
fn host_service(addr: &str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind((addr, 0)).expect("listen on the host's address");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                // Read the whole request head, so that closing never resets a client still writing.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhost-service\n",
                );
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_tasks_reach_the_internet_but_not_the_agent_hosts_own_services() {
    let host = TestHost::start().await;
    let (hip, peer) = (&host.host_ip, &host.ip);
    let hport = host_service(hip);
    // Control: the service answers whoever may reach it.
    let (code, body) = tofuflow_e2e::http_get(&format!("http://{hip}:{hport}/")).unwrap();
    assert_eq!((code, body.trim()), (200, "host-service"));
    let mut c = Cluster::start(Db::Sqlite).await;
    // No network flag: the default.
    c.agent(AgentOpts::default()).await;
    let grpc = port_of(&c.grpc_url());
    // `connect_code TARGET`: the proxy's answer to `CONNECT TARGET` (200 connected, 403 refused);
    // `get_code URL`: its answer to a plain-HTTP GET. Both always use the proxy (`--noproxy ''`
    // overrides the task's NO_PROXY for loopback). A probe is BLOCKED when the answer is 403.
    let script = format!(
        r#"connect_code() {{ curl --noproxy '' -gs -m 5 -p -o /dev/null -w '%{{http_connect}}' -x "$HTTPS_PROXY" "http://$1/"; }}
get_code() {{ curl --noproxy '' -gs -m 5 -o /dev/null -w '%{{http_code}}' -x "$HTTP_PROXY" "$1"; }}
probe control-internet-get 'curl -sf -m 5 http://{peer}:18001/ | grep -q "hello from the test host"'
probe control-internet-connect 'test "$(connect_code {peer}:18001)" = 200'
probe rabbitmq-tcp 'exec 3<>/dev/tcp/127.0.0.1/5672'
probe rabbitmq-proxy 'test "$(connect_code 127.0.0.1:5672)" != 403'
probe rabbitmq-proxy-get 'test "$(get_code http://127.0.0.1:5672/)" != 403'
probe rabbitmq-localhost 'test "$(connect_code localhost:5672)" != 403'
probe rabbitmq-ipv6-loopback 'test "$(connect_code [::1]:5672)" != 403'
probe rabbitmq-ipv4-mapped 'test "$(connect_code [::ffff:127.0.0.1]:5672)" != 403'
probe rabbitmq-unspecified 'test "$(connect_code 0.0.0.0:5672)" != 403'
probe rabbitmq-short-form 'test "$(connect_code 127.1:5672)" != 403'
probe postgres-tcp 'exec 3<>/dev/tcp/127.0.0.1/5432'
probe postgres-proxy 'test "$(connect_code 127.0.0.1:5432)" != 403'
probe coordinator-grpc-tcp 'exec 3<>/dev/tcp/127.0.0.1/{grpc}'
probe coordinator-grpc-proxy 'test "$(connect_code 127.0.0.1:{grpc})" != 403'
probe metadata-service 'test "$(get_code http://169.254.169.254/)" != 403'
probe host-address-tcp 'exec 3<>/dev/tcp/{hip}/{hport}'
probe host-address-proxy 'curl -sf -m 5 http://{hip}:{hport}/ | grep -q host-service'
probe host-address-connect 'test "$(connect_code {hip}:{hport})" != 403'"#
    );
    let m = module(&c, "default-net", &script);
    let id = c.submit(&m, "net/default", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
    let log = logs(&c, &id);
    assert_probes(
        &log,
        &["control-internet-get", "control-internet-connect"],
        &[
            "rabbitmq-tcp",
            "rabbitmq-proxy",
            "rabbitmq-proxy-get",
            "rabbitmq-localhost",
            "rabbitmq-ipv6-loopback",
            "rabbitmq-ipv4-mapped",
            "rabbitmq-unspecified",
            "rabbitmq-short-form",
            "postgres-tcp",
            "postgres-proxy",
            "coordinator-grpc-tcp",
            "coordinator-grpc-proxy",
            "metadata-service",
            "host-address-tcp",
            "host-address-proxy",
            "host-address-connect",
        ],
    );
    let loopback = "is a loopback address: the agent host's own services are out of a task's reach";
    for blocked in [
        "tofuflow: network egress: egress only through the agent's proxy".to_string(),
        format!("egress blocked: CONNECT 127.0.0.1:5672: 127.0.0.1 {loopback}"),
        format!("egress blocked: GET 127.0.0.1:5672: 127.0.0.1 {loopback}"),
        format!("egress blocked: CONNECT 127.0.0.1:5432: 127.0.0.1 {loopback}"),
        format!("egress blocked: CONNECT 127.0.0.1:{grpc}: 127.0.0.1 {loopback}"),
        "egress blocked: CONNECT [::1]:5672: ::1 is a loopback address".to_string(),
        "egress blocked: CONNECT 0.0.0.0:5672: 0.0.0.0 is the unspecified address".to_string(),
        "egress blocked: GET 169.254.169.254:80: 169.254.169.254 is link-local".to_string(),
        format!("egress blocked: GET {hip}:{hport}: {hip} is an address of the agent's own host"),
        format!(
            "egress blocked: CONNECT {hip}:{hport}: {hip} is an address of the agent's own host"
        ),
    ] {
        assert!(log.contains(&blocked), "the log says {blocked:?}:\n{log}");
    }
    // Control: the state backend stayed reachable (through its relay): plan, apply, a version.
    let out = c.cli(&["state", "list", "net/default", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["versions"][0]["run_id"], id.as_str(), "{v}");
    // The agent says which mode its pool got.
    let out = c.cli(&["agent", "list", "-o", "json"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(agents[0]["labels"]["network.default"], "egress", "{agents}");
}

#[test]
fn check_reports_the_hosts_isolation_and_refuses_what_it_cannot_give() {
    let dir = std::env::temp_dir().join(format!(
        "tofuflow-check-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let bins = tofuflow_e2e::bin_dir();
    let check = |args: &[&str]| {
        let out = Command::new(bins.join("tofuflow-agent"))
            .arg("check")
            .arg("--tofu-bin")
            .arg(bins.join("tofu-double"))
            .arg("--work-root")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = check(&["--sandbox", "required", "--network", "allow-list"]);
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "mount+pid+ipc+uts namespaces yes",
        "network namespace            yes",
        "seccomp filter               yes",
        "run user                     yes (UID 64000+slot",
        "network of pool default      allow-list",
        "ok: the agent can start",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let (code, out) = check(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("network of pool default      egress (the default"),
        "{out}"
    );
    assert!(!out.contains("loopback services"), "{out}");
    // Without network namespaces the default falls back to the host network, loudly.
    let (code, out) = check(&["--sandbox", "off"]);
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "network of pool default      host\n",
        "warning                      pool default: tasks can reach this host's loopback services (RabbitMQ, databases, the coordinator) and cloud metadata: the default network mode egress needs a network namespace (--sandbox off)",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    for args in [
        ["--sandbox", "off", "--network", "egress"],
        ["--sandbox", "off", "--pool-network", "default=egress"],
    ] {
        let (code, out) = check(&args);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("missing a network namespace for pools default (egress)"),
            "{out}"
        );
    }
    let (code, out) = check(&["--sandbox", "off", "--network", "none"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("error: this host cannot give tasks the isolation the configuration requires: missing a network namespace for pools default (none)"),
        "{out}"
    );
    let (code, out) = check(&["--sandbox-bind", "/nonexistent/tofuflow"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "error: --sandbox-bind /nonexistent/tofuflow: no such file or directory on this host"
        ),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The task cgroups (v1 pids hierarchy, as on CI) whose names start with `prefix`.
fn task_cgroups(prefix: &str) -> Vec<String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = own
        .lines()
        .map(|l| l.splitn(3, ':').collect::<Vec<_>>())
        .find(|p| p.len() == 3 && p[1].split(',').any(|x| x == "pids"))
        .map(|p| p[2].trim_start_matches('/').to_string())
        .unwrap_or_default();
    let dir = PathBuf::from("/sys/fs/cgroup/pids").join(rel);
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_removes_the_cgroups_secrets_and_workdirs_its_killed_predecessor_left() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        args: vec!["--sandbox", "required", "--limit-nproc", "200"],
        ..Default::default()
    })
    .await;
    let root = c.agents[0].work_root.canonicalize().unwrap();
    let prefix = tofuflow_agent::sandbox::cgroup_prefix(&root);
    let id = c.submit(
        &example("long-apply"),
        "cgroups/left",
        &["--auto-approve", "--var", "seconds=654"],
    );
    let cc = &c;
    let rid = id.clone();
    wait_for("the provisioner to start", T, || {
        let rid = rid.clone();
        async move {
            logs(cc, &rid)
                .contains("(local-exec): started")
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        task_cgroups(&prefix).len(),
        1,
        "the running task has its cgroup"
    );
    c.agents[0].kill();
    wait_for("the task to die with its agent", T, || async {
        pids_matching("sleep 654").is_empty().then_some(())
    })
    .await;
    assert_eq!(
        task_cgroups(&prefix).len(),
        1,
        "a SIGKILLed agent cannot remove its task's cgroup"
    );
    let wd = root.join("work").join(&id);
    let secrets = wd.join("secrets");
    assert!(
        is_mountpoint(&secrets),
        "a SIGKILLed agent cannot unmount its task's secrets tmpfs"
    );
    c.agent(AgentOpts {
        args: vec!["--sandbox", "required", "--limit-nproc", "200"],
        work_root: Some(root),
        ..Default::default()
    })
    .await;
    assert!(
        task_cgroups(&prefix).is_empty(),
        "the restarted agent swept it"
    );
    assert!(!is_mountpoint(&secrets), "and unmounted the secrets");
    assert!(!wd.exists(), "and removed the working directory");
}

/// Whether `p` is a mount point (`/proc/self/mountinfo`, field 5).
fn is_mountpoint(p: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = p.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_ref()))
}

/// One sandbox per task, through the real helper: the task's commands run in the same
/// namespaces (what one command leaves in /tmp, or running, the next one sees; both see the same
/// PID 1), a command that ends takes its process group along, and ending the session ends
/// everything in it, also a process that left its group with `setsid`.
#[test]
fn a_tasks_commands_share_one_sandbox_and_nothing_outlives_it() {
    use tofuflow_agent::sandbox::{session, Sandbox, TOFU, WORKDIR};
    let bins = tofuflow_e2e::bin_dir();
    let root = std::env::temp_dir().join(format!("tofuflow-e2e-session-{}", std::process::id()));
    let wd = root.join("work").join("task");
    std::fs::create_dir_all(&wd).unwrap();
    let cfg = <tofuflow_agent::Config as clap::Parser>::parse_from([
        "tofuflow-agent".as_ref(),
        "--tofu-bin".as_ref(),
        bins.join("tofu-double").as_os_str(),
        "--work-root".as_ref(),
        root.as_os_str(),
        "--sandbox".as_ref(),
        "required".as_ref(),
    ]);
    let sb = Sandbox::with_helper(&cfg, bins.join("tofuflow-agent")).expect("the sandbox");
    let mut spec = sb.spec(&wd, None, true, None, Default::default(), vec![]);
    spec.cwd = WORKDIR.into();
    let held = session::start_blocking(&sb.helper, &spec).expect("a session");
    // Ended however the test ends (a failed assertion too), or its processes would outlive it.
    struct Ends(Option<session::Blocking>);
    impl Drop for Ends {
        fn drop(&mut self) {
            if let Some(h) = self.0.take() {
                let _ = h.end();
            }
        }
    }
    let mut held = Ends(Some(held));
    let control = held.0.as_ref().unwrap().control.try_clone().unwrap();
    let run = |script: &str| {
        let mut s = spec.clone();
        s.argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
        let o = session::run_blocking(&control, &s, &[("PATH", "/usr/bin:/bin")]).unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        (
            o.status.code(),
            out,
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, out, err) = run(
        "echo left > /tmp/left; setsid sleep 8801 >/dev/null 2>&1 </dev/null & \
         sleep 8802 >/dev/null 2>&1 </dev/null & cat /proc/1/stat | cut -d' ' -f1-2; exit 7",
    );
    assert_eq!(code, Some(7), "the command's exit code comes back: {err}");
    assert!(
        out.starts_with("1 (tofuflow-agent)"),
        "init is PID 1: {out}"
    );
    let (code, out, err) = run(&format!(
        "cat /tmp/left; pgrep -f 'sleep 88[0]' | wc -l; test -x {TOFU} && echo tofu-there; \
         cat /proc/1/stat | cut -d' ' -f1-2"
    ));
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["left", "1", "tofu-there", "1 (tofuflow-agent)"],
        "the second command is in the first one's sandbox, and only the setsid process of the \
         first is left (its group went with it)"
    );
    // (The `sleep` itself: a `setsid` that had to fork may still be exiting.)
    let sleepers: Vec<i32> = pids_matching("sleep 8801")
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
        .collect();
    assert_eq!(
        sleepers.len(),
        1,
        "alive while the session is: {sleepers:?}"
    );
    let ended = held.0.take().unwrap().end().unwrap();
    assert!(ended.success(), "{ended}");
    assert!(
        pids_matching("sleep 8801").is_empty(),
        "nothing outlives the session"
    );
    assert!(pids_matching("sleep 8802").is_empty());
    let gone = run("true");
    assert_eq!(
        gone.0,
        Some(125),
        "an ended session cannot be entered: {}",
        gone.2
    );
    assert!(gone.2.contains("the task's sandbox"), "{}", gone.2);
    std::fs::remove_dir_all(&root).ok();
}

/// A task whose sandbox cannot be built (a `--sandbox-bind` source that went away after the
/// agent's start-up check) fails with the reason in its log, and the agent carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_that_cannot_be_built_fails_its_task_with_the_reason() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let gone = c.dir.join("bind-that-goes");
    std::fs::create_dir_all(&gone).unwrap();
    let bind: &'static str = gone.to_string_lossy().to_string().leak();
    c.agent(AgentOpts {
        args: vec!["--sandbox", "required", "--sandbox-bind", bind],
        ..Default::default()
    })
    .await;
    std::fs::remove_dir_all(&gone).unwrap();
    let id = c.submit(&example("gpu-pool"), "sandbox/broken", &["--auto-approve"]);
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(
        r.error
            .starts_with("the sandbox could not be set up for `tofu init`"),
        "{}",
        r.error
    );
    let log = logs(&c, &id);
    assert!(
        log.contains(&format!("tofuflow sandbox: sandbox mount source {bind}")),
        "the helper's reason is in the log:\n{log}"
    );
    // No helper of this agent is left (only this agent's: the other tests here run helpers of
    // their own at the same time). The agent tries to build the sandbox for its next task when
    // this one ends; that fails the same way, and its helper goes too.
    let agent = c.agents[0].pid();
    wait_for("no helper of this agent to be left", T, || async move {
        let helpers: Vec<i32> = pids_matching("__sandbox")
            .into_iter()
            .filter(|p| parent_of(*p) == Some(agent))
            .collect();
        helpers.is_empty().then_some(())
    })
    .await;
    // The agent is fine once the path is back.
    std::fs::create_dir_all(&gone).unwrap();
    let id = c.submit(&example("gpu-pool"), "sandbox/fixed", &["--auto-approve"]);
    c.wait_state(&id, &["applied"], T).await;
}

/// The parent of process `pid` (field 4 of `/proc/PID/stat`).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
