//! The way out of an isolated network: the agent's gateway (proxy and state-backend relay) that
//! the sandbox reaches over a Unix socket, with the policy of the task's network mode.

use super::Runner;
use crate::error::{Result, TaskError};
use crate::report::Reporter;
use crate::sandbox::{self, gateway, Network};
use tofuflow_proto::v1;

/// A running gateway for one task; it stops when dropped.
pub(super) struct Egress {
    pub gateway: gateway::Gateway,
    /// The ports the sandbox relays to the gateway, with their tags.
    pub relays: Vec<(u16, String)>,
    /// The proxy's port on the task's loopback.
    pub proxy_port: u16,
}

/// The ports a task's sandbox relays to the gateway, with their tags, and the proxy's port:
/// the proxy's, and the state backend's when the coordinator's backend is used.
pub(super) fn relays(state: &super::backend::StateBackend) -> (Vec<(u16, String)>, u16) {
    let proxy_port = if state
        .target
        .as_ref()
        .is_some_and(|t| t.1 == sandbox::PROXY_PORT)
    {
        sandbox::PROXY_PORT + 1
    } else {
        sandbox::PROXY_PORT
    };
    let mut relays = vec![(proxy_port, "proxy".to_string())];
    if let Some((_, p)) = &state.target {
        relays.push((*p, "backend".to_string()));
    }
    (relays, proxy_port)
}

impl Runner {
    /// Starts the gateway: the task's only way out when its network is not the host's.
    /// `state` says which backend the relay reaches, and whether over TLS. `bound` is the
    /// socket of a sandbox built ahead for this task (its relays already reach it).
    pub(super) fn start_egress(
        &self,
        spec: &v1::TaskSpec,
        network: Network,
        state: &super::backend::StateBackend,
        rep: &Reporter,
        bound: Option<super::warm::Bound>,
    ) -> Result<Egress> {
        let (relays, proxy_port) = relays(state);
        let rules = if network == Network::AllowList {
            self.cfg
                .allow_hosts
                .iter()
                .map(|h| gateway::parse_rule(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(TaskError::Egress)?
        } else {
            vec![]
        };
        let policy = gateway::Policy {
            backend: state.target.clone(),
            backend_tls: state.tls.then(|| self.backend_tls.clone()),
            network,
            rules,
        };
        rep.system(format!(
            "tofuflow: network {}: egress only through the agent's proxy{}",
            network.name(),
            self.egress_scope(network)
        ));
        let (path, listener) = match bound {
            Some(b) => b,
            None => gateway::bind(
                &self.sandbox.gateway_dir,
                &format!("{}-{}", spec.task_id, spec.attempt),
            )
            .map_err(TaskError::Egress)?,
        };
        Ok(Egress {
            gateway: gateway::serve_on(path, listener, policy, rep.handle()),
            relays,
            proxy_port,
        })
    }

    /// Where the proxy lets the task go, in words.
    fn egress_scope(&self, network: Network) -> String {
        match network {
            Network::AllowList => format!(" to {}", self.cfg.allow_hosts.join(", ")),
            Network::Egress => {
                " to anywhere but the agent host's own, loopback and link-local addresses"
                    .to_string()
            }
            _ => " (state backend only)".to_string(),
        }
    }
}
