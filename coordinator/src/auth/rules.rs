//! Which modules may run where: workspace rules (allowed module sources and bundle digests,
//! allowed pools, four-eyes) and pool rules (the workspaces a pool serves). Every rule whose
//! glob matches a workspace applies. Checked at submit and again at claim (a rule may change
//! while a run waits); a refusal names the rule.

use super::WorkspaceGlob;
use crate::store::{PoolRule, Store, WorkspaceRule};

/// The rules in force, read from the store.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub workspace: Vec<WorkspaceRule>,
    pub pools: Vec<PoolRule>,
}

/// Whether `glob` matches `workspace`; a damaged glob matches everything (fail closed).
fn covers(glob: &str, workspace: &str) -> bool {
    WorkspaceGlob::parse(glob).map_or(true, |g| g.matches(workspace))
}

/// Whether `source` is `prefix` or lies under it (`prefix/…`, `prefix//…`).
fn under(source: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    source == prefix
        || source
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Rules {
    /// The rules in force now.
    pub async fn load(store: &Store) -> crate::error::Result<Rules> {
        Ok(Rules {
            workspace: store.workspace_rules().await?,
            pools: store.pool_rules().await?,
        })
    }

    fn matching<'a>(&'a self, workspace: &'a str) -> impl Iterator<Item = &'a WorkspaceRule> {
        self.workspace
            .iter()
            .filter(move |r| covers(&r.workspaces, workspace))
    }

    /// The four-eyes rule covering `workspace`, if any: its submitter may not approve.
    pub fn four_eyes<'a>(&'a self, workspace: &'a str) -> Option<&'a WorkspaceRule> {
        self.matching(workspace).find(|r| r.four_eyes)
    }

    /// Refuses a module (its recorded `source`, its bundle `digest`) that a rule covering
    /// `workspace` does not allow.
    pub fn check_module(&self, workspace: &str, source: &str, digest: &str) -> Result<(), String> {
        for r in self.matching(workspace) {
            if r.sources.is_empty() && r.digests.is_empty() {
                continue;
            }
            let by_source = !source.is_empty() && r.sources.iter().any(|p| under(source, p));
            let by_digest = r.digests.iter().any(|d| d == digest);
            if !(by_source || by_digest) {
                let shown = if source.is_empty() {
                    "none recorded"
                } else {
                    source
                };
                return Err(format!(
                    "workspace rule {} allows modules from {} or bundles {}; this run's source is {shown} and its bundle {digest} (submit from an allowed source with `run submit --source`, or ask an admin to sign the bundle off with `tofuflow rule set {} --digest {digest}`)",
                    r.workspaces,
                    list(&r.sources),
                    list(&r.digests),
                    r.workspaces,
                ));
            }
        }
        Ok(())
    }

    /// Refuses running `workspace` on `pool` when a workspace rule lists other pools or the
    /// pool's rule serves other workspaces.
    pub fn check_pool(&self, workspace: &str, pool: &str) -> Result<(), String> {
        if let Some(r) = self
            .matching(workspace)
            .find(|r| !r.pools.is_empty() && !r.pools.iter().any(|p| p == pool))
        {
            return Err(format!(
                "workspace rule {} allows pools {} only, not {pool}",
                r.workspaces,
                list(&r.pools)
            ));
        }
        if let Some(r) = self.pools.iter().find(|r| r.pool == pool) {
            if !r.workspaces.iter().any(|g| covers(g, workspace)) {
                return Err(format!(
                    "pool rule {pool} serves workspaces {} only, not {workspace}",
                    list(&r.workspaces)
                ));
            }
        }
        Ok(())
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            workspace: vec![WorkspaceRule {
                workspaces: "prod/**".into(),
                four_eyes: true,
                sources: vec!["git@x:acme/infra.git//modules/gpu".into()],
                digests: vec!["sha256:aa".into()],
                pools: vec!["gpu".into()],
                ..Default::default()
            }],
            pools: vec![PoolRule {
                pool: "gpu".into(),
                workspaces: vec!["prod/**".into(), "ml/*".into()],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn modules_are_allowed_by_source_prefix_or_digest() {
        let r = rules();
        let src = "git@x:acme/infra.git//modules/gpu";
        assert!(r.check_module("prod/a", src, "sha256:bb").is_ok());
        assert!(r
            .check_module("prod/a", &format!("{src}/sub"), "sha256:bb")
            .is_ok());
        assert!(r
            .check_module("prod/a", &format!("{src}-evil"), "sha256:bb")
            .is_err());
        assert!(r.check_module("prod/a", "", "sha256:aa").is_ok());
        let e = r.check_module("prod/a", "", "sha256:bb").unwrap_err();
        assert!(e.contains("workspace rule prod/**"), "{e}");
        assert!(r.check_module("dev/a", "", "sha256:bb").is_ok());
        assert!(r.four_eyes("prod/a").is_some() && r.four_eyes("dev/a").is_none());
    }

    #[test]
    fn pools_and_workspaces_bind_both_ways() {
        let r = rules();
        assert!(r.check_pool("prod/a", "gpu").is_ok());
        assert!(r
            .check_pool("prod/a", "default")
            .unwrap_err()
            .contains("workspace rule prod/**"));
        assert!(r
            .check_pool("dev/a", "gpu")
            .unwrap_err()
            .contains("pool rule gpu"));
        assert!(r.check_pool("ml/a", "gpu").is_ok());
        assert!(r.check_pool("dev/a", "default").is_ok());
    }
}
