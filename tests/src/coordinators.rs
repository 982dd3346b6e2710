//! More coordinators on a cluster's database and broker (active-active): started from the same
//! flags as the cluster's own, SIGKILLed when dropped.

use crate::bins::free_port;
use crate::{http_get, wait_for, Cluster};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Another coordinator of a [`Cluster`], logging to `coordinator-<n>.log` in its directory.
pub struct Coordinator {
    child: Option<Child>,
    pub grpc_port: u16,
    pub http_port: u16,
}

impl Coordinator {
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Cluster {
    /// Starts coordinator number `n` (2, 3, ...) on this cluster's database and broker, with the
    /// cluster's coordinator flags, and waits until its `/readyz` answers 200.
    pub async fn another_coordinator(&self, n: u32) -> Coordinator {
        self.coordinator_on(n, free_port(), free_port()).await
    }

    /// SIGKILLs coordinator `n` and starts it again on the same ports (clients given its URL
    /// find it again), waiting until it is ready.
    pub async fn restart_another(&self, co: &mut Coordinator, n: u32) {
        co.kill();
        *co = self.coordinator_on(n, co.grpc_port, co.http_port).await;
    }

    async fn coordinator_on(&self, n: u32, grpc_port: u16, http_port: u16) -> Coordinator {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("coordinator-{n}.log")))
            .unwrap();
        let child = Command::new(self.bins.join("tofuflow-coordinator"))
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(["--database-url", &self.db_url, "--amqp-url", &self.amqp_url])
            .args(["--pools", &self.pools.join(",")])
            .args(["--lease-ttl", "3s", "--heartbeat-interval", "1s"])
            .args(["--reap-interval", "200ms"])
            .args(&self.extra_coordinator_args)
            .env("TOFUFLOW_LOG", "info,tofuflow_coordinator=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start another coordinator");
        let c = Coordinator {
            child: Some(child),
            grpc_port,
            http_port,
        };
        let url = format!("http://127.0.0.1:{http_port}/readyz");
        wait_for(
            &format!("coordinator {n}'s /readyz"),
            Duration::from_secs(30),
            || {
                let ok = http_get(&url).is_ok_and(|(code, _)| code == 200);
                async move { ok.then_some(()) }
            },
        )
        .await;
        c
    }
}
