//! The two servers under load: the bare server (this binary in `baseline` mode) and our service
//! (the release `cmp-server`, development auth, simulated Graph without latency), each on its own
//! loopback port and database file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The path both servers serve the resource on.
pub const COLLECTION: &str = "/beta/deviceManagement/complianceManagementPartners";

/// The release build of our service.
pub struct ServiceBinary {
    /// `target/release/cmp-server`.
    pub(crate) path: PathBuf,
    /// The workspace root, the service's working directory (its `config/` lives there).
    pub(crate) workspace: PathBuf,
}

impl ServiceBinary {
    /// A development token from this binary's `mint-token`, run in `folder` with `environment`
    /// and an app role for each of `roles` (none: the default), as an `Authorization` value.
    ///
    /// # Errors
    /// When the command cannot run or fails.
    pub(crate) fn mint_authorization(
        &self,
        environment: &[(String, String)],
        folder: &Path,
        roles: &[&str],
    ) -> anyhow::Result<String> {
        let minted = Command::new(&self.path)
            .arg("mint-token")
            .args(roles.iter().flat_map(|role| ["--role", role]))
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(folder)
            .output()
            .context("minting a token")?;
        if !minted.status.success() {
            bail!(
                "cmp-server mint-token failed: {}",
                String::from_utf8_lossy(&minted.stderr)
            );
        }
        let token = String::from_utf8(minted.stdout).context("the token")?;
        Ok(format!("Bearer {}", token.trim()))
    }

    /// A `cmp-server` built elsewhere, run from this workspace's root.
    ///
    /// # Errors
    /// When the file is missing.
    pub fn prebuilt(path: &Path) -> anyhow::Result<Self> {
        let path = path.canonicalize().context("the cmp-server binary")?;
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .context("the workspace root")?;
        Ok(Self { path, workspace })
    }
}

/// Builds `cmp-server` in release (the one command of the benchmark builds both binaries).
///
/// # Errors
/// When cargo fails.
pub fn build_release() -> anyhow::Result<ServiceBinary> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .context("the workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "cmp-server"])
        .current_dir(&workspace)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p cmp-server failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    Ok(ServiceBinary {
        path: target.join("release").join("cmp-server"),
        workspace,
    })
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The bare axum + sqlx server.
    Baseline,
    /// Our service.
    Ours,
}

/// A server process on a loopback port.
pub struct Server {
    kind: ServerKind,
    child: Child,
    port: u16,
    /// The `Authorization` header our service needs; none for the bare server.
    pub authorization: Option<String>,
}

impl Server {
    /// Starts a server of `kind` with its files under `scratch`, and waits until it answers.
    ///
    /// # Errors
    /// When it cannot be started or never answers.
    pub fn start(
        kind: ServerKind,
        scratch: &Path,
        service: &ServiceBinary,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let (child, authorization) = match kind {
            ServerKind::Baseline => {
                let database = scratch.join("baseline.db");
                let child = Command::new(std::env::current_exe().context("this binary")?)
                    .arg("baseline")
                    .arg(port.to_string())
                    .arg(&database)
                    .stdout(Stdio::null())
                    .spawn()
                    .context("starting the bare server")?;
                (child, None)
            }
            ServerKind::Ours => {
                let data = scratch.join("service");
                let environment = service_environment(&data, port);
                let authorization =
                    service.mint_authorization(&environment, &service.workspace, &[])?;
                let child = Command::new(&service.path)
                    .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .current_dir(&service.workspace)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting our service")?;
                (child, Some(authorization))
            }
        };
        let server = Self {
            kind,
            child,
            port,
            authorization,
        };
        server.wait_until_listening()?;
        Ok(server)
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process's peak resident set (`VmHWM`), in KiB.
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading /proc/PID/status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM in /proc/PID/status")
    }

    /// Creates one partner named `name` over HTTP; answers its id.
    ///
    /// # Errors
    /// When the create is not answered with 201 or 202 and an id.
    pub fn create(&self, name: &str) -> anyhow::Result<String> {
        let body = format!(r#"{{"displayName":"{name}"}}"#);
        let (status, answer) = self.request("POST", COLLECTION, Some(&body))?;
        if status != 201 && status != 202 {
            bail!("create answered {status}: {answer}");
        }
        let json: serde_json::Value = serde_json::from_str(&answer).context("a JSON answer")?;
        json["id"]
            .as_str()
            .map(str::to_owned)
            .context("an id in the answer")
    }

    /// Stops the process.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_until_listening(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{:?} did not listen within 30 s", self.kind)
    }

    /// One HTTP/1.1 request on a fresh connection; answers the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        request(self.port, self.authorization.as_deref(), method, path, body)
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` on a fresh connection; answers the status and the
/// body.
///
/// # Errors
/// When the connection fails or the answer has no status line.
pub(crate) fn request(
    port: u16,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(authorization) = authorization {
        request.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).context("sending")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).context("reading")?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("a status line")?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The environment our service runs with: its own files, the port, simulated Graph without
/// latency keeping few objects, no per-caller write limit, metrics on, and the production log
/// level and format.
pub(crate) fn service_environment(data: &Path, port: u16) -> Vec<(String, String)> {
    let data = data.display().to_string();
    [
        ("CMP_ENV", "development".to_owned()),
        ("CMP__HTTP__PORT", port.to_string()),
        // Metrics stay on, as in production, on a port of their own the OS picks.
        ("CMP__METRICS__PORT", "0".to_owned()),
        ("CMP__SQLITE__PATH", format!("{data}/partners.db")),
        ("CMP__AUTH__DEVELOPMENT_KEY_DIR", data.clone()),
        ("CMP__GRAPH__SIMULATED__LATENCY_MS", "0".to_owned()),
        // The simulated Graph lives in the service's process, and at its default cap of 10,000
        // objects it alone held about 30 MiB of the peak resident set after 20,000 creates. The
        // benchmark measures the service, so the simulator keeps the last 1,000.
        ("CMP__GRAPH__SIMULATED__MAX_OBJECTS", "1000".to_owned()),
        (
            "CMP__HTTP__WRITES_PER_CALLER_PER_SECOND",
            "1000000".to_owned(),
        ),
        ("CMP__HTTP__WRITE_BURST", "1000000".to_owned()),
        ("CMP__HTTP__MAX_CONCURRENT_REQUESTS", "1024".to_owned()),
        ("CMP__TELEMETRY__FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// A loopback port the OS just gave out (and took back).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding port 0")?;
    Ok(listener.local_addr().context("the bound address")?.port())
}
