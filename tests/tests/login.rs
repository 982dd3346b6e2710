//! `tofuflow login`, `whoami` and `logout` against a real coordinator: the token is checked
//! before it is kept, kept in a 0600 file, and the flag and the environment win over the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tofuflow_e2e::{bin_dir, Cluster, Db};

/// The CLI with `config` as its config file and `env_token` as TOFUFLOW_TOKEN; no coordinator
/// in the environment unless `url` is given: (success, stdout, stderr).
fn cli(
    config: &Path,
    url: Option<&str>,
    env_token: Option<&str>,
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(bin_dir().join("tofuflow"));
    cmd.args(args)
        .env("TOFUFLOW_CONFIG_FILE", config)
        .env_remove("TOFUFLOW_TOKEN")
        .env_remove("TOFUFLOW_COORDINATOR");
    if let Some(u) = url {
        cmd.env("TOFUFLOW_COORDINATOR", u);
    }
    if let Some(t) = env_token {
        cmd.env("TOFUFLOW_TOKEN", t);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn login_checks_the_token_keeps_it_private_and_flag_and_env_win_over_the_file() {
    let c = Cluster::start(Db::Sqlite).await;
    let boot = c.bootstrap_token.clone().unwrap();
    let tester = c.token.clone().unwrap();
    let config = c.dir.join("home/tofuflow/config.toml");
    let url = c.grpc_url();

    // A refused token is not kept.
    let (ok, _, err) = cli(
        &config,
        None,
        None,
        &["--coordinator", &url, "login", "--token", "tfu_wrong"],
    );
    assert!(!ok && err.contains("invalid user token"), "{err}");
    assert!(!config.exists(), "nothing saved for a refused token");

    // A good one is kept, with the coordinator, readable by its owner only.
    let (ok, out, err) = cli(
        &config,
        None,
        None,
        &["--coordinator", &url, "login", "--token", &boot],
    );
    assert!(ok, "{err}");
    assert!(out.contains("admin"), "{out}");
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !out.contains(&boot) && !err.contains(&boot),
        "login never prints the token"
    );

    // The file alone is enough; the environment wins over it, and the flag over both.
    let (ok, out, _) = cli(&config, None, None, &["whoami"]);
    assert!(ok && out.contains("admin"), "{out}");
    let (ok, out, _) = cli(&config, None, Some(&tester), &["whoami"]);
    assert!(ok && out.contains("tester"), "{out}");
    let (ok, out, _) = cli(&config, None, Some(&tester), &["--token", &boot, "whoami"]);
    assert!(
        ok && out.contains("admin") && !out.contains("tester"),
        "{out}"
    );

    // A created token stands alone on the last line.
    let (ok, out, err) = cli(
        &config,
        None,
        None,
        &["token", "create", "--description", "ci"],
    );
    assert!(ok, "{err}");
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("tfu_"), "{out}");
    let (ok, out, _) = cli(&config, Some(&url), Some(&token), &["whoami"]);
    assert!(ok && out.contains("admin"), "{out}");

    // Logout forgets the token, not the coordinator.
    let (ok, _, err) = cli(&config, None, None, &["logout"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&config, None, None, &["whoami"]);
    assert!(!ok && err.contains("token is required"), "{err}");
    let kept = std::fs::read_to_string(&config).unwrap();
    assert!(kept.contains(&url) && !kept.contains("tfu_"), "{kept}");
}
