//! `gwmo demo`: every role that exists so far in one process, on loopback ports,
//! talking real HTTP, narrated step by step, ending with a table of what was verified.
//! It exits non-zero if any step did not do what it says.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use gwmo_device::settings::WireEncoding;
use gwmo_device::{Agent, DeviceSettings};
use gwmo_gateway::settings::Approaches;
use gwmo_net::{HttpClient, Method, TlsSettings};
use gwmo_proto::auth::AuthType;
use gwmo_server::{Server, ServerSettings};
use gwmo_session::Trigger;
use gwmo_wiring::{AdminClient, GatewayPlan, Running, enrollment_account, poll};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the server running after the demo, so a person can look (Ctrl-C ends it).
    #[arg(long)]
    keep: bool,
}

type Step<'a> = Pin<Box<dyn Future<Output = anyhow::Result<String>> + 'a>>;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("cannot make a scratch directory")?;
    let token = gwmo_server::random_secret();
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    gwmo_net::certs::issue(&dir.path().join("pki"), DEMO_CERTIFICATE, &hosts)?;
    let tls = demo_tls(dir.path());
    let server = Server::bind(ServerSettings {
        listen: "127.0.0.1:0".parse()?,
        database: dir.path().join("server.db").display().to_string(),
        admin_token: Some(token.clone()),
        tls: tls.clone(),
        ..ServerSettings::default()
    })
    .await?;
    let addr = server.local_addr().context("the server has no address")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    println!(
        "gwmo demo: DM Server on https://{addr}/dm (SQLite in {dir}; every role speaks TLS, \
         with certificates from the development CA {dir}/pki/ca.pem)",
        dir = dir.path().display()
    );
    let dashboard = format!("https://{addr}/dashboard#token={token}");
    println!("Dashboard: {dashboard} (the browser asks about the demo's CA)\n");
    let admin = AdminClient::new(
        HttpClient::new(&tls.client()?, Duration::from_secs(10), 1 << 20),
        format!("https://{addr}"),
        token.clone(),
    );

    let mut verified: Vec<(String, anyhow::Result<String>)> = Vec::new();
    let steps: Vec<(&str, Step)> = vec![
        (
            "MD5 session in XML: enroll, authenticate, report DevInfo",
            Box::pin(first_session(
                &admin,
                dir.path(),
                "IMEI:350000000000101",
                AuthType::Md5,
                WireEncoding::Xml,
            )),
        ),
        (
            "queued Replace, Get, Exec and a failing Atomic run on the device",
            Box::pin(queued_commands(&admin, dir.path())),
        ),
        (
            "firmware: an image uploaded, the device updated through FUMO, its result reported",
            Box::pin(firmware_update(&admin, dir.path())),
        ),
        (
            "HMAC session in WBXML: every message authenticated both ways",
            Box::pin(first_session(
                &admin,
                dir.path(),
                "IMEI:350000000000102",
                AuthType::Hmac,
                WireEncoding::Wbxml,
            )),
        ),
        (
            "server-initiated session: package 0 wakes the device",
            Box::pin(server_initiated(&admin, dir.path())),
        ),
        (
            "figures x and y: server-assisted bootstrap to gw-1, then a move to gw-2",
            Box::pin(figures_x_and_y(&admin, dir.path())),
        ),
        (
            "figure z: local bootstrap server, Device Attach Alert, validation",
            Box::pin(figure_z(&admin, dir.path())),
        ),
        (
            "a lapse: a local bootstrap with no session in time is removed and reported",
            Box::pin(lapse(&admin, dir.path())),
        ),
    ];
    for (number, (title, step)) in steps.into_iter().enumerate() {
        println!("Step {}: {title}", number + 1);
        let outcome = step.await;
        match &outcome {
            Ok(detail) => println!("  ok: {detail}\n"),
            Err(error) => println!("  FAILED: {error:#}\n"),
        }
        verified.push((title.to_owned(), outcome));
    }

    let width = verified
        .iter()
        .map(|(title, _)| title.len())
        .max()
        .unwrap_or(0);
    println!("{:<4} {:<width$} result", "step", "what was verified");
    for (number, (title, outcome)) in verified.iter().enumerate() {
        println!(
            "{:<4} {:<width$} {}",
            number + 1,
            title,
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
    }
    let failures = verified.iter().filter(|(_, o)| o.is_err()).count();
    println!(
        "\n{} of {} steps verified in {:.1} s",
        verified.len() - failures,
        verified.len(),
        started.elapsed().as_secs_f64()
    );

    if args.keep {
        println!(
            "\nThe server keeps running: the dashboard is at {dashboard} (admin token {token}); Ctrl-C ends it."
        );
        gwmo_wiring::shutdown_signal().await;
    }
    let _ = stop.send(());
    let _ = serving.await;
    if failures > 0 {
        bail!("{failures} demo step(s) failed");
    }
    Ok(())
}

const DEMO_CERTIFICATE: &str = "demo";

/// What every role of the demo uses: the certificate `demo` issues in `<dir>/pki` at
/// the start, and the CA that issued it.
fn demo_tls(dir: &Path) -> TlsSettings {
    gwmo_net::certs::Issued::in_dir(&dir.join("pki"), DEMO_CERTIFICATE).tls_settings()
}

/// Polls `probe` every 20 ms until it yields a value, for at most 15 s.
async fn wait_for<T, F, Fut>(what: &str, probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    poll(what, Duration::from_secs(15), probe).await
}

/// The Local DM Bootstrap Server a demo gateway runs: for which device, with which
/// USERPIN, asking for which lapse interval.
struct LocalBootstrap<'a> {
    dev_id: &'a str,
    userpin: &'a str,
    lapse_secs: u64,
}

/// A gateway in this process, enrolled and registered with the demo's server; with
/// `local`, its Local DM Bootstrap Server too (its URL is returned).
async fn start_gateway(
    admin: &AdminClient,
    dir: &Path,
    gateway_id: &str,
    local: Option<LocalBootstrap<'_>>,
) -> anyhow::Result<(AdminClient, Running, Option<String>)> {
    let started = gwmo_wiring::start_gateway(
        admin,
        GatewayPlan {
            gateway_id: gateway_id.into(),
            state_dir: dir.join(gateway_id),
            approaches: Approaches {
                server_assisted: true,
                local: local.is_some(),
            },
            bootstrap_lapse_secs: local.as_ref().map_or(3600, |l| l.lapse_secs),
            userpins: local
                .map(|l| [(l.dev_id.to_owned(), l.userpin.to_owned())].into())
                .unwrap_or_default(),
            admin_token: Some(admin.token().to_owned()),
            tls: demo_tls(dir),
        },
    )
    .await?;
    Ok((started.admin, started.running, started.bootstrap_url))
}

/// The end device seeing `gateway`: one session with its DM Server, then it listens
/// for package 0 (from the gateway) until stopped.
async fn end_device(dir: &Path, enrollment: &Value, gateway: &str) -> anyhow::Result<Running> {
    let settings = DeviceSettings {
        gateway: Some(gateway.into()),
        ..device_settings(dir, enrollment, WireEncoding::Wbxml, AuthType::Md5)?
    };
    let agent = Arc::new(Agent::open(settings)?);
    let listener = gwmo_device::notify::bind(&agent, "127.0.0.1:0".parse()?).await?;
    agent.set_notify_url(&listener.url).await?;
    let server_id = enrollment["server_id"]
        .as_str()
        .context("enrollment has no server_id")?;
    agent
        .session(server_id, Trigger::Client, None, Vec::new())
        .await?;
    Ok(Running::spawn(|stopped| async move {
        gwmo_device::notify::serve(agent, listener, stopped).await;
    }))
}

/// Waits until the gateway has the device in its store (after their first session).
async fn managed_by(gateway: &AdminClient, dev_id: &str) -> anyhow::Result<()> {
    let path = format!("/api/devices/{dev_id}");
    wait_for("a session between the device and its gateway", || async {
        let device = gateway.get(&path).await;
        Ok(device
            .ok()
            .filter(|d| d["sessions"].as_i64() > Some(0))
            .map(|_| ()))
    })
    .await
}

/// A gateway `gateway_id` running a Local DM Bootstrap Server for `local.dev_id`, and
/// that device, enrolled, having taken its Gateway Bootstrap (the gateway's ServerID
/// is returned with them).
async fn locally_bootstrapped(
    admin: &AdminClient,
    dir: &Path,
    gateway_id: &str,
    local: LocalBootstrap<'_>,
) -> anyhow::Result<(AdminClient, Running, Agent, String, Value)> {
    let (dev_id, userpin) = (local.dev_id, local.userpin.to_owned());
    let (gw, running, url) = start_gateway(admin, dir, gateway_id, Some(local)).await?;
    let url = url.context("the gateway runs no bootstrap server")?;
    let enrollment = admin.enroll(dev_id, AuthType::Md5).await?;
    let agent = Agent::open(DeviceSettings {
        userpin: Some(userpin),
        ..device_settings(dir, &enrollment, WireEncoding::Xml, AuthType::Md5)?
    })?;
    let gateway = agent.local_bootstrap(&url).await?;
    Ok((gw, running, agent, gateway, enrollment))
}

async fn figure_z(admin: &AdminClient, dir: &Path) -> anyhow::Result<String> {
    let dev_id = "IMEI:350000000000104";
    let local = LocalBootstrap {
        dev_id,
        userpin: "4711",
        lapse_secs: 600,
    };
    let (gw, running, agent, gateway, enrollment) =
        locally_bootstrapped(admin, dir, "gw-l", local).await?;
    agent
        .session(&gateway, Trigger::Client, None, Vec::new())
        .await?;
    let confirmed = agent
        .tree()
        .await
        .provenance_of(&gateway)
        .is_some_and(|p| p.confirmed);
    ensure!(confirmed, "the session did not confirm the bootstrap");
    managed_by(&gw, dev_id).await?;
    wait_for("the Device Attach Alert", || async {
        let device = admin.get(&format!("/api/devices/{dev_id}")).await?;
        Ok(
            (device["gateway"]["origin"] == gwmo_tree::Origin::LocalBootstrap.as_str())
                .then_some(()),
        )
    })
    .await?;
    // The device's next session with its DM Server carries the validation.
    let server_id = enrollment["server_id"]
        .as_str()
        .context("enrollment has no server_id")?;
    agent
        .session(server_id, Trigger::Client, None, Vec::new())
        .await?;
    let trust = agent.tree().await.provenance_of(&gateway).map(|p| p.trust);
    ensure!(
        trust == Some(gwmo_tree::Trust::Validated),
        "the gateway is still {trust:?}"
    );
    running.stop().await;
    Ok("USERPIN-signed Gateway Bootstrap applied restricted, confirmed by a session with gw-l, attached, then validated by the DM Server".into())
}

/// A device takes a Gateway Bootstrap asking for a 2-second lapse interval and holds
/// no session with the gateway: the device's own lapse timer (the one `gwmo device`
/// runs) removes the account at the deadline, with nothing else happening on it, and
/// the gateway reports a Device Detach Alert (reason: lapsed) to the DM Server.
async fn lapse(admin: &AdminClient, dir: &Path) -> anyhow::Result<String> {
    let dev_id = "IMEI:350000000000105";
    let local = LocalBootstrap {
        dev_id,
        userpin: "1357",
        lapse_secs: 2,
    };
    let (_gw, running, agent, gateway, _) = locally_bootstrapped(admin, dir, "gw-t", local).await?;
    let deadline = agent
        .tree()
        .await
        .provenance_of(&gateway)
        .and_then(|p| p.lapse_at)
        .context("the bootstrap has no lapse deadline")?;
    println!(
        "  the device took the bootstrap of {gateway}; it lapses at {deadline} unless a session follows"
    );
    let agent = Arc::new(agent);
    let timer = tokio::spawn({
        let agent = Arc::clone(&agent);
        async move { agent.run_lapse_timer().await }
    });
    wait_for("the lapse on the device", || async {
        let tree = agent.tree().await;
        Ok(gwmo_tree::account_of(&tree, &gateway)
            .is_none()
            .then_some(()))
    })
    .await?;
    timer.abort();
    println!(
        "  at {}, the device's lapse timer removed the account of {gateway}",
        gwmo_tree::rfc3339(gwmo_net::unix_now())
    );
    wait_for("the Device Detach Alert on the server", || async {
        let events = admin
            .get(&format!("/api/events?kind=detach&device={dev_id}"))
            .await?;
        Ok(events["events"]
            .as_array()
            .and_then(|events| events.first())
            .filter(|event| event["detail"]["device"]["reason"] == "lapsed")
            .map(|_| ()))
    })
    .await?;
    running.stop().await;
    Ok(format!(
        "the account of {gateway} lapsed on the device at {deadline} and gw-t reported the Device Detach (lapsed)"
    ))
}

async fn figures_x_and_y(admin: &AdminClient, dir: &Path) -> anyhow::Result<String> {
    let (gw1, gw1_running, _) = start_gateway(admin, dir, "gw-1", None).await?;
    let (gw2, gw2_running, _) = start_gateway(admin, dir, "gw-2", None).await?;
    let dev_id = "IMEI:350000000000103";
    let enrollment = admin.enroll(dev_id, AuthType::Md5).await?;
    let association = || async {
        let device = admin.get(&format!("/api/devices/{dev_id}")).await?;
        anyhow::Ok(device["gateway"]["gateway_id"].as_str().map(str::to_owned))
    };

    // Figure x.
    let device = end_device(dir, &enrollment, "gw-1").await?;
    managed_by(&gw1, dev_id).await?;
    ensure!(
        association().await?.as_deref() == Some("gw-1"),
        "the server did not record gw-1"
    );
    let get = gw1
        .queue(dev_id, r#"{"op":"Get","target":"./DevInfo/Mod"}"#)
        .await?;
    gw1.call(Method::POST, &format!("/api/devices/{dev_id}/notify"), None)
        .await?;
    wait_for("gw-1 to manage the device", || async {
        let state = gw1.get(&format!("/api/commands/{get}")).await?;
        Ok((state["status"] == 200).then_some(()))
    })
    .await?;
    device.stop().await;

    // Figure y.
    let device = end_device(dir, &enrollment, "gw-2").await?;
    wait_for("the move to gw-2", || async {
        Ok((association().await?.as_deref() == Some("gw-2")
            && gw1
                .send(Method::GET, &format!("/api/devices/{dev_id}"), None)
                .await?
                .0
                == 404)
            .then_some(()))
    })
    .await?;
    managed_by(&gw2, dev_id).await?;
    device.stop().await;
    gw1_running.stop().await;
    gw2_running.stop().await;
    Ok("the device was bootstrapped to gw-1, which managed it (figure x); it reported gw-2, moved, and gw-1 forgot it (figure y)".into())
}

fn device_settings(
    dir: &Path,
    enrollment: &Value,
    encoding: WireEncoding,
    auth: AuthType,
) -> anyhow::Result<DeviceSettings> {
    let dev_id = enrollment["dev_id"]
        .as_str()
        .context("enrollment has no dev_id")?
        .to_owned();
    let account = enrollment_account(enrollment)?;
    Ok(DeviceSettings {
        state_dir: dir.join(dev_id.replace(':', "_")),
        dev_id,
        encoding,
        accounts: vec![gwmo_device::settings::FactoryAccount { auth, ..account }],
        tls: demo_tls(dir),
        ..DeviceSettings::default()
    })
}

async fn first_session(
    admin: &AdminClient,
    dir: &Path,
    dev_id: &str,
    auth: AuthType,
    encoding: WireEncoding,
) -> anyhow::Result<String> {
    let enrollment = admin.enroll(dev_id, auth).await?;
    let agent = Agent::open(device_settings(dir, &enrollment, encoding, auth)?)?;
    let server_id = enrollment["server_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let report = agent
        .session(&server_id, Trigger::Client, None, Vec::new())
        .await?;
    let device = admin.get(&format!("/api/devices/{dev_id}")).await?;
    ensure!(
        device["devinfo"]["./DevInfo/DevId"] == dev_id,
        "the server did not record the DevInfo: {device}"
    );
    Ok(format!(
        "{dev_id} authenticated ({}), session {} ended after {} message(s)",
        auth.name(),
        report.session_id,
        report.messages
    ))
}

/// A device of an earlier step, opened again from its state directory.
fn reopen(dir: &Path, dev_id: &str, encoding: WireEncoding) -> anyhow::Result<Agent> {
    Ok(Agent::open(DeviceSettings {
        state_dir: dir.join(dev_id.replace(':', "_")),
        dev_id: dev_id.into(),
        encoding,
        tls: demo_tls(dir),
        ..DeviceSettings::default()
    })?)
}

/// A client-initiated session with the device's (one) server.
async fn client_session(agent: &Agent) -> anyhow::Result<()> {
    let server_id = agent
        .server_ids()
        .await
        .into_iter()
        .next()
        .context("the device has no account")?;
    agent
        .session(&server_id, Trigger::Client, None, Vec::new())
        .await?;
    Ok(())
}

async fn server_initiated(admin: &AdminClient, dir: &Path) -> anyhow::Result<String> {
    let dev_id = "IMEI:350000000000102";
    let agent = Arc::new(reopen(dir, dev_id, WireEncoding::Wbxml)?);
    let listener = gwmo_device::notify::bind(&agent, "127.0.0.1:0".parse()?).await?;
    agent.set_notify_url(&listener.url).await?;
    // One session reports the notification URL; then the device only listens.
    client_session(&agent).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listening = tokio::spawn(gwmo_device::notify::serve(agent.clone(), listener, async {
        let _ = stopped.await;
    }));
    let command = admin
        .queue(dev_id, r#"{"op":"Get","target":"./DevInfo/DevId"}"#)
        .await?;
    let answer = admin
        .call(Method::POST, &format!("/api/devices/{dev_id}/notify"), None)
        .await?;
    let done = wait_for("the notified session", || async {
        let state = admin.get(&format!("/api/commands/{command}")).await?;
        Ok((state["state"] == "done").then_some(state))
    })
    .await?;
    let _ = stop.send(());
    let _ = listening.await;
    ensure!(
        done["outcome"]["results"][0]["data"] == dev_id,
        "unexpected outcome: {done}"
    );
    // A device whose last session just ended answers "too soon" (429); the server
    // sends package 0 again after a pause.
    let woken = match answer["session_id"].as_str() {
        Some(session) => format!("package 0 for session {session} verified by the device"),
        None => "package 0 answered \"too soon\" (a session had just ended), sent again by the server and verified by the device".to_owned(),
    };
    Ok(format!("{woken}; the queued Get came back with its DevId"))
}

async fn queued_commands(admin: &AdminClient, dir: &Path) -> anyhow::Result<String> {
    let dev_id = "IMEI:350000000000101";
    let agent = reopen(dir, dev_id, WireEncoding::Xml)?;
    let replace = admin
        .queue(
            dev_id,
            r#"{"op":"Replace","target":"./Vendor/gwmo/Ping","data":"armed"}"#,
        )
        .await?;
    let get = admin
        .queue(dev_id, r#"{"op":"Get","target":"./DevInfo/Man"}"#)
        .await?;
    let exec = admin
        .queue(
            dev_id,
            r#"{"op":"Exec","target":"./Vendor/gwmo/Ping","data":"hello"}"#,
        )
        .await?;
    let atomic = admin
        .queue(dev_id, r#"{"op":"Atomic","commands":[{"op":"Add","target":"./Vendor/gwmo/A","data":"1"},{"op":"Delete","target":"./Vendor/gwmo/Missing"}]}"#)
        .await?;
    client_session(&agent).await?;
    let status = |v: &Value| v["status"].as_u64().unwrap_or_default();
    let (replace, get, exec, atomic) = (
        admin.get(&format!("/api/commands/{replace}")).await?,
        admin.get(&format!("/api/commands/{get}")).await?,
        admin.get(&format!("/api/commands/{exec}")).await?,
        admin.get(&format!("/api/commands/{atomic}")).await?,
    );
    ensure!(status(&replace) == 200, "Replace: {replace}");
    ensure!(get["outcome"]["results"][0]["data"] == "gwmo", "Get: {get}");
    ensure!(status(&exec) == 200, "Exec: {exec}");
    ensure!(
        status(&atomic) == 507,
        "Atomic should fail with 507: {atomic}"
    );
    let tree = agent.tree().await;
    ensure!(
        tree.value("./Vendor/gwmo/LastPing") == Some("hello"),
        "Exec did not run on the device"
    );
    ensure!(
        tree.value("./Vendor/gwmo/A").is_none(),
        "the failed Atomic was not rolled back"
    );
    Ok("Replace 200, Get -> \"gwmo\", Exec 200 (Ping ran), Atomic 507 and rolled back".into())
}

/// An image uploaded to the server and sent to a device: the device accepts the Exec
/// (202), downloads and verifies the package, installs it (simulated) and reports the
/// FUMO result in a Generic Alert of a session of its own.
async fn firmware_update(admin: &AdminClient, dir: &Path) -> anyhow::Result<String> {
    const VERSION: &str = "2.0";
    let dev_id = "IMEI:350000000000101";
    let agent = Arc::new(reopen(dir, dev_id, WireEncoding::Xml)?);
    let image: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let (status, artifact) = admin
        .upload_artifact(
            &format!("name=demo-firmware&version={VERSION}&man=gwmo&model=gwmo-device"),
            image.clone(),
        )
        .await?;
    ensure!(status == 201, "upload refused ({status}): {artifact}");
    let id = artifact["id"]
        .as_str()
        .context("no artifact id")?
        .to_owned();
    let request = serde_json::json!({ "artifact": id, "wake": false }).to_string();
    let update = admin
        .call(
            Method::POST,
            &format!("/api/devices/{dev_id}/firmware"),
            Some(&request),
        )
        .await?;
    // The device's firmware worker runs beside the session that takes the update.
    let worker = agent.clone();
    let working = tokio::spawn(async move { worker.run_firmware_jobs().await });
    client_session(&agent).await?;
    let correlator = update["correlator"].as_str().unwrap_or_default().to_owned();
    let ended = wait_for("the device's FUMO result", || async {
        let page = admin
            .get(&format!("/api/devices/{dev_id}/firmware"))
            .await?;
        Ok(page["updates"]
            .as_array()
            .and_then(|updates| {
                updates
                    .iter()
                    .find(|u| u["correlator"] == correlator.as_str())
            })
            .filter(|u| u["state"] == "succeeded" || u["state"] == "failed")
            .cloned())
    })
    .await;
    working.abort();
    let ended = ended?;
    ensure!(ended["result"] == 200, "the update failed: {ended}");
    let tree = agent.tree().await;
    ensure!(
        tree.value("./DevDetail/FwV") == Some(VERSION),
        "the device does not run {VERSION}"
    );
    let served = admin.get(&format!("/api/artifacts/{id}")).await?;
    Ok(format!(
        "{} bytes downloaded once (sha256 verified), installed; FwV {VERSION}, State {}, result 200 ({})",
        served["bytes_served"],
        tree.value("./FUMO/Firmware/State").unwrap_or_default(),
        ended["result_meaning"].as_str().unwrap_or_default()
    ))
}
