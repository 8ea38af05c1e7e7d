//! OSService checks on Linux: the state of a systemd unit from `systemctl is-active <unit>`.
//!
//! Consul implements OSService only on Windows (its Unix client answers "not implemented");
//! Cairn maps systemd's answer the way Consul maps the Windows service state: `active` ⇒
//! passing (`Service "<unit>" is healthy`), `inactive`/`failed` ⇒ critical (`OS Service
//! unhealthy: ...`), anything else (`activating`, `deactivating`, `reloading`, or systemctl
//! unable to reach systemd) ⇒ warning. Without `systemctl` on the machine the check is critical
//! with an output saying so.
//!
//! `systemctl` is run rather than systemd's D-Bus API spoken: it needs no bus client in the
//! agent, and `is-active` prints exactly the state this check needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_catalog::model::HealthStatus;

/// Finds `systemctl` on `PATH`.
///
/// Looked up once when the check's runner starts, the way a shell would, so a run needs no
/// search; a `systemctl` installed later is found when the check is registered again or the
/// agent restarts.
pub fn find_systemctl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("systemctl"))
        .find(|p| p.is_file())
}

/// Checks `unit` once with `systemctl` (None: not installed).
pub async fn run(
    systemctl: Option<&Path>,
    unit: &str,
    timeout: Duration,
) -> (HealthStatus, String) {
    let Some(systemctl) = systemctl else {
        return (
            HealthStatus::Critical,
            format!(
                "Cairn checks OS services through systemd, and systemctl was not found on this machine; cannot check {unit:?}"
            ),
        );
    };
    // A leading dash would make systemctl read the "unit" as an option, and the unit name
    // comes from a check definition, possibly registered over the API.
    if unit.is_empty() || unit.starts_with('-') {
        return (
            HealthStatus::Critical,
            format!("OS Service unhealthy: invalid unit name {unit:?}"),
        );
    }
    let output = tokio::process::Command::new(systemctl)
        .arg("is-active")
        .arg(unit)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, output).await {
        Err(_) => {
            return (
                HealthStatus::Critical,
                format!("Timed out ({timeout:?}) running check"),
            );
        }
        // systemctl did not run: that says nothing about the unit, hence a warning.
        Ok(Err(e)) => {
            return (
                HealthStatus::Warning,
                format!("Failed to run {}: {e}", systemctl.display()),
            );
        }
        Ok(Ok(o)) => o,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `is-active` exits non-zero for every state but `active`, so the printed state,
    // not the exit code, decides.
    let state = stdout.lines().next().unwrap_or("").trim();
    match state {
        "active" => (
            HealthStatus::Passing,
            format!("Service \"{unit}\" is healthy"),
        ),
        "inactive" | "failed" => (
            HealthStatus::Critical,
            format!("OS Service unhealthy: {unit} is {state}"),
        ),
        // No state printed: systemctl could not ask systemd (no systemd, no bus access);
        // its first stderr line says why.
        "" => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            (
                HealthStatus::Warning,
                format!(
                    "systemctl is-active {unit}: {}",
                    stderr.trim().lines().next().unwrap_or("no answer")
                ),
            )
        }
        other => (
            HealthStatus::Warning,
            format!("OS Service {unit} is {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    /// A fake `systemctl` answering `state` for every unit.
    fn fake(dir: &Path, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("systemctl");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// Runs a just-written script, retrying while another test's fork still holds it open
    /// for writing (ETXTBSY).
    async fn run_fresh(p: &Path, unit: &str, t: Duration) -> (HealthStatus, String) {
        for _ in 0..20 {
            let r = run(Some(p), unit, t).await;
            if !r.1.contains("Text file busy") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        run(Some(p), unit, t).await
    }

    /// Each state systemctl can print maps to the status in the module docs; a unit name that
    /// looks like an option is refused before systemctl runs.
    #[tokio::test]
    async fn unit_states_map_to_statuses() {
        let dir = std::env::temp_dir().join(format!("cairn-systemctl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let t = Duration::from_secs(5);
        let cases = [
            ("echo active", Passing, "Service \"web\" is healthy"),
            (
                "echo inactive; exit 3",
                Critical,
                "OS Service unhealthy: web is inactive",
            ),
            (
                "echo failed; exit 3",
                Critical,
                "OS Service unhealthy: web is failed",
            ),
            (
                "echo activating; exit 3",
                Warning,
                "OS Service web is activating",
            ),
            (
                "echo 'System has not been booted with systemd' >&2; exit 1",
                Warning,
                "systemctl is-active web: System has not been booted with systemd",
            ),
        ];
        for (i, (script, st, out)) in cases.into_iter().enumerate() {
            let sub = dir.join(i.to_string());
            std::fs::create_dir_all(&sub).expect("dir");
            let p = fake(&sub, script);
            assert_eq!(
                run_fresh(&p, "web", t).await,
                (st, out.to_string()),
                "{script}"
            );
        }
        let p = fake(&dir, "echo \"$1 $2\"");
        assert_eq!(run_fresh(&p, "-x", t).await.0, Critical, "options refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn missing_systemctl_says_so() {
        let (st, out) = run(None, "web", Duration::from_secs(1)).await;
        assert_eq!(st, Critical);
        assert!(out.contains("systemctl was not found"), "{out}");
    }
}
