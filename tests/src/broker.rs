//! The local RabbitMQ broker: `rabbitmqctl` (vhosts, stopping and starting the broker), and what
//! the dead-letter queue holds.

use crate::Cluster;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, ShortString};
use std::process::Command;

/// A message in the dead-letter queue, as an agent that refused it described it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadMessage {
    /// `x-tofuflow-dead-reason` (`tampered`, `expired`, `replayed`; empty for a message the
    /// broker dead-lettered by itself, e.g. a rejected poison message).
    pub reason: String,
    /// `x-tofuflow-dead-detail`.
    pub detail: String,
    pub message_id: String,
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    }
}

impl Cluster {
    /// Every message in the dead-letter queue, sorted; all of them stay in the queue (taken
    /// unacknowledged, handed back when the channel closes).
    pub async fn dead_messages(&self) -> Vec<DeadMessage> {
        let ch = self.amqp().await;
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get("tofuflow.dead".into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            let p = &m.delivery.properties;
            let h = p.headers().clone().unwrap_or_default();
            let get = |k: &str| text(h.inner().get(&ShortString::from(k)));
            out.push(DeadMessage {
                reason: get("x-tofuflow-dead-reason"),
                detail: get("x-tofuflow-dead-detail"),
                message_id: p
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            });
        }
        ch.close(200, "looked".into()).await.unwrap();
        out.sort();
        out
    }
}

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
