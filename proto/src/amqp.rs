//! The AMQP side of the wire contract: broker object names and limits, and their declaration
//! (run by the coordinator and by every agent; idempotent, so either may come first).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

/// Names and limits of the broker objects.
pub const TASK_EXCHANGE: &str = "tofuflow.tasks";
pub const DEAD_EXCHANGE: &str = "tofuflow.dead";
pub const DEAD_QUEUE: &str = "tofuflow.dead";
pub const DELIVERY_LIMIT: i64 = 5;
/// Default length limit of the dead-letter queue (the coordinator's `--dead-letter-max`).
pub const DEAD_LETTER_MAX: i64 = 10_000;

/// Header of a task message: when the coordinator handed it to the broker (microseconds
/// since the Unix epoch). Only for the agent's delivery-time metric: nothing trusts it.
pub const PUBLISHED_HEADER: &str = "tofuflow-published-us";

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub fn pool_queue(pool: &str) -> String {
    format!("tofuflow.pool.{pool}")
}

/// Arguments of the dead-letter queue: a quorum queue holding at most `max` messages, the
/// oldest dropped first when a new one arrives.
pub fn dead_queue_args(max: i64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        ShortString::from("x-max-length"),
        AMQPValue::LongLongInt(max),
    );
    args.insert(
        ShortString::from("x-overflow"),
        AMQPValue::LongString("drop-head".into()),
    );
    args
}

/// Adds a heartbeat to an AMQP URL unless it sets one (dead TCP peers are noticed in seconds).
pub fn with_heartbeat(url: &str, secs: u64) -> String {
    if url.contains("heartbeat=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&heartbeat={secs}")
    } else {
        format!("{url}?heartbeat={secs}")
    }
}

pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let props =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_string()));
    Connection::connect(&with_heartbeat(url, 10), props).await
}

/// The nodes of one RabbitMQ cluster a client may connect to (`--amqp-url` given several
/// times, or comma-separated). lapin connects to one address only, so this walks the list: a
/// connection goes to the first node that accepts it, starting after the node the previous
/// connection went to (that one has most likely just gone away), round the list.
pub struct Nodes {
    urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
}

impl Nodes {
    /// The nodes, in the order given (empty entries dropped).
    pub fn new(urls: &[String]) -> Nodes {
        Nodes {
            urls: urls
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            next: Default::default(),
        }
    }

    /// All the URLs, passwords hidden, for messages.
    pub fn describe(&self) -> String {
        self.urls
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Connects to the first node that answers (see [`Nodes`]); returns the connection and the
    /// node's URL with its password hidden. The error names every node tried and why.
    pub async fn connect(&self, name: &str) -> Result<(Connection, String), String> {
        use std::sync::atomic::Ordering;
        let n = self.urls.len();
        if n == 0 {
            return Err("no RabbitMQ URL given (--amqp-url)".into());
        }
        let start = self.next.load(Ordering::SeqCst);
        let mut why = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            match connect(&self.urls[i], name).await {
                Ok(c) => {
                    self.next.store((i + 1) % n, Ordering::SeqCst);
                    return Ok((c, redact(&self.urls[i])));
                }
                Err(e) => why.push(format!("{}: {e}", redact(&self.urls[i]))),
            }
        }
        Err(format!(
            "cannot reach RabbitMQ at {}: is it running? ({})",
            self.describe(),
            why.join("; ")
        ))
    }
}

/// Declares the exchanges and the queue of each pool (idempotent; the agent runs the same code,
/// so either side may come first). The dead-letter queue is not declared here: its length limit
/// is the coordinator's setting, and RabbitMQ closes the channel of a declaration whose
/// arguments differ from the queue's, so only the coordinator declares it (`dead_queue_args`).
pub async fn declare(ch: &Channel, pools: &[String]) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        TASK_EXCHANGE.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        DEAD_EXCHANGE.into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    let qopts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for pool in pools {
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(DEAD_EXCHANGE.into()),
        );
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        let q = pool_queue(pool);
        ch.queue_declare(q.as_str().into(), qopts, args).await?;
        ch.queue_bind(
            q.as_str().into(),
            TASK_EXCHANGE.into(),
            pool.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

pub use crate::names::valid_pool;

/// Hides the password of a URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        assert_eq!(
            redact("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f", 10),
            "amqp://h/%2f?heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h/v?heartbeat=5", 10),
            "amqp://h/v?heartbeat=5"
        );
        assert!(valid_pool("gpu-a100").is_ok());
        assert!(valid_pool("a.b").is_err());
        assert!(valid_pool("").is_err());
        assert_eq!(pool_queue("gpu"), "tofuflow.pool.gpu");
    }
}
