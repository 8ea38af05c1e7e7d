//! Keeping the local agent informed: registers the service with its TTL check, pushes every
//! change of the sidecar's verdict at once and refreshes it every interval, and re-registers
//! when the agent comes back without the service (an agent restart, a deregistration behind
//! the sidecar's back). Errors never stop the sidecar: they are logged and retried with
//! backoff.
//!
//! The reporter runs on its own task so that a slow or unreachable agent never delays the
//! supervision: the main loop only publishes its verdict on a `watch` channel, whose latest
//! value is what the reporter sends.

use std::sync::Arc;
use std::time::Duration;

use cairn_catalog::duration::format_go_duration;
use serde_json::json;
use tokio::sync::watch;

use super::config::Config;
use super::probe::Status;
use super::supervise::Backoff;
use crate::cli::client::{Client, Error};

/// The most one agent call may take.
/// Bounds a hung call; the reporter then retries.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The first delay between registration attempts.
const RETRY_MIN: Duration = Duration::from_millis(500);

/// The longest delay between registration attempts.
/// Small: while the agent is away the check is not being fed, and it should be fed again
/// soon after the agent returns.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The sidecar's verdict: what the TTL check should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    /// The check status.
    pub status: Status,
    /// The check output.
    pub output: String,
}

/// Why a registration failed.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// The agent refused the definition (a 4xx answer); retrying the same body will not help
    /// unless something changes on the agent's side.
    Rejected(String),
    /// No answer, a timeout or a server error.
    Failed(String),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::Rejected(m) | RegisterError::Failed(m) => f.write_str(m),
        }
    }
}

/// Registers the service with the sidecar's check in `status`.
pub(crate) async fn register(
    client: &Client,
    cfg: &Config,
    status: Status,
    timeout: Duration,
) -> Result<(), RegisterError> {
    let body = serde_json::to_vec(&cfg.registration(status))
        .map_err(|e| RegisterError::Rejected(format!("encoding the registration: {e}")))?;
    match tokio::time::timeout(
        timeout,
        client.put("/v1/agent/service/register", &[], Some(body)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e @ Error::Status { status, .. })) if (400..500).contains(&status) => {
            Err(RegisterError::Rejected(e.to_string()))
        }
        Ok(Err(e)) => Err(RegisterError::Failed(e.to_string())),
        Err(_) => Err(RegisterError::Failed(format!(
            "no answer within {}",
            format_go_duration(timeout)
        ))),
    }
}

/// Why a TTL update failed.
///
/// A lost check means the agent no longer has the registration (it restarted without it,
/// or someone deregistered the service): the fix is to register again.
enum UpdateError {
    /// The agent does not know the check (or it is no longer a TTL check).
    Lost(String),
    /// No answer, a timeout or another error.
    Failed(String),
}

/// Sets the TTL check's status and output (`PUT /v1/agent/check/update/:id`), which also
/// restarts its TTL.
async fn update(client: &Client, check_id: &str, report: &Report) -> Result<(), UpdateError> {
    let body = json!({"Status": report.status.as_str(), "Output": report.output});
    let body = serde_json::to_vec(&body).map_err(|e| UpdateError::Failed(e.to_string()))?;
    let path = format!("/v1/agent/check/update/{check_id}");
    match tokio::time::timeout(CALL_TIMEOUT, client.put(&path, &[], Some(body))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(
            e @ Error::Status {
                status: 404 | 400, ..
            },
        )) => Err(UpdateError::Lost(e.to_string())),
        Ok(Err(e)) => Err(UpdateError::Failed(e.to_string())),
        Err(_) => Err(UpdateError::Failed(format!(
            "no answer within {}",
            format_go_duration(CALL_TIMEOUT)
        ))),
    }
}

/// Deregisters the service (and with it every check bound to it).
pub(crate) async fn deregister(client: &Client, id: &str) -> Result<(), String> {
    let path = format!("/v1/agent/service/deregister/{id}");
    match tokio::time::timeout(CALL_TIMEOUT, client.put(&path, &[], None)).await {
        // Already gone is what was asked for.
        Ok(Ok(_)) | Ok(Err(Error::Status { status: 404, .. })) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            format_go_duration(CALL_TIMEOUT)
        )),
    }
}

/// Sleeps for `delay`; false when `stop` was raised (or its sender dropped) meanwhile.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    slept && !*stop.borrow()
}

/// Feeds the TTL check until `stop` is raised or the sender of `rx` is dropped.
/// `registered` tells whether the service is already registered. Stopping never cuts an
/// agent call short (each is bounded), so no registration can land after the caller's
/// deregistration.
pub(crate) async fn feed(
    client: Client,
    cfg: Arc<Config>,
    mut rx: watch::Receiver<Report>,
    mut stop: watch::Receiver<bool>,
    mut registered: bool,
) {
    let check_id = cfg.check_id();
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut failures = 0u32;
    let mut ever = registered;
    loop {
        if *stop.borrow() {
            return;
        }
        // The current verdict goes into the registration itself.
        if !registered {
            let status = rx.borrow().status;
            match register(&client, &cfg, status, CALL_TIMEOUT).await {
                Ok(()) => {
                    registered = true;
                    backoff.reset();
                    if !ever {
                        log_info!(
                            "registered service {:?} (ID {:?}, check {check_id:?})",
                            cfg.name,
                            cfg.id
                        );
                    } else if failures > 0 {
                        log_info!(
                            "agent answers again: re-registered service {:?} (ID {:?}) after {failures} failed attempt(s)",
                            cfg.name,
                            cfg.id
                        );
                    } else {
                        log_info!("re-registered service {:?} (ID {:?})", cfg.name, cfg.id);
                    }
                    failures = 0;
                    ever = true;
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff.next_delay();
                    log_warn!(
                        "registering service {:?} failed: {e}; retrying in {} (attempt {failures})",
                        cfg.id,
                        format_go_duration(delay)
                    );
                    if !pause(delay, &mut stop).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let report = rx.borrow_and_update().clone();
        match update(&client, &check_id, &report).await {
            Ok(()) => {}
            Err(UpdateError::Lost(why)) => {
                log_warn!(
                    "the agent lost check {check_id:?} ({why}); registering the service again"
                );
                registered = false;
                continue;
            }
            Err(UpdateError::Failed(why)) => {
                log_warn!(
                    "updating check {check_id:?} failed: {why}; will register again once the agent answers"
                );
                // The agent may have restarted meanwhile and lost the service: registering again
                // is harmless if it did not.
                registered = false;
                failures += 1;
                if !pause(backoff.next_delay(), &mut stop).await {
                    return;
                }
                continue;
            }
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // No change: refresh the TTL anyway.
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
