//! Running gwmo as an operator does: readiness that tells a load balancer when an
//! instance cannot serve.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts `mib` MiB at `path`; none where this machine does not let the test mount.
    fn mount(path: &Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| SmallDisk(path.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn readyz(server: &ServerProcess) -> (u16, Value) {
    let (status, text) = http(server.addr, "GET", "/readyz", None, "", b"");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `/readyz` answers 503 once the disk under the SQLite store is full, while
/// `/healthz` still says the process is up, and 200 again once there is room.
#[test]
fn readyz_fails_when_the_store_s_disk_fills_up_and_recovers_when_room_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("small"), 8) else {
        eprintln!("NOT RUN: this machine does not let the test mount a tmpfs (needs root)");
        return;
    };
    let database = disk.0.join("server.db").display().to_string();
    let server = ServerProcess::start_with(dir.path(), &database, "ready_min_free_mib = 2\n");
    let (status, ready) = readyz(&server);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["store"], "ok");
    assert!(ready["free_disk_mib"].as_u64().unwrap() >= 2, "{ready}");

    let filler = disk.0.join("filler");
    let chunk = vec![0u8; 1 << 20];
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    let (status, full) = readyz(&server);
    assert_eq!(status, 503, "{full}");
    assert_eq!(full["ready"], false);
    assert!(
        full["reasons"][0]
            .as_str()
            .unwrap()
            .contains("ready_min_free_mib"),
        "{full}"
    );
    let (status, _) = http(server.addr, "GET", "/healthz", None, "", b"");
    assert_eq!(status, 200, "the process is up all the same");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(readyz(&server).0, 200);
}

/// A server configured in `dir/server.toml` with relative paths only: its own copy of
/// the test PKI in `dir/pki`, its address in `dir/server.addr`; started from
/// `working_dir`.
fn server_with_its_own_pki(dir: &Path, working_dir: &Path) -> (Daemon, std::net::SocketAddr) {
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    for file in ["ca.pem", "ca-key.pem", "test.pem", "test-key.pem"] {
        std::fs::copy(pki().join(file), dir.join("pki").join(file)).unwrap();
    }
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\naddress_file = \"server.addr\"\n\
             [tls]\ncertificate = \"pki/test.pem\"\nprivate_key = \"pki/test-key.pem\"\nca = \"pki/ca.pem\"\n"
        ),
    )
    .unwrap();
    let mut command = gwmo();
    command
        .current_dir(working_dir)
        .arg("server")
        .arg("--config")
        .arg(&config);
    let mut daemon = Daemon::spawn(command, dir.join("server.log"));
    let addr = bound_address(&mut daemon, &dir.join("server.addr"));
    (daemon, addr)
}

/// A configuration's relative paths (its TLS files, its store, its address file) are
/// taken from its own directory, whatever the working directory.
#[test]
fn paths_in_a_configuration_are_taken_from_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let (_daemon, addr) = server_with_its_own_pki(&etc, Path::new("/"));
    assert_eq!(http(addr, "GET", "/healthz", None, "", b"").0, 200);
    assert!(
        etc.join("gwmo-server.db").exists(),
        "the default store beside its configuration"
    );
    assert!(
        !Path::new("/gwmo-server.db").exists(),
        "nothing in the working directory"
    );
}

/// A server that cannot listen stops before it creates anything.
#[test]
fn a_server_that_cannot_listen_leaves_no_store_behind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{}\"\nadmin_token = \"{TOKEN}\"\ndatabase = \"store/server.db\"\n{}",
            taken.local_addr().unwrap(),
            tls_table()
        ),
    )
    .unwrap();
    let output = gwmo()
        .arg("server")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("store").exists(), "a store was created");
}

/// `GWMO_<KEY>` overrides a key of the configuration and `GWMO_<KEY>_FILE` reads a
/// secret from a file, as a container or a systemd unit passes them.
#[test]
fn the_environment_overrides_the_configuration_and_secrets_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin-token");
    std::fs::write(&secret, "from-a-secret-file-0123\n").unwrap();
    let database = dir.path().join("server.db").display().to_string();
    let server = ServerProcess::start_with_env(
        dir.path(),
        &database,
        "",
        &[
            ("GWMO_ADMIN_TOKEN_FILE", secret.to_str().unwrap()),
            ("GWMO_SERVER_ID", "dms-from-env"),
        ],
        &[],
    );
    assert_eq!(
        api(server.addr, "GET", "/api/devices", None).0,
        401,
        "the file's token replaced the configured one"
    );
    let (status, enrolled) = api_as(
        server.addr,
        "from-a-secret-file-0123",
        "POST",
        "/api/devices",
        Some(r#"{"dev_id":"IMEI:350000000000961"}"#),
    );
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(enrolled["server_id"], "dms-from-env");

    let config = dir.path().join("server.toml");
    let wrong = gwmo()
        .arg("server")
        .arg("--config")
        .arg(&config)
        .env("GWMO_MAX_SESSIONS", "lots")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("GWMO_MAX_SESSIONS"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

/// With `access_log = true`, each request is a log line: method, path, status, bytes,
/// time, peer, and for a DM message its device; never the query (a session's token).
#[test]
fn the_access_log_has_a_line_per_request_and_never_a_session_token() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("server.db").display().to_string();
    let server = ServerProcess::start_with(dir.path(), &database, "access_log = true\n");
    let enrollment = server.enroll("IMEI:350000000000971", "md5");
    assert_success(
        &device_once(&device_config(dir.path(), &enrollment, "xml", "")),
        "session",
    );
    assert_eq!(
        http(server.addr, "GET", "/healthz?s=not-for-logs", None, "", b"").0,
        200
    );
    let log = poll("the access log", std::time::Duration::from_secs(10), || {
        let log = server.daemon.log_text();
        log.contains("path=\"/healthz\"").then_some(log)
    });
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gwmo_server::access"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("method=POST")
            && l.contains("path=\"/api/devices\"")
            && l.contains("status=201")),
        "{log}"
    );
    let dm: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("path=\"/dm\""))
        .collect();
    assert!(!dm.is_empty(), "the session's messages: {log}");
    assert!(
        dm.iter()
            .all(|l| l.contains("device=\"IMEI:350000000000971\"")
                && l.contains("status=200")
                && l.contains("micros=")),
        "{log}"
    );
    assert!(
        !log.contains("not-for-logs"),
        "a query reached the log: {log}"
    );
    assert!(!log.contains(enrollment["client_secret"].as_str().unwrap()));
}

/// Under systemd (`Type=notify`), a daemon says `READY=1` on `$NOTIFY_SOCKET` once it
/// listens.
#[test]
fn a_daemon_tells_systemd_it_is_ready_once_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let database = dir.path().join("server.db").display().to_string();
    let server = ServerProcess::start_with_env(
        dir.path(),
        &database,
        "",
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
        &[],
    );
    let mut message = [0u8; 64];
    let read = socket.recv(&mut message).expect("READY=1 within 30 s");
    assert_eq!(&message[..read], b"READY=1");
    assert_eq!(
        http(server.addr, "GET", "/healthz", None, "", b"").0,
        200,
        "and it serves"
    );
}

/// The certificate a new connection to `addr` is shown (after a whole request, so
/// the handshake is done), trusting `ca`.
fn presented_certificate(addr: std::net::SocketAddr, ca: &Path) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = connect_tls_trusting(addr, ca);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gwmo\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

/// SIGHUP reads the certificate files again: a renewed certificate is shown to new
/// connections without a restart, and the daemon goes on (the signal no longer ends it).
#[test]
fn sighup_reloads_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let (mut daemon, addr) = server_with_its_own_pki(dir.path(), dir.path());
    let ca = pki_dir.join("ca.pem");
    let before = presented_certificate(addr, &ca);

    // Renewed: a new certificate and key from the same CA, in the same files.
    let renewed = gwmo()
        .args(["certs", "--name", "test", "--host", "127.0.0.1", "--dir"])
        .arg(&pki_dir)
        .output()
        .unwrap();
    assert_success(&renewed, "gwmo certs");
    let renewed_der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(pki_dir.join("test.pem"))
            .unwrap()
            .to_vec()
    };
    assert_ne!(renewed_der, before, "gwmo certs made a new certificate");
    assert_eq!(
        presented_certificate(addr, &ca),
        before,
        "nothing changes before the signal"
    );

    daemon.hang_up();
    poll(
        "the renewed certificate",
        std::time::Duration::from_secs(10),
        || {
            daemon.assert_running();
            (presented_certificate(addr, &ca) == renewed_der).then_some(())
        },
    );
    assert!(
        daemon.log_text().contains("certificates read again"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn sighup_reads_the_configuration_s_log_filter_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let write = |level: &str| {
        std::fs::write(
            &config,
            format!(
                "log = \"{level}\"\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
                 address_file = \"server.addr\"\n{}",
                tls_table()
            ),
        )
        .unwrap()
    };
    write("warn");
    let mut command = gwmo();
    command
        .env_remove("RUST_LOG")
        .arg("server")
        .arg("--config")
        .arg(&config);
    let mut daemon = Daemon::spawn(command, dir.path().join("server.log"));
    let addr = bound_address(&mut daemon, &dir.path().join("server.addr"));
    // An enrollment logs at info: whether the log shows it after one.
    let enrollment_logged = |daemon: &Daemon, dev_id: &str| {
        let body = format!(r#"{{"dev_id":"{dev_id}"}}"#);
        assert_eq!(api(addr, "POST", "/api/devices", Some(&body)).0, 201);
        daemon.log_text().contains(" INFO ")
    };
    assert!(
        !enrollment_logged(&daemon, "IMEI:LOG-1"),
        "not under \"warn\": {}",
        daemon.log_text()
    );

    write("info");
    daemon.hang_up();
    poll(
        "the new log filter",
        std::time::Duration::from_secs(10),
        || {
            daemon.assert_running();
            daemon
                .log_text()
                .contains("log filter set from the configuration")
                .then_some(())
        },
    );
    assert!(
        enrollment_logged(&daemon, "IMEI:LOG-2"),
        "{}",
        daemon.log_text()
    );
}

/// A plain-HTTP GET of `path` at `addr`; the status and body.
fn plain_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default(),
    )
}

/// `metrics_listen` serves `/metrics` apart from the DM port, with gauges of what the
/// store holds and a histogram of message times; the DM port no longer serves it.
#[test]
fn metrics_have_gauges_and_a_message_histogram_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("server.db").display().to_string();
    let server =
        ServerProcess::start_with(dir.path(), &database, "metrics_listen = \"127.0.0.1:0\"\n");
    let address = poll(
        "the metrics listener",
        std::time::Duration::from_secs(10),
        || {
            let log = server.daemon.log_text();
            let line = log
                .lines()
                .find(|l| l.contains("metrics listening"))?
                .to_owned();
            let start = line.find("address=")? + "address=".len();
            Some(line[start..].split_whitespace().next()?.to_owned())
        },
    );
    let enrollment = server.enroll("IMEI:350000000000981", "md5");
    server.queue(
        "IMEI:350000000000981",
        r#"{"op":"Get","target":"./DevInfo/Man"}"#,
    );
    let (status, text) = plain_get(&address, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("gwmo_devices 1\n") && text.contains("gwmo_commands_queued 1\n"),
        "{text}"
    );
    assert_success(
        &device_once(&device_config(dir.path(), &enrollment, "xml", "")),
        "session",
    );
    let (_, text) = plain_get(&address, "/metrics");
    assert!(text.contains("gwmo_commands_queued 0\n"), "{text}");
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("gwmo_message_seconds_count "))
        .unwrap_or_else(|| panic!("no histogram: {text}"));
    assert!(count.parse::<u64>().unwrap() >= 2, "{text}");
    assert!(
        text.contains("gwmo_message_seconds_bucket{le=\"+Inf\"} "),
        "{text}"
    );
    assert_eq!(plain_get(&address, "/readyz").0, 200);
    assert_eq!(
        http(server.addr, "GET", "/metrics", None, "", b"").0,
        404,
        "not on the DM port"
    );
}

/// A device configuration in `dir/conf/<name>.toml` for `enrollment`, with no
/// `state_dir` (the default, one per DevId) and the extra lines `extra`.
fn device_config_without_state(dir: &Path, name: &str, enrollment: &Value, extra: &str) -> PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let template = device_config(&dir.join(name), enrollment, "xml", "");
    let text: String = std::fs::read_to_string(template)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("state_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    // Top-level keys go before the first table.
    let text = format!("{extra}{text}");
    let path = conf.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Two configurations in one directory never share a state: each device's is kept
/// under its DevId. A configuration that changed a factory account wins over the
/// stored state, and says so; a state that is another device's is refused, unless
/// `--reset-state` starts the device afresh.
#[test]
fn each_device_keeps_its_own_state_and_a_changed_configuration_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (a, b) = ("IMEI:350000000000991", "IMEI:350000000000992");
    let first = server.enroll(a, "md5");
    let second = server.enroll(b, "md5");
    let config_a = device_config_without_state(dir.path(), "a", &first, "");
    let config_b = device_config_without_state(dir.path(), "b", &second, "");
    assert_success(&device_once(&config_a), "device a");
    assert_success(&device_once(&config_b), "device b");
    let states = dir.path().join("conf/gwmo-device-state");
    assert!(
        states.join("IMEI_350000000000991").is_dir()
            && states.join("IMEI_350000000000992").is_dir()
    );

    // The operator enrolls device a again with a new secret and changes its
    // configuration: the stored secret gives way.
    assert_eq!(
        server.api("DELETE", &format!("/api/devices/{a}"), None).0,
        200
    );
    let again = serde_json::json!({
        "dev_id": a, "client_secret": "a-new-client-secret-0123",
        "server_secret": first["server_secret"],
    });
    let (status, renewed) = server.api("POST", "/api/devices", Some(&again.to_string()));
    assert_eq!(status, 201, "{renewed}");
    assert!(
        !device_once(&config_a).status.success(),
        "the old secret no longer opens a session"
    );
    let config_a = device_config_without_state(dir.path(), "a", &renewed, "");
    let output = device_once(&config_a);
    assert_success(&output, "device a with its new configuration");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the configuration differs from the stored state"),
        "{stderr}"
    );
    assert!(
        stderr.contains("client secret from the configuration"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("a-new-client-secret-0123"),
        "a secret in the log: {stderr}"
    );
    // Once applied, the same configuration changes nothing more (what servers manage
    // over DM afterwards stays theirs).
    let output = device_once(&config_a);
    assert_success(&output, "device a again");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("configuration differs"));

    // Device b pointed at device a's state is refused; --reset-state starts it afresh.
    let shared = format!("state_dir = {:?}\n", states.join("IMEI_350000000000991"));
    let config_b = device_config_without_state(dir.path(), "b", &second, &shared);
    let refused = device_once(&config_b);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is device \"IMEI:350000000000991\"'s, not \"IMEI:350000000000992\"'s"),
        "{stderr}"
    );
    let output = gwmo()
        .args(["device", "--once", "--reset-state", "--config"])
        .arg(&config_b)
        .output()
        .unwrap();
    assert_success(&output, "device b after --reset-state");
}
