//! A RabbitMQ cluster of its own for a test: N nodes of the machine's RabbitMQ (the Debian
//! package) beside the packaged one, each with its own node name, AMQP and distribution ports,
//! config file, data and log directories, joined into one cluster. Every node is SIGKILLed and
//! its directory removed when the cluster is dropped, also when the test panics.
//!
//! Nodes run as the `rabbitmq` user, as the package's scripts run them (`rabbitmqctl` too): its
//! home holds the Erlang cookie all nodes and the CLI share, and the directories belong to it.
//! The system `rabbitmq.conf` pins the packaged node's listener, so each node gets its own.

use crate::bins::free_port;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// One node of a [`RabbitCluster`].
pub struct RabbitNode {
    /// `tf<id>-<n>@localhost`.
    pub name: String,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    /// The pid file the node writes once its VM runs (`rabbitmqctl wait` watches it).
    pid_file: PathBuf,
    child: Option<Child>,
}

/// A RabbitMQ cluster started by the test (see the module's doc).
pub struct RabbitCluster {
    dir: PathBuf,
    pub nodes: Vec<RabbitNode>,
}

/// `rabbitmqctl -n NODE ARGS…`.
pub fn node_ctl(node: &str, args: &[&str]) -> Output {
    Command::new("rabbitmqctl")
        .args(["-n", node])
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (Debian package rabbitmq-server)")
}

fn ctl_ok(node: &str, args: &[&str]) {
    let out = node_ctl(node, args);
    assert!(
        out.status.success(),
        "rabbitmqctl -n {node} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl RabbitCluster {
    /// Starts `n` nodes, waits until each is up and joins nodes 2..n to node 1.
    pub fn start(n: usize) -> RabbitCluster {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("tofuflow-rmq-{id}"));
        let mut c = RabbitCluster {
            dir,
            nodes: Vec::new(),
        };
        for i in 1..=n {
            let node = c.spawn_node(&format!("tf{id}-{i}@localhost"), free_port());
            c.nodes.push(node);
        }
        for node in &c.nodes {
            let pid_file = node.pid_file.display().to_string();
            ctl_ok(&node.name, &["wait", &pid_file, "--timeout", "60"]);
        }
        let first = c.nodes[0].name.clone();
        for node in &c.nodes[1..] {
            ctl_ok(&node.name, &["stop_app"]);
            ctl_ok(&node.name, &["reset"]);
            ctl_ok(&node.name, &["join_cluster", &first]);
            ctl_ok(&node.name, &["start_app"]);
        }
        c
    }

    /// Writes a node's config and starts it (AMQP on `port`) in a process group of its own.
    fn spawn_node(&self, name: &str, port: u16) -> RabbitNode {
        let short = name.split('@').next().unwrap();
        let d = self.dir.join(short);
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
        let ok = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot chown {} to rabbitmq", self.dir.display());
        let log = std::fs::File::create(d.join("server.out")).unwrap();
        let user = nix::unistd::User::from_name("rabbitmq")
            .ok()
            .flatten()
            .expect("user rabbitmq (Debian package rabbitmq-server)");
        // The server script itself, as `rabbitmq` (the package's wrapper would `su`, which
        // starts a session of its own: the node would escape this process group).
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .current_dir(&user.dir)
            .env("HOME", &user.dir)
            .env("RABBITMQ_NODENAME", name)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start rabbitmq-server (Debian package rabbitmq-server)");
        RabbitNode {
            name: name.to_string(),
            port,
            pid_file: d.join("pid"),
            child: Some(child),
        }
    }

    /// AMQP URLs of every node, for `vhost` (already percent-encoded), comma-separated.
    pub fn amqp_urls(&self, vhost: &str) -> String {
        self.nodes
            .iter()
            .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node leading quorum queue `queue` of vhost `/`, asked of any running node.
    pub fn leader_of(&self, queue: &str) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| {
                let out = node_ctl(
                    &n.name,
                    &["list_queues", "-q", "--no-table-headers", "name", "leader"],
                );
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.lines().find_map(|l| {
                    let mut f = l.split_whitespace();
                    (f.next() == Some(queue)).then(|| f.next().map(str::to_string))?
                })
            })
    }

    /// Starts a stopped node `name` again on its port (it rejoins the cluster from its data
    /// directory) and waits until it runs.
    pub fn restart_node(&mut self, name: &str) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .expect("a node of this cluster");
        assert!(self.nodes[i].child.is_none(), "node {name} is running");
        let node = self.spawn_node(name, self.nodes[i].port);
        let pid_file = node.pid_file.display().to_string();
        self.nodes[i] = node;
        ctl_ok(name, &["wait", &pid_file, "--timeout", "60"]);
        ctl_ok(name, &["await_startup", "--timeout", "60"]);
    }

    /// Stops node `name` (`rabbitmqctl stop`: the Erlang VM exits) and reaps its process.
    pub fn stop_node(&mut self, name: &str) {
        ctl_ok(name, &["stop"]);
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == name) {
            if let Some(mut c) = n.child.take() {
                let _ = c.wait();
            }
        }
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                // The whole group: su, the start script and the Erlang VM with its helpers.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("RabbitMQ node logs are in {} (removed)", self.dir.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
