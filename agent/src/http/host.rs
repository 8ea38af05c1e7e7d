//! `GET /v1/agent/host`: the host the agent runs on, in the shape Consul reports it (memory,
//! CPUs, host, the data directory's disk), read from `/proc` and `statvfs`. What cannot be read
//! is listed in `Errors` instead of failing the request, as Consul does.
//!
//! The keys are lowerCamelCase (`usedPercent`, `modelName`), unlike the rest of the API:
//! Consul serializes the structs of its host-statistics library as they are. Parsing is split
//! from reading so that the parsers are tested on fixed text.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::Req;
use super::error::ApiError;
use super::{AppState, json_response};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/agent/host", get(host))
}

/// `key: value` lines (`/proc/meminfo`, one block of `/proc/cpuinfo`). Keys and values are
/// trimmed, since `/proc/cpuinfo` pads keys with tabs; lines without `:` are skipped.
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Memory from `/proc/meminfo` (kB figures) in bytes. "Used" is what is not available:
/// `MemAvailable` already counts the caches the kernel can reclaim, so memory held only by the
/// page cache does not look used. A missing line reads as 0.
pub fn memory(meminfo: &str) -> Value {
    let f = fields(meminfo);
    // The kernel writes "kB" and means KiB.
    let kb = |k: &str| -> u64 {
        f.get(k)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n * 1024)
    };
    let total = kb("MemTotal");
    let available = kb("MemAvailable");
    let used = total.saturating_sub(available);
    let percent = if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    };
    json!({
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": percent,
        "free": kb("MemFree"),
        "buffers": kb("Buffers"),
        "cached": kb("Cached"),
        "swapTotal": kb("SwapTotal"),
        "swapFree": kb("SwapFree"),
    })
}

/// One entry per processor from `/proc/cpuinfo`: blocks separated by blank lines, each
/// starting with `processor`. Architectures without x86's fields (aarch64's `/proc/cpuinfo`
/// has no `model name` or `cpu MHz`) get empty strings and zeros rather than an error.
pub fn cpus(cpuinfo: &str) -> Vec<Value> {
    cpuinfo
        .split("\n\n")
        .map(fields)
        .filter(|f| f.contains_key("processor"))
        .map(|f| {
            let get = |k: &str| f.get(k).cloned().unwrap_or_default();
            let num = |k: &str| -> f64 {
                f.get(k)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0.0)
            };
            // `cacheSize` is the kernel's KB figure as a number; `cores` is per physical
            // package (`cpu cores`), not the machine's total.
            json!({
                "cpu": num("processor") as u64,
                "vendorId": get("vendor_id"),
                "family": get("cpu family"),
                "model": get("model"),
                "stepping": num("stepping") as u64,
                "physicalId": get("physical id"),
                "coreId": get("core id"),
                "cores": num("cpu cores") as u64,
                "modelName": get("model name"),
                "mhz": num("cpu MHz"),
                "cacheSize": num("cache size") as u64,
                "flags": get("flags").split_whitespace().collect::<Vec<_>>(),
                "microcode": get("microcode"),
            })
        })
        .collect()
}

/// A value of `/etc/os-release` (unquoted). `ID` gives `platform`, `ID_LIKE` the family,
/// `VERSION_ID` the version.
fn os_release(text: &str, key: &str) -> String {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// A whole file, or an empty string with the failure recorded in `errors`, so that one
/// unreadable file blanks its own fields rather than failing the whole answer.
fn read(path: &str, errors: &mut Vec<String>) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        errors.push(format!("{path}: {e}"));
        String::new()
    })
}

/// Usage of the file system holding `path`, computed as `df` does: sizes in fragment-size
/// units (what POSIX counts blocks in), `free` as what an unprivileged user may still use,
/// and the percentage over used plus that, so blocks reserved for root count neither way.
fn disk(path: &str, errors: &mut Vec<String>) -> Value {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            // `free` counts the blocks available to unprivileged users; `blocks_free` also
            // counts those reserved for root, which are therefore not "used".
            let block = s.fragment_size();
            let total = s.blocks() * block;
            let free = s.blocks_available() * block;
            let used = total.saturating_sub(s.blocks_free() * block);
            let percent = if used + free == 0 {
                0.0
            } else {
                used as f64 * 100.0 / (used + free) as f64
            };
            json!({
                "path": path,
                "total": total,
                "free": free,
                "used": used,
                "usedPercent": percent,
                "inodesTotal": s.files(),
                "inodesFree": s.files_free(),
                "inodesUsed": s.files().saturating_sub(s.files_free()),
            })
        }
        Err(e) => {
            errors.push(format!("disk {path}: {e}"));
            Value::Null
        }
    }
}

/// `GET /v1/agent/host`. The data directory's file system is the disk reported (the root
/// when there is none, as in `-dev`), since that is the disk the agent fills.
async fn host(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    let data_dir = a
        .config()
        .data_dir
        .clone()
        .map_or_else(|| "/".to_string(), |d| d.display().to_string());
    // File reads and `statvfs` are blocking calls: off the async workers, where a slow file
    // system would stall other requests.
    let body = tokio::task::spawn_blocking(move || {
        let mut errors = Vec::new();
        let meminfo = read("/proc/meminfo", &mut errors);
        let cpuinfo = read("/proc/cpuinfo", &mut errors);
        // Seconds since boot, the first of the two figures (the second is idle time).
        let uptime: f64 = read("/proc/uptime", &mut errors)
            .split_whitespace()
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or(0.0);
        // Optional: minimal images have no `/etc/os-release`, which is no error worth listing.
        let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Processes are the numeric entries of `/proc`.
        let procs = std::fs::read_dir("/proc").map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        });
        // `os` and `kernelArch` use Rust's names, which on Linux match what Consul reports
        // (`linux`; `x86_64` or `aarch64`, as `uname -m` says). Virtualization is not
        // detected: both fields stay empty.
        let host = json!({
            "hostname": read("/proc/sys/kernel/hostname", &mut errors).trim(),
            "uptime": uptime as u64,
            "bootTime": now.as_secs().saturating_sub(uptime as u64),
            "procs": procs,
            "os": std::env::consts::OS,
            "platform": os_release(&release, "ID"),
            "platformFamily": os_release(&release, "ID_LIKE"),
            "platformVersion": os_release(&release, "VERSION_ID"),
            "kernelVersion": read("/proc/sys/kernel/osrelease", &mut errors).trim(),
            "kernelArch": std::env::consts::ARCH,
            "virtualizationSystem": "",
            "virtualizationRole": "",
            // The kernel's boot ID: unique per boot, and readable without privileges.
            "hostId": read("/proc/sys/kernel/random/boot_id", &mut errors).trim(),
        });
        let disk = disk(&data_dir, &mut errors);
        json!({
            "Memory": memory(&meminfo),
            "CPU": cpus(&cpuinfo),
            "Host": host,
            "Disk": disk,
            // Nanoseconds since the epoch, as Go's `UnixNano`.
            "CollectionTime": now.as_nanos() as u64,
            "Errors": if errors.is_empty() { Value::Null } else { json!(errors) },
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading host information: {e}")))?;
    Ok(json_response(&body, o.pretty))
}

/// The parsers on fixed text, so the tests do not depend on the machine running them.
#[cfg(test)]
mod tests {
    use super::*;

    /// Figures are converted to bytes, x86 `cpuinfo` padding is handled, quotes are dropped.
    #[test]
    fn proc_files_are_read_into_consuls_shape() {
        let m = memory("MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 250 kB\n");
        assert_eq!(m["total"], 1_024_000);
        assert_eq!(m["used"], 750 * 1024);
        assert_eq!(m["usedPercent"], 75.0);
        let c = cpus(
            "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu MHz\t\t: 2596.096\n\
             cache size\t: 1024 KB\ncpu cores\t: 2\nflags\t\t: fpu sse\n\n\
             processor\t: 1\nvendor_id\t: AuthenticAMD\n",
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["mhz"], 2596.096);
        assert_eq!(c[0]["cacheSize"], 1024);
        assert_eq!(c[0]["flags"], json!(["fpu", "sse"]));
        assert_eq!(c[1]["cpu"], 1);
        assert_eq!(
            os_release("ID=debian\nVERSION_ID=\"12\"\n", "VERSION_ID"),
            "12"
        );
    }
}
