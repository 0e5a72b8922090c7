//! The end-to-end harness: a world of real `vigil-coordinator` and
//! `vigil-node` processes in a temporary directory, with a private CA and
//! SPIFFE certificates generated at test time, talking mutual TLS on
//! loopback.
//!
//! # Layout
//! - [`World`]: the temporary directory, the CA, the shared keys, the
//!   coordinator's configuration.
//! - [`Coordinator`]: a running coordinator: started, waited for through
//!   its gRPC health service, killed or stopped.
//! - [`Keyserver`]: a running key service (token scheme 3), started by
//!   [`World::start_keyserver`].
//! - [`Node`]: a force, source or auditor node: its configuration, its
//!   commands, its `watch` process.
//! - [`wait_until`]: polls a condition until a deadline (never a bare sleep
//!   standing in for readiness).
//! - [`pg`]: a private PostgreSQL cluster for the tests of the
//!   PostgreSQL store.
//! - [`fuzz`]: the fuzz targets (every parser that meets outside input) and
//!   the replay of their committed corpus.
//!
//! Every child process is killed when its handle is dropped, so a failing
//! test leaves nothing running.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod fuzz;
pub mod pg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vigil_coordinator::pki::{Ca, Leaf};

pub const TRUST_DOMAIN: &str = "vigil.test";
/// The coordinator's `[matching] national_records` in every test world: the
/// policy's prior is spread over this many records from the first batch, so
/// decisions do not depend on the order records arrive in (and offline
/// evaluation with the same floor predicts them exactly).
pub const NATIONAL_RECORDS: u32 = 20_000;
pub const ORIGIN: &str = "vigil.test/audit";
pub const SERVER_NAME: &str = "coordinator.vigil.test";
pub const KEYSERVER_NAME: &str = "keyserver.vigil.test";

/// A built binary of the workspace (`target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --bins` (cargo test --workspace builds it)", p.display());
    p
}

/// Polls `f` every 25 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs a command and returns its output, failing the test if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Asserts success and returns stdout.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary deployment.
pub struct World {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub coordinator_config: PathBuf,
    pub vkey: PathBuf,
    pub linkage: PathBuf,
    /// Token scheme 3: the key service's address and pinned public key,
    /// once [`World::start_keyserver`] ran (nodes made after it use it).
    pub key_service: Option<(SocketAddr, String)>,
    port: u16,
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

impl World {
    /// A CA, coordinator certificate and keys, and the shared linkage key.
    pub fn new() -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca, ca_key) = Ca::create("Vigil test CA", 30).unwrap();
        write(&d.join("ca.crt"), ca.cert_pem());
        // The CA as `vigil-coordinator pki` keeps it, for tests of its commands.
        write(&d.join("ca/ca.crt"), ca.cert_pem());
        write(&d.join("ca/ca.key"), &ca_key);
        let mut leaf = Leaf::valid_for(&format!("spiffe://{TRUST_DOMAIN}/coordinator"), 30);
        leaf.dns = vec![SERVER_NAME.into()];
        leaf.server = true;
        leaf.client = false;
        let (cert, key) = ca.issue(&leaf).unwrap();
        write(&d.join("coordinator/coordinator.crt"), &cert);
        write(&d.join("coordinator/coordinator.key"), &key);
        ok(run(Command::new(bin("vigil-coordinator"))
            .args(["keygen", "--origin", ORIGIN, "--out"])
            .arg(d.join("coordinator"))));
        ok(run(Command::new(bin("vigil-node")).args(["keygen", "--only", "linkage", "--out"]).arg(d.join("shared"))));
        let w = World {
            coordinator_config: d.join("coordinator/coordinator.toml"),
            vkey: d.join("coordinator/audit.vkey"),
            linkage: d.join("shared/linkage.key"),
            ca,
            dir,
            key_service: None,
            port: 0,
        };
        w.write_coordinator_config("");
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the coordinator's config; `extra` is appended (e.g. `[limits]`).
    pub fn write_coordinator_config(&self, extra: &str) {
        let text = format!(
            r#"listen = "127.0.0.1:{port}"
trust_domain = "{TRUST_DOMAIN}"
data_dir = "data"
[tls]
cert = "coordinator.crt"
key = "coordinator.key"
client_ca = "../ca.crt"
[keys]
pepper = "pepper.key"
audit_signing_key = "audit.key"
[audit]
origin = "{ORIGIN}"
[matching]
national_records = {NATIONAL_RECORDS}
scheme = {scheme}
{extra}
"#,
            port = self.port,
            scheme = if self.key_service.is_some() { 3 } else { 2 }
        );
        write(&self.coordinator_config, &text);
    }

    /// Starts the coordinator and waits until its health service answers.
    /// After the first start the port is pinned, so restarts reuse it.
    pub fn start_coordinator(&mut self) -> Coordinator {
        let c = spawn_coordinator(&self.coordinator_config);
        if self.port == 0 {
            self.port = c.addr.port();
            let text = std::fs::read_to_string(&self.coordinator_config).unwrap();
            std::fs::write(
                &self.coordinator_config,
                text.replacen("127.0.0.1:0", &format!("127.0.0.1:{}", self.port), 1),
            )
            .unwrap();
        }
        let probe = self.client_identity("auditor", "harness");
        let ready = wait_until(Duration::from_secs(30), || health(&c.addr, self.path(), &probe));
        assert!(ready, "coordinator never became healthy; log:\n{}", c.log_text());
        c
    }

    /// Starts another coordinator from `config` (say, a standby sharing
    /// the first one's database) once it listens, without waiting for it
    /// to serve.
    pub fn start_another_coordinator(&self, config: &Path) -> Coordinator {
        spawn_coordinator(config)
    }

    /// Issues a client certificate (`spiffe://vigil.test/<role>/<code>`) and
    /// returns the (cert, key) paths.
    pub fn client_identity(&self, role: &str, code: &str) -> (PathBuf, PathBuf) {
        let dir = self.path().join("certs");
        let cert = dir.join(format!("{role}-{code}.crt"));
        let key = dir.join(format!("{role}-{code}.key"));
        if !cert.exists() {
            let (c, k) =
                self.ca.issue(&Leaf::valid_for(&format!("spiffe://{TRUST_DOMAIN}/{role}/{code}"), 30)).unwrap();
            write(&cert, &c);
            write(&key, &k);
        }
        (cert, key)
    }

    /// The verifier key of witness `code`, whose signing key
    /// (`vigil-node witness keygen`) is made on first use in its node's
    /// directory.
    pub fn witness_key(&self, code: &str) -> String {
        let dir = self.path().join("nodes").join(code);
        let key = dir.join("witness.key");
        if !key.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            ok(run(Command::new(bin("vigil-node"))
                .args(["witness", "keygen", "--name", &format!("witness.test/{code}"), "--out"])
                .arg(&key)));
        }
        let text = std::fs::read_to_string(&key).unwrap();
        text.lines().find_map(|l| l.strip_prefix("# verifier key: ")).unwrap().to_string()
    }

    /// A node of `role` with `code`, with its own certificate and local secret.
    pub fn node(&self, role: &str, code: &str) -> Node {
        let dir = self.path().join("nodes").join(code);
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = self.client_identity(role, code);
        std::fs::copy(&cert, dir.join("node.crt")).unwrap();
        std::fs::copy(&key, dir.join("node.key")).unwrap();
        let keys = if role == "auditor" {
            String::new()
        } else if role == "witness" {
            self.witness_key(code);
            "[witness]\nkey = \"witness.key\"\ninterval_seconds = 1\n".to_string()
        } else {
            ok(run(Command::new(bin("vigil-node")).args(["keygen", "--only", "local", "--out"]).arg(&dir)));
            match &self.key_service {
                Some((addr, pk)) => format!(
                    "[keys]\nlocal = \"local.key\"\n[keyserver]\naddress = \"https://{addr}\"\n\
                     server_name = \"{KEYSERVER_NAME}\"\nepoch = 1\npublic_key = \"{pk}\"\n"
                ),
                None => format!("[keys]\nlinkage = \"{}\"\nlocal = \"local.key\"\n", self.linkage.display()),
            }
        };
        let config = dir.join("node.toml");
        write(
            &config,
            &format!(
                r#"role = "{role}"
code = "{code}"
coordinator = "https://127.0.0.1:{port}"
server_name = "{SERVER_NAME}"
data_dir = "data"
[tls]
cert = "node.crt"
key = "node.key"
ca = "{ca}"
{keys}
[audit]
origin = "{ORIGIN}"
vkey = "{vkey}"
[sync]
batch_size = 200
retry_seconds = 2
[watch]
backoff_initial_ms = 50
backoff_max_ms = 500
"#,
                port = self.port,
                ca = self.path().join("ca.crt").display(),
                vkey = self.vkey.display()
            ),
        );
        Node { code: code.to_string(), dir, config }
    }

    /// Starts the key service (certificate, `keygen`, config with the given
    /// `[quota]`, `[headcount]` and `[sources]` tables) and waits until it
    /// answers. From then on the world is token scheme 3: the coordinator's
    /// config (written again here, so start the coordinator after this) and
    /// every node made later use it.
    pub fn start_keyserver(&mut self, allowances: &str) -> Keyserver {
        let dir = self.path().join("keyserver");
        std::fs::create_dir_all(&dir).unwrap();
        let mut leaf = Leaf::valid_for(&format!("spiffe://{TRUST_DOMAIN}/keyserver"), 30);
        leaf.dns = vec![KEYSERVER_NAME.into()];
        leaf.server = true;
        leaf.client = false;
        let (cert, key) = self.ca.issue(&leaf).unwrap();
        write(&dir.join("keyserver.crt"), &cert);
        write(&dir.join("keyserver.key"), &key);
        ok(run(Command::new(bin("vigil-keyserver"))
            .args(["keygen", "--origin", "vigil.test/keyserver", "--out"])
            .arg(&dir)));
        let config = dir.join("keyserver.toml");
        write(
            &config,
            &format!(
                r#"listen = "127.0.0.1:0"
trust_domain = "{TRUST_DOMAIN}"
data_dir = "data"
[tls]
cert = "keyserver.crt"
key = "keyserver.key"
client_ca = "../ca.crt"
[key]
seed = "seed.key"
epoch = 1
[audit]
origin = "vigil.test/keyserver"
signing_key = "log.key"
{allowances}
"#
            ),
        );
        let public_key = ok(run(Command::new(bin("vigil-keyserver")).args(["public-key", "--config"]).arg(&config)))
            .trim()
            .to_string();
        let ks = Keyserver::start(&config);
        let probe = self.client_identity("auditor", "harness");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ready = wait_until(Duration::from_secs(30), || {
            rt.block_on(async {
                let mut c = keyserver_client(&ks.addr, self.path(), &probe);
                // Any answer from the service itself (an auditor is refused
                // evaluations) means it is serving.
                match c.public_key(vigil_proto::v1::PublicKeyRequest { epoch: 1 }).await {
                    Ok(_) => true,
                    Err(s) => s.code() == tonic::Code::PermissionDenied,
                }
            })
        });
        assert!(ready, "the key service never answered");
        // Restarts keep the port, so that nodes' configs stay right.
        let text = std::fs::read_to_string(&config).unwrap();
        write(&config, &text.replacen("127.0.0.1:0", &ks.addr.to_string(), 1));
        self.key_service = Some((ks.addr, public_key));
        self.write_coordinator_config("");
        ks
    }

    /// `vigil-coordinator pki revoke --dir <world>/ca` with `extra`
    /// arguments (`--cert <file>`): writes `ca/crl.pem`; returns its output.
    pub fn pki_revoke(&self, extra: &[&std::ffi::OsStr]) -> String {
        let mut c = Command::new(bin("vigil-coordinator"));
        c.args(["pki", "revoke", "--dir"]).arg(self.path().join("ca")).args(extra);
        ok(run(&mut c))
    }

    /// A gRPC channel presenting the given certificate (or none).
    pub async fn channel(
        &self,
        identity: Option<(&Path, &Path)>,
        ca: Option<&Path>,
    ) -> Result<Channel, tonic::transport::Error> {
        channel(&self.addr(), self.path(), identity, ca).await
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// A gRPC channel to the coordinator at `addr` presenting `identity`.
pub async fn channel_to(
    addr: &SocketAddr,
    root: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    channel(addr, root, identity, None).await
}

async fn channel(
    addr: &SocketAddr,
    root: &Path,
    identity: Option<(&Path, &Path)>,
    ca: Option<&Path>,
) -> Result<Channel, tonic::transport::Error> {
    let ca_pem = std::fs::read(ca.map(Path::to_path_buf).unwrap_or_else(|| root.join("ca.crt"))).unwrap();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(SERVER_NAME);
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(std::fs::read(c).unwrap(), std::fs::read(k).unwrap()));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

fn health(addr: &SocketAddr, root: &Path, id: &(PathBuf, PathBuf)) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let Ok(ch) = channel(addr, root, Some((&id.0, &id.1)), None).await else { return false };
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        match h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await {
            Ok(r) => r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            Err(_) => false,
        }
    })
}

/// A key-service client presenting `id`.
pub fn keyserver_client(
    addr: &SocketAddr,
    root: &Path,
    id: &(PathBuf, PathBuf),
) -> vigil_proto::v1::key_service_client::KeyServiceClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(root.join("ca.crt")).unwrap()))
        .domain_name(KEYSERVER_NAME)
        .identity(Identity::from_pem(std::fs::read(&id.0).unwrap(), std::fs::read(&id.1).unwrap()));
    let ch = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect_lazy();
    vigil_proto::v1::key_service_client::KeyServiceClient::new(ch)
}

/// A running `vigil-keyserver`. Killed if dropped.
pub struct Keyserver {
    child: Child,
    pub addr: SocketAddr,
    pub config: PathBuf,
}

impl Keyserver {
    /// Starts `serve` and reads the address it listens on.
    pub fn start(config: &Path) -> Keyserver {
        let mut child = Command::new(bin("vigil-keyserver"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").expect("the key service says where it listens").parse().unwrap();
        Keyserver { child, addr, config: config.to_path_buf() }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        terminate(&mut self.child, "keyserver", None);
    }
}

impl Drop for Keyserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vigil-coordinator serve` and waits until it says where it
/// listens; its log goes next to its configuration.
fn spawn_coordinator(config: &Path) -> Coordinator {
    let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("coordinator");
    let log = config.with_file_name(format!("{stem}.log"));
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let mut child = Command::new(bin("vigil-coordinator"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on ") {
                let _ = tx.send(a.parse::<SocketAddr>().ok());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(addr)) => Coordinator { child, addr, log },
        _ => {
            let _ = child.kill();
            panic!("coordinator did not start; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
    }
}

/// What a plaintext health-only listener (`[health] listen`) says:
/// `Some(true)` SERVING, `Some(false)` anything else, `None` no answer.
pub fn plain_health(addr: &SocketAddr) -> Option<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let r = tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .ok()?;
        Some(r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    })
}

/// A free loopback port (bound and let go: for listeners configured by
/// port, such as `[health] listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running coordinator. Killed (SIGKILL) if dropped while running.
pub struct Coordinator {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Coordinator {
    /// `kill -9`.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        terminate(&mut self.child, "coordinator", Some(&self.log));
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &mut Child, what: &str, log: Option<&Path>) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let done = wait_until(Duration::from_secs(20), || matches!(child.try_wait(), Ok(Some(_))));
    let log = || log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
    assert!(done, "{what} did not stop within 20 s of SIGTERM; log:\n{}", log());
    let st = child.wait().unwrap();
    assert!(st.success(), "{what} exited with {st} after SIGTERM; log:\n{}", log());
}

/// A node.
pub struct Node {
    pub code: String,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Node {
    /// `vigil-node <args> --config <node.toml>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("vigil-node"));
        c.args(args).arg("--config").arg(&self.config);
        c
    }

    /// Runs a command and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    /// Starts `watch` in the background.
    pub fn watch(&self) -> Watcher {
        let log = self.dir.join("watch.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = self.cmd(&["watch"]).stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        Watcher { child, log }
    }

    /// The inbox as JSON.
    pub fn inbox(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["inbox", "list", "--format", "json"]);
        let text = ok(out);
        serde_json::from_str(&text).unwrap()
    }
}

/// A running `vigil-node watch`. Killed if dropped.
pub struct Watcher {
    child: Child,
    pub log: PathBuf,
}

impl Watcher {
    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        terminate(&mut self.child, "watch", None);
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
