//! `tofuflow login`, `logout` and `whoami`: checking a token with the coordinator, keeping it in
//! the config file and showing who the coordinator takes the caller for.

use super::Ctx;
use crate::config::Config;
use crate::output;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use tofuflow_proto::v1;

/// Checks `token` with WhoAmI, then saves it with the coordinator's URL; nothing is saved when
/// the coordinator refuses it.
pub async fn login(ctx: &mut Ctx, path: &Path, token: String) -> Result<u8, String> {
    let me = ctx
        .client
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unauthenticated => format!(
                "the coordinator at {} refused this token ({}); nothing was saved",
                ctx.url,
                s.message()
            ),
            _ => ctx.explain(s),
        })?
        .into_inner();
    if me.open {
        eprintln!(
            "warning: the coordinator at {} runs with --insecure-open: it checks no token and anyone reaching it may do anything",
            ctx.url
        );
    }
    Config {
        coordinator: Some(ctx.url.clone()),
        token: Some(token),
    }
    .save(path)?;
    output::print_whoami(
        &me,
        &ctx.url,
        ctx.token_from.as_deref().unwrap_or("-"),
        ctx.json,
    );
    if !ctx.json {
        println!("Saved to     {}", path.display());
    }
    Ok(0)
}

/// Removes the saved token (the coordinator's URL stays); the token itself stays valid until it
/// expires or is revoked.
pub fn logout(path: &Path, file: &Config, json: bool) -> Result<u8, String> {
    let mut config = file.clone();
    let had = config.token.take().is_some();
    if had {
        config.save(path)?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"removed": had, "config_file": path.display().to_string()})
        );
    } else if had {
        println!(
            "removed the token from {} (it stays valid until it expires; `tofuflow token revoke ID` ends it now)",
            path.display()
        );
    } else {
        println!("no token saved in {}", path.display());
    }
    if std::env::var_os("TOFUFLOW_TOKEN").is_some_and(|t| !t.is_empty()) {
        eprintln!("note: TOFUFLOW_TOKEN is still set in your environment and will be used");
    }
    Ok(0)
}

/// Shows the caller's name, token and roles as the coordinator sees them.
pub async fn whoami(ctx: &mut Ctx) -> Result<u8, String> {
    let me = ctx
        .client
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    output::print_whoami(
        &me,
        &ctx.url,
        ctx.token_from.as_deref().unwrap_or("-"),
        ctx.json,
    );
    Ok(0)
}

/// Reads a token from standard input: its first line, without echo when it is a terminal.
pub fn read_token() -> Result<String, String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("Token: ");
        let _ = std::io::stderr().flush();
        let _echo = EchoOff::new(&stdin);
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the token: {e}"))?;
        eprintln!();
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
    }
    let token = line.trim();
    if token.is_empty() {
        return Err(
            "no token given: pass --token, or give it on standard input (`tofuflow login < token-file`)"
                .into(),
        );
    }
    Ok(token.to_string())
}

/// Turns the terminal's echo off while it lives, so a typed or pasted token is not shown.
struct EchoOff<'a> {
    stdin: &'a std::io::Stdin,
    saved: Option<nix::sys::termios::Termios>,
}

impl<'a> EchoOff<'a> {
    fn new(stdin: &'a std::io::Stdin) -> EchoOff<'a> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let saved = tcgetattr(stdin).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(stdin, SetArg::TCSANOW, &quiet);
        }
        EchoOff { stdin, saved }
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(self.stdin, nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}
