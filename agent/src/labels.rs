//! What the agent says about its host when it registers: host name, architecture, CPUs, memory,
//! the tofu version, and GPUs (count and model, from `nvidia-smi` when present).

use std::collections::BTreeMap;
use std::process::Command;

/// Asks the tofu binary for its version (`version -json`, key `terraform_version`).
pub fn tofu_version(bin: &str) -> Result<String, String> {
    let out = Command::new(bin)
        .args(["version", "-json"])
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .map_err(|e| {
            format!(
                "cannot run the tofu binary {bin:?}: {e}; install OpenTofu or pass --tofu-bin PATH"
            )
        })?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("{bin:?} version -json did not print JSON: is it OpenTofu?"))?;
    v.get("terraform_version")
        .and_then(|x| x.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{bin:?} version -json has no terraform_version"))
}

/// Parses `nvidia-smi --query-gpu=name --format=csv,noheader` output into (count, model).
pub fn parse_gpus(out: &str) -> Option<(usize, String)> {
    let names: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if names.is_empty() {
        return None;
    }
    let mut models: Vec<&str> = names.clone();
    models.dedup();
    Some((names.len(), models.join(",")))
}

pub fn detect(
    tofu_bin: &str,
    extra: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let mut l = BTreeMap::new();
    l.insert("hostname".into(), hostname());
    l.insert("arch".into(), std::env::consts::ARCH.into());
    l.insert("os".into(), std::env::consts::OS.into());
    l.insert(
        "cpus".into(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
    );
    if let Some(mb) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
    }) {
        l.insert("memory_mb".into(), (mb / 1024).to_string());
    }
    l.insert("tofu_version".into(), tofu_version(tofu_bin)?);
    match Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
    {
        Ok(o) if o.status.success() => {
            if let Some((n, model)) = parse_gpus(&String::from_utf8_lossy(&o.stdout)) {
                l.insert("gpu_count".into(), n.to_string());
                l.insert("gpu_model".into(), model);
            }
        }
        _ => {
            l.insert("gpu_count".into(), "0".into());
        }
    }
    for (k, v) in extra {
        l.insert(k.clone(), v.clone());
    }
    Ok(l)
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lines() {
        assert_eq!(
            parse_gpus("NVIDIA A100-SXM4-80GB\nNVIDIA A100-SXM4-80GB\n"),
            Some((2, "NVIDIA A100-SXM4-80GB".into()))
        );
        assert_eq!(parse_gpus("\n"), None);
    }
}
