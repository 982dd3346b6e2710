//! `tofuflow connection`: named credential sets (variables and files) that tasks of matching
//! workspaces receive. Values come from a file or standard input, never from the command line
//! (where `ps` and shell history would keep them); nothing prints them back.

use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tofuflow_proto::{connections, v1};

#[derive(Subcommand)]
pub enum ConnectionCmd {
    /// Create a connection, or replace its workspaces and all its values (a new version; admin).
    Set(Set),
    /// Give some keys new values, or remove keys, keeping the rest (a new version; admin).
    Rotate(Rotate),
    /// Delete a connection and every version of it (admin).
    Delete {
        #[arg(value_name = "NAME", value_parser = args::connection_name)]
        name: String,
    },
    /// List connections (names, workspaces, keys; never values).
    List {
        /// Only the connections a task of this workspace would receive.
        #[arg(long, short = 'w', value_name = "WORKSPACE", value_parser = args::workspace)]
        workspace: Option<String>,
    },
    /// Show a connection: workspaces, keys, plain values, versions (never secret values).
    Show {
        #[arg(value_name = "NAME", value_parser = args::connection_name)]
        name: String,
    },
}

/// Where values come from: an env file (or `-` for standard input) and files.
#[derive(clap::Args)]
pub struct Values {
    /// KEY=VALUE lines (dotenv: `export`, quotes and `#` comments allowed); `-` reads standard
    /// input.
    #[arg(long, value_name = "PATH|-")]
    from_file: Option<PathBuf>,
    /// A file the task receives (0600, in its secrets directory); VAR is set to its path there,
    /// e.g. --file KUBECONFIG=./kubeconfig. Repeatable.
    #[arg(long = "file", value_name = "VAR=PATH", value_parser = args::key_path)]
    files: Vec<(String, PathBuf)>,
    /// A key whose value is not secret (a region, an account id): shown by `show`, not masked,
    /// any length. Repeatable.
    #[arg(long = "plain", value_name = "KEY")]
    plain: Vec<String>,
}

#[derive(clap::Args)]
pub struct Set {
    #[arg(value_name = "NAME", value_parser = args::connection_name)]
    name: String,
    /// Workspace glob whose tasks receive it: `*` one path part, `**` any (ml/*, prod/**).
    /// Repeatable; at least one.
    #[arg(long = "workspace", short = 'w', value_name = "GLOB", value_parser = args::workspace_glob, required = true)]
    workspaces: Vec<String>,
    #[command(flatten)]
    values: Values,
    /// Only tasks of this phase receive it (e.g. `apply` for write credentials, so plans run
    /// with read-only ones). Repeatable; default: plan and apply.
    #[arg(long = "phase", value_name = "PHASE")]
    phases: Vec<PhaseArg>,
    /// What it is for.
    #[arg(long, default_value = "")]
    description: String,
}

/// A task phase, as `--phase` takes it.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PhaseArg {
    Plan,
    Apply,
}

impl PhaseArg {
    fn to_pb(self) -> i32 {
        match self {
            PhaseArg::Plan => v1::Phase::Plan as i32,
            PhaseArg::Apply => v1::Phase::Apply as i32,
        }
    }
}

#[derive(clap::Args)]
pub struct Rotate {
    #[arg(value_name = "NAME", value_parser = args::connection_name)]
    name: String,
    #[command(flatten)]
    values: Values,
    /// A key to drop. Repeatable.
    #[arg(long = "remove", value_name = "KEY")]
    remove: Vec<String>,
}

impl Values {
    /// Reads the values; a bad file or value is refused before anything is sent.
    fn read(self, check: bool) -> Result<v1::ConnectionValues, String> {
        let env = match &self.from_file {
            None => BTreeMap::new(),
            Some(p) => {
                let text = read_text(p)?;
                connections::parse_env_file(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
        };
        let mut files = BTreeMap::new();
        for (k, p) in self.files {
            connections::valid_key(&k)?;
            let content = std::fs::read(&p)
                .map_err(|e| format!("cannot read {} for --file {k}: {e}", p.display()))?;
            files.insert(k, content);
        }
        if check {
            connections::check_values(&env, &files, &self.plain)?;
        }
        Ok(v1::ConnectionValues {
            env: env.into_iter().collect::<HashMap<_, _>>(),
            files: files.into_iter().collect::<HashMap<_, _>>(),
            plain_keys: self.plain,
        })
    }
}

fn read_text(p: &PathBuf) -> Result<String, String> {
    if p.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("cannot read values from standard input: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

impl ConnectionCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let c = match self {
            ConnectionCmd::Set(s) => {
                let req = v1::SetConnectionRequest {
                    values: Some(s.values.read(true)?),
                    name: s.name,
                    workspaces: s.workspaces,
                    description: s.description,
                    phases: s.phases.iter().map(|p| p.to_pb()).collect(),
                };
                let c = ctx.client.set_connection(req).await;
                let c = c.map_err(|s| ctx.explain(s))?.into_inner();
                announce(ctx, "set", &c);
                c
            }
            ConnectionCmd::Rotate(r) => {
                let req = v1::RotateConnectionRequest {
                    values: Some(r.values.read(false)?),
                    name: r.name,
                    remove_keys: r.remove,
                };
                let c = ctx.client.rotate_connection(req).await;
                let c = c.map_err(|s| ctx.explain(s))?.into_inner();
                announce(ctx, "rotated", &c);
                c
            }
            ConnectionCmd::Delete { name } => {
                let req = v1::ConnectionRequest { name };
                let c = ctx.client.delete_connection(req).await;
                let c = c.map_err(|s| ctx.explain(s))?.into_inner();
                if !ctx.json {
                    println!(
                        "deleted connection {} and its {} version(s)",
                        c.name,
                        c.versions.len()
                    );
                    return Ok(0);
                }
                c
            }
            ConnectionCmd::Show { name } => {
                let c = ctx
                    .client
                    .get_connection(v1::ConnectionRequest { name })
                    .await;
                c.map_err(|s| ctx.explain(s))?.into_inner()
            }
            ConnectionCmd::List { workspace } => {
                let req = v1::ListConnectionsRequest {
                    workspace: workspace.unwrap_or_default(),
                };
                let r = ctx.client.list_connections(req).await;
                let r = r.map_err(|s| ctx.explain(s))?.into_inner();
                output::print_connections(&r.connections, ctx.json);
                return Ok(0);
            }
        };
        output::print_connection(&c, ctx.json);
        Ok(0)
    }
}

fn announce(ctx: &Ctx, what: &str, c: &v1::Connection) {
    if !ctx.json {
        println!(
            "{what} connection {} (version {}); the next task of {} receives it",
            c.name,
            c.version,
            c.workspaces.join(", ")
        );
    }
}
