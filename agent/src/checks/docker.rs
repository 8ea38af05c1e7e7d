//! Docker checks (`DockerContainerID` with `Args`, or `Shell` with a script): each run executes
//! the command inside a running container through the Docker Engine API, as Consul does, and
//! maps the command's exit code like a script check's: 0 passing, 1 warning, anything else
//! critical.
//!
//! One run is three calls on the engine's socket (`DOCKER_HOST`, default
//! `unix:///var/run/docker.sock`; `tcp://host:port` is plain HTTP as in Consul):
//! 1. `POST /containers/{id}/exec` with the command, stdout and stderr attached: the exec ID;
//! 2. `POST /exec/{id}/start` with `Tty: true`, so the engine answers one raw stream (stdout
//!    and stderr interleaved, no multiplexing frames) that ends when the command does; its
//!    tail, up to the check's OutputMaxSize, is the output (`Captured N of M bytes` when cut,
//!    as script checks say);
//! 3. `GET /exec/{id}/json`: the exit code.
//!
//! Paths carry no API version (`/v1.41/...`), as Consul's client sends them: the engine then
//! speaks its own current version, so one client works with old and new engines alike. The
//! error texts are Consul's (`create exec failed for unknown container c1`), which alerts may
//! match on.
//!
//! The client is a few lines of hyper over a tokio stream rather than a Docker client crate;
//! docs/dependencies.md says why.

use std::time::Duration;

use bytes::Bytes;
use cairn_catalog::model::HealthStatus;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::probes::{AbortOnDrop, Tail, connect_tcp};

/// Where the engine listens when `DOCKER_HOST` is unset, as in Docker's own client.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How much of an API answer (other than the command's output) is kept: enough for an exec ID,
/// an inspect document or an error message.
const API_ANSWER_MAX: usize = 64 * 1024;

/// The engine's address, parsed from `DOCKER_HOST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A unix socket path (`unix:///var/run/docker.sock`).
    Unix(String),
    /// A TCP address (`tcp://127.0.0.1:2375`), spoken in plain HTTP, with an optional base path.
    Tcp {
        /// `host:port`.
        addr: String,
        /// Prefix of every request path (`tcp://host:2375/base`), usually empty.
        base: String,
    },
}

impl Engine {
    /// Parses a `DOCKER_HOST` value; empty means the default socket.
    ///
    /// Errors read as Consul's (`unable to parse docker host ...`): a check with a bad host is
    /// still registered, and its output is where the operator looks.
    pub fn parse(host: &str) -> Result<Engine, String> {
        let host = if host.trim().is_empty() {
            DEFAULT_DOCKER_HOST
        } else {
            host.trim()
        };
        let Some((proto, addr)) = host.split_once("://") else {
            return Err(format!("unable to parse docker host `{host}`"));
        };
        match proto {
            "unix" if !addr.is_empty() => Ok(Engine::Unix(addr.to_string())),
            "tcp" => {
                let (addr, base) = match addr.find('/') {
                    Some(i) => (&addr[..i], addr[i..].trim_end_matches('/')),
                    None => (addr, ""),
                };
                if super::probes::split_host_port(addr).is_none() {
                    return Err(format!("unable to parse docker host `{host}`"));
                }
                Ok(Engine::Tcp {
                    addr: addr.to_string(),
                    base: base.to_string(),
                })
            }
            _ => Err(format!(
                "unable to parse docker host `{host}`: only unix:// and tcp:// are supported"
            )),
        }
    }

    /// The engine named by the agent's environment (`DOCKER_HOST`).
    pub fn from_env() -> Result<Engine, String> {
        Engine::parse(&std::env::var("DOCKER_HOST").unwrap_or_default())
    }

    /// One request: the status code and the answer's tail (at most `max` bytes kept, all
    /// counted). A read error after the status line ends the body like EOF: the engine closes
    /// an exec's raw stream abruptly at times (Consul ignores the same reset).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        max: usize,
        timeout: Duration,
    ) -> Result<(u16, Tail), String> {
        match self {
            Engine::Unix(socket) => {
                let stream = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(socket))
                    .await
                    .map_err(|_| format!("dial unix {socket}: i/o timeout"))?
                    .map_err(|e| {
                        format!(
                            "dial unix {socket}: connect: {}",
                            super::probes::go_error(&e)
                        )
                    })?;
                exchange(stream, method, path.to_string(), body, max).await
            }
            Engine::Tcp { addr, base } => {
                let stream = connect_tcp(addr, timeout).await?;
                exchange(stream, method, format!("{base}{path}"), body, max).await
            }
        }
    }
}

/// One HTTP/1.1 exchange on its own connection, body read to its end.
async fn exchange<T>(
    io: T,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    max: usize,
) -> Result<(u16, Tail), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    // The connection task ends with this run, however the run ends.
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut req = Request::builder()
        .method(method)
        .uri(&path)
        // Any name does for a local socket; Docker's clients send this one.
        .header(HOST, "docker");
    let payload = match body {
        Some(v) => {
            req = req.header(CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(payload)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut tail = Tail::new(max);
    let mut body = resp.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            tail.push(data);
        }
    }
    Ok((status, tail))
}

/// A prepared Docker check.
#[derive(Debug)]
pub struct DockerProbe {
    /// The engine, or why it cannot be reached (a bad `DOCKER_HOST`).
    engine: Result<Engine, String>,
    /// Container ID or name.
    container: String,
    /// The command run in the container.
    cmd: Vec<String>,
    /// Per-run timeout.
    timeout: Duration,
    /// Output cap (OutputMaxSize).
    max_output: usize,
}

impl DockerProbe {
    /// A probe running `args` in `container`; without `args`, the definition's script through
    /// `shell` (`$SHELL` of the agent when empty, else `/bin/sh`), as Consul builds it.
    pub fn new(
        engine: Result<Engine, String>,
        container: &str,
        shell: &str,
        args: &[String],
        script: &str,
        timeout: Duration,
        max_output: usize,
    ) -> DockerProbe {
        let cmd = if args.is_empty() {
            let shell = if shell.is_empty() {
                std::env::var("SHELL")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/bin/sh".to_string())
            } else {
                shell.to_string()
            };
            vec![shell, "-c".to_string(), script.to_string()]
        } else {
            args.to_vec()
        };
        DockerProbe {
            engine,
            container: container.to_string(),
            cmd,
            timeout,
            max_output,
        }
    }

    /// Runs once: the status from the exit code and the command's output; an API failure is
    /// critical with Consul's text for it.
    pub async fn run(&self) -> (HealthStatus, String) {
        let run = self.exec();
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok((code, output))) => {
                let status = match code {
                    0 => HealthStatus::Passing,
                    1 => HealthStatus::Warning,
                    _ => HealthStatus::Critical,
                };
                (status, output.captured())
            }
            Ok(Err(e)) => (HealthStatus::Critical, e),
            Err(_) => (
                HealthStatus::Critical,
                format!("Timed out ({:?}) running check", self.timeout),
            ),
        }
    }

    /// Create, start and inspect one exec: its exit code and output.
    async fn exec(&self) -> Result<(i64, Tail), String> {
        let engine = self.engine.as_ref().map_err(Clone::clone)?;
        let c = &self.container;
        let t = self.timeout;
        // Create: Consul's body, stdout and stderr attached, no TTY allocated.
        let body = serde_json::json!({
            "AttachStdin": false,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": false,
            "Cmd": self.cmd,
        });
        let id: String = form_urlencoded::byte_serialize(c.as_bytes()).collect();
        let (code, answer) = engine
            .call(
                Method::POST,
                &format!("/containers/{id}/exec"),
                Some(body),
                API_ANSWER_MAX,
                t,
            )
            .await
            .map_err(|e| format!("create exec failed for container {c}: {e}"))?;
        let exec_id = match code {
            201 => {
                #[derive(serde::Deserialize)]
                struct Created {
                    #[serde(rename = "Id")]
                    id: String,
                }
                let created: Created = serde_json::from_str(&answer.text()).map_err(|e| {
                    format!("create exec response for container {c} cannot be parsed: {e}")
                })?;
                created.id
            }
            404 => return Err(format!("create exec failed for unknown container {c}")),
            409 => {
                return Err(format!(
                    "create exec failed since container {c} is paused or stopped"
                ));
            }
            _ => {
                return Err(format!(
                    "create exec failed for container {c} with status {code}: {}",
                    answer.text().trim_end()
                ));
            }
        };
        // An exec ID is hex; encoded all the same, since it goes into a path.
        let exec: String = form_urlencoded::byte_serialize(exec_id.as_bytes()).collect();
        // Start, attached: the answer is the command's output, until it exits. `Tty: true` asks
        // for the raw stream rather than multiplexed frames, as Consul does.
        let (code, output) = engine
            .call(
                Method::POST,
                &format!("/exec/{exec}/start"),
                Some(serde_json::json!({"Detach": false, "Tty": true})),
                self.max_output,
                t,
            )
            .await
            .map_err(|e| format!("start exec failed for container {c}: {e}"))?;
        match code {
            200 => {}
            404 => {
                return Err(format!(
                    "start exec failed for container {c}: invalid exec id {exec_id}"
                ));
            }
            409 => {
                return Err(format!(
                    "start exec failed since container {c} is paused or stopped"
                ));
            }
            _ => {
                return Err(format!(
                    "start exec failed for container {c} with status {code}: body: {}",
                    output.text().trim_end()
                ));
            }
        }
        let (code, answer) = engine
            .call(
                Method::GET,
                &format!("/exec/{exec}/json"),
                None,
                API_ANSWER_MAX,
                t,
            )
            .await
            .map_err(|e| format!("inspect exec failed for container {c}: {e}"))?;
        match code {
            200 => {
                #[derive(serde::Deserialize)]
                struct Inspected {
                    #[serde(rename = "ExitCode")]
                    exit_code: Option<i64>,
                }
                let inspected: Inspected = serde_json::from_str(&answer.text()).map_err(|e| {
                    format!("inspect exec response for container {c} cannot be parsed: {e}")
                })?;
                // No exit code yet: the command still runs although its stream ended (the
                // engine closed it early); not a success.
                Ok((inspected.exit_code.unwrap_or(-1), output))
            }
            404 => Err(format!(
                "inspect exec failed for container {c}: invalid exec id {exec_id}"
            )),
            _ => Err(format!(
                "inspect exec failed for container {c} with status {code}: {}",
                answer.text().trim_end()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            Engine::parse(""),
            Ok(Engine::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            Engine::parse("unix:///run/user/1000/docker.sock"),
            Ok(Engine::Unix("/run/user/1000/docker.sock".into()))
        );
        assert_eq!(
            Engine::parse("tcp://127.0.0.1:2375/base/"),
            Ok(Engine::Tcp {
                addr: "127.0.0.1:2375".into(),
                base: "/base".into()
            })
        );
        assert!(
            Engine::parse("/var/run/docker.sock")
                .is_err_and(|e| e.starts_with("unable to parse docker host"))
        );
        assert!(Engine::parse("ssh://host").is_err());
        assert!(Engine::parse("tcp://nohost").is_err());
    }

    /// Without `Args`, the script runs through the shell, as Consul builds the command.
    #[test]
    fn command_from_args_or_shell() {
        let e = || Engine::parse("");
        let t = Duration::from_secs(1);
        let p = DockerProbe::new(e(), "c", "/bin/bash", &["x".into()], "", t, 10);
        assert_eq!(p.cmd, ["x"]);
        let p = DockerProbe::new(e(), "c", "/bin/bash", &[], "exit 1", t, 10);
        assert_eq!(p.cmd, ["/bin/bash", "-c", "exit 1"]);
    }

    /// A fake engine on a unix socket: answers create, start and inspect from a script of
    /// (status, body) per call, and records the requests.
    async fn fake_engine(
        answers: Vec<(u16, String)>,
    ) -> (tempdir::Dir, Engine, Arc<Mutex<Vec<String>>>) {
        let dir = tempdir::Dir::new();
        let path = dir.path.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind fake engine");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            for (status, body) in answers {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                // Requests are small: read until the body (if any) is complete.
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(String::from_utf8_lossy(&req).to_string());
                // Close-delimited, as the engine answers an attached exec start.
                let head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (dir, Engine::Unix(path.display().to_string()), seen)
    }

    /// A minimal temporary directory removed on drop (the agent crate has no tempfile
    /// dependency).
    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "cairn-docker-check-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4()
                ));
                std::fs::create_dir_all(&path).expect("temp dir");
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    /// The three calls, in order, with Consul's bodies; exit codes map like a script's and
    /// the output is the stream's tail.
    #[tokio::test]
    async fn exit_codes_map_and_output_is_kept() {
        for (exit, want) in [(0, Passing), (1, Warning), (2, Critical), (137, Critical)] {
            let (_dir, engine, seen) = fake_engine(vec![
                (201, r#"{"Id":"abc123"}"#.into()),
                (200, "hello\nworld\n".into()),
                (200, format!(r#"{{"ExitCode":{exit},"Running":false}}"#)),
            ])
            .await;
            let p = DockerProbe::new(
                Ok(engine),
                "my app",
                "",
                &["check".into(), "--fast".into()],
                "",
                Duration::from_secs(5),
                4096,
            );
            assert_eq!(
                p.run().await,
                (want, "hello\nworld\n".into()),
                "exit {exit}"
            );
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            assert!(seen[0].starts_with("POST /containers/my+app/exec HTTP/1.1"));
            assert!(
                seen[0].contains(r#""Cmd":["check","--fast"]"#),
                "{}",
                seen[0]
            );
            assert!(seen[0].contains(r#""AttachStdout":true"#));
            assert!(seen[1].starts_with("POST /exec/abc123/start HTTP/1.1"));
            assert!(seen[1].contains(r#""Tty":true"#), "{}", seen[1]);
            assert!(seen[2].starts_with("GET /exec/abc123/json HTTP/1.1"));
        }
    }

    /// A long output keeps its tail with the script checks' header.
    #[tokio::test]
    async fn long_output_is_captured_like_scripts() {
        let (_dir, engine, _) = fake_engine(vec![
            (201, r#"{"Id":"e"}"#.into()),
            (200, "x".repeat(100) + "END"),
            (200, r#"{"ExitCode":0}"#.into()),
        ])
        .await;
        let p = DockerProbe::new(
            Ok(engine),
            "c",
            "",
            &["x".into()],
            "",
            Duration::from_secs(5),
            5,
        );
        assert_eq!(
            p.run().await,
            (Passing, "Captured 5 of 103 bytes\n...\nxxEND".into())
        );
    }

    /// Engine errors are critical with Consul's texts.
    #[tokio::test]
    async fn api_errors_read_like_consul() {
        let t = Duration::from_secs(5);
        let (_d, engine, _) = fake_engine(vec![(404, "no such container".into())]).await;
        let p = DockerProbe::new(Ok(engine), "gone", "", &["x".into()], "", t, 4096);
        assert_eq!(
            p.run().await,
            (
                Critical,
                "create exec failed for unknown container gone".into()
            )
        );
        let (_d, engine, _) = fake_engine(vec![(409, "paused".into())]).await;
        let p = DockerProbe::new(Ok(engine), "c", "", &["x".into()], "", t, 4096);
        assert_eq!(
            p.run().await.1,
            "create exec failed since container c is paused or stopped"
        );
        let (_d, engine, _) =
            fake_engine(vec![(201, r#"{"Id":"e"}"#.into()), (500, "boom".into())]).await;
        let p = DockerProbe::new(Ok(engine), "c", "", &["x".into()], "", t, 4096);
        assert_eq!(
            p.run().await.1,
            "start exec failed for container c with status 500: body: boom"
        );
        // No engine at all.
        let p = DockerProbe::new(
            Ok(Engine::Unix("/nonexistent/docker.sock".into())),
            "c",
            "",
            &["x".into()],
            "",
            t,
            4096,
        );
        let (st, out) = p.run().await;
        assert_eq!(st, Critical);
        assert!(
            out.starts_with(
                "create exec failed for container c: dial unix /nonexistent/docker.sock: connect:"
            ),
            "{out}"
        );
        let p = DockerProbe::new(Engine::parse("bad"), "c", "", &["x".into()], "", t, 4096);
        assert_eq!(p.run().await.0, Critical);
    }
}
