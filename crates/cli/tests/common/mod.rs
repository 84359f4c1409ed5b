//! Harness for scenario tests: real `gwmo` processes on loopback ports chosen at
//! run time, over TLS with certificates `gwmo certs` issues once per test binary; the
//! admin API through `gwmo_wiring`'s client, and raw HTTPS exchanges for what a
//! stranger or a quirky client sends; polling with deadlines.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod openapi;
pub mod scripted;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gwmo_device::{Agent, DeviceSettings};
use gwmo_proto::Alert;
use gwmo_proto::codes::{alert, alert_type};
use gwmo_session::Trigger;
use serde_json::Value;

pub const TOKEN: &str = "test-admin-token";

/// Where the `gwmo` binary under test is: this build's, or the one `GWMO_BIN` names
/// (to run the scenarios against another build, an earlier release say).
pub fn gwmo_path() -> PathBuf {
    std::env::var_os("GWMO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gwmo")))
}

/// The `gwmo` binary under test.
pub fn gwmo() -> Command {
    let mut command = Command::new(gwmo_path());
    command.env("RUST_LOG", "warn,gwmo=debug");
    command
}

/// The test PKI: a development CA and one certificate for loopback, made by `gwmo
/// certs` once per test binary; every process of the tests presents the certificate
/// and trusts the CA.
pub fn pki() -> &'static Path {
    static PKI: OnceLock<PathBuf> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "pki-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let output = gwmo()
            .args([
                "certs",
                "--name",
                "test",
                "--host",
                "127.0.0.1",
                "--host",
                "localhost",
                "--dir",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert_success(&output, "gwmo certs");
        dir
    })
}

/// The TLS settings of every role in the tests.
pub fn test_tls() -> gwmo_net::TlsSettings {
    gwmo_net::certs::Issued::in_dir(pki(), "test").tls_settings()
}

/// The `[tls]` table every test configuration ends with.
pub fn tls_table() -> String {
    format!("\n[tls]\n{}", toml::to_string(&test_tls()).unwrap())
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client connection to `addr` that trusts the test CA.
pub fn connect_tls(addr: SocketAddr) -> TlsStream {
    connect_tls_trusting(addr, &pki().join("ca.pem"))
}

/// A TLS client connection to `addr` from the local address `source` (any of 127/8
/// on loopback), trusting the test CA.
pub fn connect_tls_from(addr: SocketAddr, source: std::net::IpAddr) -> TlsStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    tls_over(stream, addr, &pki().join("ca.pem"))
}

/// A TLS client connection to `addr` that trusts the CA certificate in `ca`.
pub fn connect_tls_trusting(addr: SocketAddr, ca: &Path) -> TlsStream {
    tls_over(TcpStream::connect(addr).unwrap(), addr, ca)
}

/// TLS as a client over `stream` to `addr`, trusting the CA certificate in `ca`.
fn tls_over(stream: TcpStream, addr: SocketAddr, ca: &Path) -> TlsStream {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    rustls::StreamOwned::new(connection, stream)
}

/// Reads until the peer closes; a close without TLS close_notify (a dropped
/// connection) or a reset counts as closed.
pub fn read_until_closed(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(answer)
        }
        Err(error) => Err(error),
    }
}

/// Polls `probe` until it yields a value or `deadline` passes.
pub fn poll<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when the test ends, with its stderr kept for diagnosis.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(mut command: Command, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).unwrap();
        command.stdout(Stdio::null()).stderr(file);
        Daemon {
            child: command.spawn().expect("gwmo starts"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has ended (and reaped it).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("daemon exited with {status}:\n{}", self.log_text());
        }
    }

    /// Sends the daemon SIGHUP (what `systemctl reload` does).
    pub fn hang_up(&self) {
        let sent = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -HUP {}", self.pid());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gwmo device --config CONFIG`, running until the test ends; its log in `log`.
pub fn device_daemon(config: &Path, log: PathBuf) -> Daemon {
    let mut command = gwmo();
    command.arg("device").arg("--config").arg(config);
    Daemon::spawn(command, log)
}

/// Runs an end device as a daemon that sees `gateway` on its network.
pub fn end_device(dir: &Path, enrollment: &Value, gateway: &str) -> Daemon {
    let extra = format!("listen = \"127.0.0.1:0\"\ngateway = \"{gateway}\"\n");
    let config = device_config(dir, enrollment, "wbxml", &extra);
    device_daemon(&config, dir.join(format!("device-{gateway}.log")))
}

/// A running `gwmo server` with its admin API.
pub struct ServerProcess {
    pub daemon: Daemon,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl ServerProcess {
    pub fn start(dir: &Path) -> ServerProcess {
        ServerProcess::start_with_database(dir, &dir.join("server.db").display().to_string())
    }

    /// A server on `database` (an SQLite path or a PostgreSQL URL); its files in `dir`.
    pub fn start_with_database(dir: &Path, database: &str) -> ServerProcess {
        ServerProcess::start_with(dir, database, "")
    }

    /// A server with more settings (`settings`: TOML lines).
    pub fn start_with(dir: &Path, database: &str, settings: &str) -> ServerProcess {
        ServerProcess::start_with_env(dir, database, settings, &[], &[])
    }

    /// A server with more settings, environment variables and command-line arguments
    /// (a restart has none of the last two).
    pub fn start_with_env(
        dir: &Path,
        database: &str,
        settings: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> ServerProcess {
        std::fs::create_dir_all(dir).unwrap();
        let address_file = dir.join("server.addr");
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = {database:?}\nadmin_token = \"{TOKEN}\"\naddress_file = {address_file:?}\n{settings}{}",
                tls_table()
            ),
        )
        .unwrap();
        let mut command = gwmo();
        command
            .arg("server")
            .arg("--config")
            .arg(&config)
            .args(args);
        command.envs(env.iter().copied());
        let mut daemon = Daemon::spawn(command, dir.join("server.log"));
        let addr = bound_address(&mut daemon, &address_file);
        ServerProcess {
            daemon,
            addr,
            dir: dir.to_owned(),
        }
    }

    pub fn dm_url(&self) -> String {
        format!("https://{}/dm", self.addr)
    }

    /// Kills the server with SIGKILL and starts it again on the same address, store
    /// and settings.
    pub fn kill_and_restart(&mut self) {
        restart(&mut self.daemon, "server", &self.dir, "server", self.addr);
    }

    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        api(self.addr, method, path, body)
    }

    /// Enrolls a device; returns the enrollment (credentials included).
    pub fn enroll(&self, dev_id: &str, auth: &str) -> Value {
        let (status, body) = self.api(
            "POST",
            "/api/devices",
            Some(&format!(r#"{{"dev_id":"{dev_id}","auth":"{auth}"}}"#)),
        );
        assert_eq!(status, 201, "enroll: {body}");
        body
    }

    /// Enrolls the devices of a CSV document (`POST /api/enrollments`); the answer must
    /// be documented.
    pub fn enroll_csv(&self, csv: &str) -> (u16, Value) {
        let (status, text) = http(
            self.addr,
            "POST",
            "/api/enrollments",
            Some(TOKEN),
            "text/csv",
            csv.as_bytes(),
        );
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        openapi::assert_documented("POST", "/api/enrollments", status, &body);
        (status, body)
    }

    /// Queues a command without waking the device (a test that wants the device woken
    /// says when, with `/notify`).
    pub fn queue(&self, dev_id: &str, spec: &str) -> i64 {
        let (status, body) = self.api(
            "POST",
            &format!("/api/devices/{dev_id}/commands?wake=false"),
            Some(spec),
        );
        assert_eq!(status, 201, "queue {spec}: {body}");
        body["id"].as_i64().unwrap()
    }

    /// Waits, while `device` runs, until `dev_id` has reported where it takes package 0
    /// (its first session does); returns that URL.
    pub fn reported_notify_url(&self, dev_id: &str, device: &mut Daemon) -> String {
        poll(
            "a reported notification URL",
            Duration::from_secs(30),
            || {
                device.assert_running();
                let (_, record) = self.api("GET", &format!("/api/devices/{dev_id}"), None);
                record["notify_url"].as_str().map(str::to_owned)
            },
        )
    }

    pub fn command(&self, id: i64) -> Value {
        let (status, body) = self.api("GET", &format!("/api/commands/{id}"), None);
        assert_eq!(status, 200, "command {id}: {body}");
        body
    }
}

/// An admin API call (with the test token) to a server or gateway at `addr`, through
/// the admin client the demo and the simulator use (`gwmo_wiring`); its answer must be
/// one the OpenAPI description documents.
pub fn api(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    api_as(addr, TOKEN, method, path, body)
}

/// [`api`] with another bearer token.
pub fn api_as(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let admin = admin_client(addr, token);
    let verb = gwmo_net::Method::from_bytes(method.as_bytes()).unwrap();
    let (status, value) = test_runtime()
        .block_on(admin.send(verb, path, body))
        .unwrap();
    openapi::assert_documented(method, path, status, &value);
    (status, value)
}

/// Uploads a firmware image described by `query` to the server at `addr`; its answer
/// must be one the OpenAPI description documents.
pub fn upload_artifact(addr: SocketAddr, query: &str, image: &[u8]) -> (u16, Value) {
    let admin = admin_client(addr, TOKEN);
    let (status, value) = test_runtime()
        .block_on(admin.upload_artifact(query, image.to_vec()))
        .unwrap();
    openapi::assert_documented("POST", "/api/artifacts", status, &value);
    (status, value)
}

/// The runtime the tests' admin calls run on.
fn test_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The admin client of the server or gateway at `addr`, calling with `token`.
fn admin_client(addr: SocketAddr, token: &str) -> gwmo_wiring::AdminClient {
    let client = gwmo_net::HttpClient::new(
        &test_tls().client().unwrap(),
        Duration::from_secs(30),
        64 << 20,
    );
    gwmo_wiring::AdminClient::new(client, format!("https://{addr}"), token)
}

/// Every command of `dev_id` at the server or gateway at `addr`, oldest first, read a
/// page at a time.
pub fn all_commands(addr: SocketAddr, dev_id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut before = String::new();
    loop {
        let path = format!("/api/devices/{dev_id}/commands?limit=100{before}");
        let (status, page) = api(addr, "GET", &path, None);
        assert_eq!(status, 200, "{path}: {page}");
        all.extend(page["commands"].as_array().unwrap().iter().cloned());
        match page["next"].as_i64() {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    all.reverse();
    all
}

/// An admin API call on a connection already open (TLS or plain).
pub fn api_on(
    stream: impl Read + Write,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, _, text) = exchange(
        stream,
        addr,
        method,
        path,
        Some(TOKEN),
        "application/json",
        body.unwrap_or("").as_bytes(),
    );
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    openapi::assert_documented(method, path, status, &value);
    (status, value)
}

/// Kills `daemon` with SIGKILL and starts `role` again from `<dir>/<name>.toml`, on the
/// address `addr` it had (its other listeners may move); its log goes to
/// `<dir>/<name>-restarted.log`.
fn restart(daemon: &mut Daemon, role: &str, dir: &Path, name: &str, addr: SocketAddr) {
    daemon.kill();
    let config = dir.join(format!("{name}.toml"));
    let text: String = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .map(|line| match line {
            "listen = \"127.0.0.1:0\"" => format!("listen = \"{addr}\"\n"),
            line => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&config, text).unwrap();
    let address_file = dir.join(format!("{name}.addr"));
    std::fs::remove_file(&address_file).unwrap();
    let mut command = gwmo();
    command.arg(role).arg("--config").arg(&config);
    *daemon = Daemon::spawn(command, dir.join(format!("{name}-restarted.log")));
    assert_eq!(bound_address(daemon, &address_file), addr);
}

/// Waits for a daemon to write the address it bound.
pub fn bound_address(daemon: &mut Daemon, file: &Path) -> SocketAddr {
    poll("the bound address", Duration::from_secs(30), || {
        daemon.assert_running();
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
}

/// A running `gwmo gateway`, enrolled with and registered at `server`.
pub struct GatewayProcess {
    pub daemon: Daemon,
    /// Where end devices (and the admin API) reach it.
    pub addr: SocketAddr,
    pub gateway_id: String,
    /// Its configuration, state and logs.
    pub dir: PathBuf,
}

impl GatewayProcess {
    pub fn start(
        dir: &Path,
        server: &ServerProcess,
        gateway_id: &str,
        extra: &str,
    ) -> GatewayProcess {
        let dir = dir.join(gateway_id);
        std::fs::create_dir_all(&dir).unwrap();
        let dev_id = format!("GW:{gateway_id}");
        let enrollment = server.enroll(&dev_id, "md5");
        let address_file = dir.join("gateway.addr");
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"gateway_id = "{gateway_id}"
dev_id = "{dev_id}"
state_dir = {state:?}
listen = "127.0.0.1:0"
notify_listen = "127.0.0.1:0"
admin_token = "{TOKEN}"
address_file = {address_file:?}
{extra}
[upstream]
server_id = "{server_id}"
server_url = "{server_url}"
client_secret = "{client_secret}"
server_secret = "{server_secret}"
{tls}"#,
                tls = tls_table(),
                state = dir.join("state"),
                server_id = enrollment["server_id"].as_str().unwrap(),
                server_url = enrollment["server_url"].as_str().unwrap(),
                client_secret = enrollment["client_secret"].as_str().unwrap(),
                server_secret = enrollment["server_secret"].as_str().unwrap(),
            ),
        )
        .unwrap();
        let mut command = gwmo();
        command.arg("gateway").arg("--config").arg(&config);
        let mut daemon = Daemon::spawn(command, dir.join("gateway.log"));
        let addr = bound_address(&mut daemon, &address_file);
        let registration = format!(
            r#"{{"gateway_id":"{gateway_id}","dev_id":"{dev_id}","dm_url":"https://{addr}/dm","server_assisted":true}}"#
        );
        let (status, body) = server.api("POST", "/api/gateways", Some(&registration));
        assert_eq!(status, 201, "register {gateway_id}: {body}");
        // Its first session tells the server where to send package 0.
        poll(
            "the gateway's first session",
            Duration::from_secs(30),
            || {
                daemon.assert_running();
                let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
                device["notify_url"].as_str().map(str::to_owned)
            },
        );
        GatewayProcess {
            daemon,
            addr,
            gateway_id: gateway_id.to_owned(),
            dir,
        }
    }

    /// Kills the gateway with SIGKILL and starts it again on the same end-device
    /// address, configuration and state.
    pub fn kill_and_restart(&mut self) {
        restart(&mut self.daemon, "gateway", &self.dir, "gateway", self.addr);
    }

    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        api(self.addr, method, path, body)
    }
}

/// A gateway `gw-l` with its Local DM Bootstrap Server on, which will sign the
/// Gateway Bootstrap of `dev_id` with `userpin`; returns it and the bootstrap URL.
pub fn local_gateway(
    dir: &Path,
    server: &ServerProcess,
    dev_id: &str,
    userpin: &str,
) -> (GatewayProcess, String) {
    local_gateway_named(dir, server, "gw-l", dev_id, userpin, "")
}

/// As [`local_gateway`], with another name and more top-level settings (`settings`,
/// TOML lines).
pub fn local_gateway_named(
    dir: &Path,
    server: &ServerProcess,
    gateway_id: &str,
    dev_id: &str,
    userpin: &str,
    settings: &str,
) -> (GatewayProcess, String) {
    let address_file = dir.join(format!("{gateway_id}.lbs.addr"));
    let extra = format!(
        "{settings}bootstrap_listen = \"127.0.0.1:0\"\nbootstrap_address_file = {address_file:?}\nbootstrap_lapse_secs = 600\n[approaches]\nserver_assisted = true\nlocal = true\n[userpins]\n\"{dev_id}\" = \"{userpin}\"\n"
    );
    let mut gateway = GatewayProcess::start(dir, server, gateway_id, &extra);
    let addr = bound_address(&mut gateway.daemon, &address_file);
    (gateway, format!("https://{addr}/bootstrap"))
}

/// One HTTP/1.1 exchange over a fresh TLS connection; returns the status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let stream = connect_tls(addr);
    let (status, _, body) = exchange(stream, addr, method, path, token, content_type, body);
    (status, body)
}

/// Asks the Local DM Bootstrap Server at `lbs` for a Gateway Bootstrap as device
/// `dev_id` would, answering its challenge with `userpin` when it asks and one is
/// given; returns the last status and body.
pub fn request_bootstrap(lbs: SocketAddr, dev_id: &str, userpin: Option<&str>) -> (u16, String) {
    let request = gwmo_tree::BootstrapRequest {
        dev_id: dev_id.into(),
        max_lapse_secs: 86_400,
        ..Default::default()
    };
    let post = |request: &gwmo_tree::BootstrapRequest| {
        let body = serde_json::to_vec(request).unwrap();
        http(lbs, "POST", "/bootstrap", None, "application/json", &body)
    };
    let (status, body) = post(&request);
    match (status, userpin) {
        (401, Some(pin)) => {
            let challenge: Value = serde_json::from_str(&body).unwrap();
            let challenge = challenge["challenge"].as_str().unwrap();
            post(&request.answer(challenge, pin))
        }
        _ => (status, body),
    }
}

/// One HTTP/1.1 exchange on `stream`; returns the status, the response's head (status
/// line and headers) and its body.
pub fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{auth}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer from the head alone (413 on a Content-Length over its limit)
    // and close while the body is still going out: its answer is still there to read.
    if let Err(error) = stream.write_all(body) {
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "sending the body: {error}"
        );
    }
    read_response(&mut stream)
}

/// An HTTP response read to its end: status, head and (de-chunked) body.
fn read_response(stream: &mut impl Read) -> (u16, String, String) {
    let response = read_until_closed(stream).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), dechunk(body))
}

/// One request over a fresh TLS connection; returns the status, the head and the body.
pub fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = connect_tls(addr);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream)
}

/// Undoes chunked transfer encoding if the body uses it (axum streams JSON that way
/// only for large bodies; plain bodies pass through).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            return out;
        }
        if after.len() < size {
            return body.to_owned();
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// A device configuration file for an enrollment.
pub fn device_config(dir: &Path, enrollment: &Value, encoding: &str, extra: &str) -> PathBuf {
    let path = dir.join("device.toml");
    let text = format!(
        r#"dev_id = "{dev_id}"
encoding = "{encoding}"
state_dir = {state:?}
{extra}
[[accounts]]
server_id = "{server_id}"
server_url = "{server_url}"
auth = "{auth}"
client_name = "{client_name}"
client_secret = "{client_secret}"
server_secret = "{server_secret}"
{tls}"#,
        tls = tls_table(),
        dev_id = enrollment["dev_id"].as_str().unwrap(),
        state = dir.join("state"),
        server_id = enrollment["server_id"].as_str().unwrap(),
        server_url = enrollment["server_url"].as_str().unwrap(),
        auth = enrollment["auth"].as_str().unwrap(),
        client_name = enrollment["client_name"].as_str().unwrap(),
        client_secret = enrollment["client_secret"].as_str().unwrap(),
        server_secret = enrollment["server_secret"].as_str().unwrap(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `gwmo device --config CONFIG --once`.
pub fn device_once(config: &Path) -> Output {
    gwmo()
        .arg("device")
        .arg("--config")
        .arg(config)
        .arg("--once")
        .output()
        .unwrap()
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The device's tree as `gwmo device tree --json` prints it.
pub fn device_tree(state: &Path) -> Value {
    let output = gwmo()
        .args(["device", "tree", "--json", "--state"])
        .arg(state)
        .output()
        .unwrap();
    assert_success(&output, "gwmo device tree");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The device's tree once it has one (for polling a device that is starting).
pub fn device_tree_if_any(state: &Path) -> Option<Value> {
    state.join("tree.json").exists().then(|| device_tree(state))
}

/// A leaf of `device_tree` output by URI (`./A/B`).
pub fn leaf<'a>(tree: &'a Value, uri: &str) -> Option<&'a Value> {
    let mut node = tree;
    for segment in uri.trim_start_matches("./").split('/') {
        node = node.get("children")?.get(segment)?;
    }
    node.get("value")
}

/// A database created for one test, dropped after it.
pub struct ScratchDatabase {
    admin: postgres::Client,
    name: String,
    pub url: String,
}

impl ScratchDatabase {
    /// None (and a note) when `GWMO_TEST_POSTGRES` is unset outside CI.
    pub fn create() -> Option<ScratchDatabase> {
        let admin_url = match std::env::var("GWMO_TEST_POSTGRES") {
            Ok(url) => url,
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("CI must test PostgreSQL: set GWMO_TEST_POSTGRES")
            }
            Err(_) => {
                eprintln!("GWMO_TEST_POSTGRES unset: PostgreSQL test not run");
                return None;
            }
        };
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
        let name = format!("gwmo_test_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        Some(ScratchDatabase { admin, name, url })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name));
    }
}

/// Holds one session as `enrollment`'s device, sending `alerts` (a client that says
/// whatever it likes, with its own valid credentials).
pub fn session_with_alerts(dir: &Path, enrollment: &Value, alerts: Vec<Alert>) {
    let text = |key: &str| enrollment[key].as_str().unwrap().to_owned();
    let agent = Agent::open(DeviceSettings {
        dev_id: text("dev_id"),
        state_dir: dir.join(text("dev_id").replace(':', "_")),
        accounts: vec![gwmo_wiring::enrollment_account(enrollment).unwrap()],
        tls: test_tls(),
        ..DeviceSettings::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(agent.session(&text("server_id"), Trigger::Client, None, alerts))
        .unwrap();
}

/// A Generic Alert of type `kind` about the gateway node `source`, as a gateway sends it.
pub fn gateway_alert(kind: &'static str, source: &str, data: String) -> Alert {
    Alert {
        cmd_id: 0,
        code: alert::GENERIC_ALERT,
        correlator: None,
        items: vec![gwmo_gateway::gwmo_alert_item(kind, source, data)],
    }
}

/// A Device Attach Alert naming `dev_id`, for the bootstrap issued at `issued_at`.
pub fn attach_alert(dev_id: &str, issued_at: Option<&str>) -> Alert {
    let data = serde_json::json!({
        "dev_id": dev_id, "origin": "local-bootstrap", "issued_at": issued_at,
    });
    gateway_alert(
        alert_type::DEVICE_ATTACH,
        "./GwMO/DeviceInventory/x",
        data.to_string(),
    )
}

/// Enrolls `GW:<gateway_id>` and registers it as a gateway; returns its enrollment.
pub fn registered_gateway(server: &ServerProcess, gateway_id: &str) -> Value {
    let enrollment = server.enroll(&format!("GW:{gateway_id}"), "md5");
    let registration = format!(
        r#"{{"gateway_id":"{gateway_id}","dev_id":"GW:{gateway_id}","dm_url":"https://127.0.0.1:9/dm","server_assisted":true}}"#
    );
    assert_eq!(
        server.api("POST", "/api/gateways", Some(&registration)).0,
        201
    );
    enrollment
}

/// Runs commands against a tree, as a device does.
pub struct TreeExecutor(pub gwmo_tree::Tree);

impl gwmo_session::Executor for TreeExecutor {
    fn execute(
        &mut self,
        server: &str,
        msg_ref: u32,
        command: &gwmo_proto::Command,
        ids: &mut gwmo_proto::CmdIds,
    ) -> Vec<gwmo_proto::Command> {
        self.0.execute(server, msg_ref, command, ids)
    }
}
