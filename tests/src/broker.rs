//! The local RabbitMQ broker: `rabbitmqctl` (vhosts, stopping and starting the broker).

use std::process::Command;

pub(crate) fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (RabbitMQ runs on this machine)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the local broker again however a test that stops it ends.
pub struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

/// Runs `rabbitmqctl ARG` (stop_app, start_app) and insists it worked.
pub fn broker_ctl(arg: &str) {
    rabbitmqctl(&[arg]);
}
