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
use gwmo_device::settings::{AuthName, FactoryAccount, WireEncoding};
use gwmo_device::{Agent, DeviceSettings};
use gwmo_net::{HttpClient, Method};
use gwmo_server::{Server, ServerSettings};
use gwmo_session::Trigger;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the server running after the demo, so a person can look (Ctrl-C ends it).
    #[arg(long)]
    keep: bool,
}

/// The admin API of the demo's server.
struct Admin {
    client: HttpClient,
    base: String,
    token: String,
}

impl Admin {
    async fn call(&self, method: Method, path: &str, body: &str) -> anyhow::Result<Value> {
        let auth = format!("Bearer {}", self.token);
        let answer = self
            .client
            .request(
                method,
                &format!("{}{path}", self.base),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.as_bytes().to_vec(),
            )
            .await?;
        let value: Value =
            serde_json::from_slice(&answer.body).context("the admin API answered no JSON")?;
        ensure!(
            (200..300).contains(&answer.status),
            "{path}: HTTP {} {value}",
            answer.status
        );
        Ok(value)
    }

    async fn enroll(&self, dev_id: &str, auth: &str) -> anyhow::Result<Value> {
        self.call(
            Method::POST,
            "/api/devices",
            &format!(r#"{{"dev_id":"{dev_id}","auth":"{auth}"}}"#),
        )
        .await
    }

    async fn queue(&self, dev_id: &str, spec: &str) -> anyhow::Result<i64> {
        let answer = self
            .call(
                Method::POST,
                &format!("/api/devices/{dev_id}/commands"),
                spec,
            )
            .await?;
        answer["id"].as_i64().context("no command id")
    }

    async fn command(&self, id: i64) -> anyhow::Result<Value> {
        self.call(Method::GET, &format!("/api/commands/{id}"), "")
            .await
    }
}

type Step<'a> = Pin<Box<dyn Future<Output = anyhow::Result<String>> + 'a>>;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("cannot make a scratch directory")?;
    let token = gwmo_server::admin::random_secret();
    let server = Server::bind(ServerSettings {
        listen: "127.0.0.1:0".parse()?,
        database: dir.path().join("server.db"),
        admin_token: Some(token.clone()),
        ..ServerSettings::default()
    })
    .await?;
    let addr = server.local_addr().context("the server has no address")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    println!(
        "gwmo demo: DM Server on http://{addr}/dm (SQLite in {})\n",
        dir.path().display()
    );
    let admin = Admin {
        client: HttpClient::new(Duration::from_secs(10), 1 << 20),
        base: format!("http://{addr}"),
        token: token.clone(),
    };

    let mut verified: Vec<(String, anyhow::Result<String>)> = Vec::new();
    let steps: Vec<(&str, Step)> = vec![
        (
            "MD5 session in XML: enroll, authenticate, report DevInfo",
            Box::pin(first_session(
                &admin,
                dir.path(),
                "IMEI:350000000000101",
                "md5",
                WireEncoding::Xml,
            )),
        ),
        (
            "queued Replace, Get, Exec and a failing Atomic run on the device",
            Box::pin(queued_commands(&admin, dir.path())),
        ),
        (
            "HMAC session in WBXML: every message authenticated both ways",
            Box::pin(first_session(
                &admin,
                dir.path(),
                "IMEI:350000000000102",
                "hmac",
                WireEncoding::Wbxml,
            )),
        ),
        (
            "server-initiated session: package 0 wakes the device",
            Box::pin(server_initiated(&admin, dir.path())),
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

    println!("{:<4} {:<68} result", "step", "what was verified");
    for (number, (title, outcome)) in verified.iter().enumerate() {
        println!(
            "{:<4} {:<68} {}",
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
            "\nThe server keeps running at http://{addr} (admin token {token}); Ctrl-C ends it."
        );
        crate::server::shutdown_signal().await;
    }
    let _ = stop.send(());
    let _ = serving.await;
    if failures > 0 {
        bail!("{failures} demo step(s) failed");
    }
    Ok(())
}

fn device_settings(
    dir: &Path,
    enrollment: &Value,
    encoding: WireEncoding,
    auth: AuthName,
) -> anyhow::Result<DeviceSettings> {
    let text = |key: &str| {
        enrollment[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("enrollment has no {key}"))
    };
    let dev_id = text("dev_id")?;
    Ok(DeviceSettings {
        state_dir: dir.join(dev_id.replace(':', "_")),
        dev_id,
        encoding,
        accounts: vec![FactoryAccount {
            server_id: text("server_id")?,
            server_url: text("server_url")?,
            auth,
            client_name: Some(text("client_name")?),
            client_secret: text("client_secret")?,
            server_name: Some(text("server_name")?),
            server_secret: text("server_secret")?,
        }],
        ..DeviceSettings::default()
    })
}

async fn first_session(
    admin: &Admin,
    dir: &Path,
    dev_id: &str,
    auth: &str,
    encoding: WireEncoding,
) -> anyhow::Result<String> {
    let enrollment = admin.enroll(dev_id, auth).await?;
    let auth_name = if auth == "hmac" {
        AuthName::Hmac
    } else {
        AuthName::Md5
    };
    let agent = Agent::open(device_settings(dir, &enrollment, encoding, auth_name)?)?;
    let server_id = enrollment["server_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let report = agent
        .session(&server_id, Trigger::Client, None, Vec::new())
        .await?;
    let device = admin
        .call(Method::GET, &format!("/api/devices/{dev_id}"), "")
        .await?;
    ensure!(
        device["devinfo"]["./DevInfo/DevId"] == dev_id,
        "the server did not record the DevInfo: {device}"
    );
    Ok(format!(
        "{dev_id} authenticated ({auth}), session {} ended after {} message(s)",
        report.session_id, report.messages
    ))
}

/// A device of an earlier step, opened again from its state directory.
fn reopen(dir: &Path, dev_id: &str, encoding: WireEncoding) -> anyhow::Result<Agent> {
    Ok(Agent::open(DeviceSettings {
        state_dir: dir.join(dev_id.replace(':', "_")),
        dev_id: dev_id.into(),
        encoding,
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

async fn server_initiated(admin: &Admin, dir: &Path) -> anyhow::Result<String> {
    let dev_id = "IMEI:350000000000102";
    let agent = Arc::new(reopen(dir, dev_id, WireEncoding::Wbxml)?);
    let (listener, url) = gwmo_device::notify::bind(&agent, "127.0.0.1:0".parse()?).await?;
    agent.set_notify_url(&url).await?;
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
        .call(Method::POST, &format!("/api/devices/{dev_id}/notify"), "")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let state = admin.command(command).await?;
        if state["state"] == "done" {
            break state;
        }
        ensure!(
            Instant::now() < deadline,
            "the device did not open the session in 10 s: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    let _ = listening.await;
    ensure!(
        done["outcome"]["results"][0]["data"] == dev_id,
        "unexpected outcome: {done}"
    );
    Ok(format!(
        "package 0 for session {} verified by the device; the queued Get came back with its DevId",
        answer["session_id"]
    ))
}

async fn queued_commands(admin: &Admin, dir: &Path) -> anyhow::Result<String> {
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
        admin.command(replace).await?,
        admin.command(get).await?,
        admin.command(exec).await?,
        admin.command(atomic).await?,
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
