//! The behaviour both backends must share, run against each: SQLite in memory always,
//! PostgreSQL when `GWMO_TEST_POSTGRES` names a server (an admin URL such as
//! `postgres://postgres@localhost/postgres`); each test gets a database of its own.
//! In CI the variable must be set: a skipped backend there is a failure.

use super::*;
use crate::operators::Role;

/// What nothing entails: these tests register no gateways.
fn entails_nothing(
    _: &SettledBootstrap,
    _: &DeviceRecord,
    _: Option<&GatewayRecord>,
    _: Option<&GatewayRecord>,
) -> Followups {
    Followups::default()
}

pub(crate) fn device(dev_id: &str) -> NewDevice {
    NewDevice {
        dev_id: dev_id.into(),
        auth: AuthType::Hmac,
        client_name: "c".into(),
        client_secret: "cs".into(),
        server_name: "s".into(),
        server_secret: "ss".into(),
    }
}

/// A session in WBXML that reported `devinfo` and no notification address.
pub(crate) fn session_in_wbxml(devinfo: &BTreeMap<String, String>, now: i64) -> SessionRecord<'_> {
    SessionRecord {
        devinfo,
        encoding: "wbxml",
        notify_address: None,
        now,
    }
}

/// No DevDetail leaves.
static NO_LEAVES: BTreeMap<String, String> = BTreeMap::new();

/// What a message that gave the server a nonce, and nothing else, reported.
pub(crate) fn server_nonce_only(nonce: &[u8]) -> Reported<'_> {
    Reported {
        server_nonce: Some(nonce),
        devdetail: &NO_LEAVES,
    }
}

/// DevDetail leaves reported without a server nonce.
fn devdetail_only(devdetail: &BTreeMap<String, String>) -> Reported<'_> {
    Reported {
        server_nonce: None,
        devdetail,
    }
}

pub(crate) fn gateway(gateway_id: &str, dev_id: &str) -> GatewayRecord {
    GatewayRecord {
        gateway_id: gateway_id.into(),
        dev_id: dev_id.into(),
        dm_url: "http://gw/dm".into(),
        server_assisted: true,
    }
}

/// Runs `check` on a fresh store of each backend.
pub(crate) fn each_backend(check: impl Fn(&dyn Store)) {
    check(&SqliteStore::open_in_memory().unwrap());
    if let Some(admin_url) = postgres_under_test() {
        let database = ScratchDatabase::create(&admin_url);
        check(&PostgresStore::open(&database.url).unwrap());
    }
}

/// A database made for one test and dropped after it.
pub(crate) struct ScratchDatabase {
    admin: ::postgres::Client,
    name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub fn create(admin_url: &str) -> ScratchDatabase {
        let mut admin = ::postgres::Client::connect(admin_url, ::postgres::NoTls).unwrap();
        let name = format!("gwmo_test_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = database_url(admin_url, &name);
        ScratchDatabase { admin, name, url }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name));
    }
}

/// `admin_url` with its database (the URL path) replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..authority_end])
}

#[test]
fn a_database_url_gets_the_scratch_name() {
    assert_eq!(
        database_url("postgres://u@h:5/postgres?sslmode=disable", "x"),
        "postgres://u@h:5/x?sslmode=disable"
    );
    assert_eq!(database_url("postgres://u@h", "x"), "postgres://u@h/x");
}

#[test]
fn a_removed_device_takes_its_commands_with_it() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let id = store.queue_command("IMEI:1", "{}", 1).unwrap();
        assert!(store.remove_device("IMEI:1").unwrap());
        assert!(store.command(id).unwrap().is_none());
        assert!(!store.remove_device("IMEI:1").unwrap());
        store.enroll(&device("IMEI:1"), 2).unwrap();
    });
}

#[test]
fn enrolling_twice_is_refused() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        assert!(matches!(
            store.enroll(&device("IMEI:1"), 0),
            Err(StoreError::AlreadyExists(_))
        ));
    });
}

#[test]
fn a_command_is_claimed_once_and_completed_once() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let first = store
            .queue_command("IMEI:1", "{\"op\":\"Get\"}", 1)
            .unwrap();
        let second = store.queue_command("IMEI:1", "{}", 1).unwrap();
        let claimed = store.claim_pending("IMEI:1", "s1", 2).unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![first, second]
        );
        assert!(store.claim_pending("IMEI:1", "s2", 3).unwrap().is_empty());

        store
            .complete(first, 200, "{}", 4, &entails_nothing)
            .unwrap();
        store
            .complete(first, 500, "{\"late\":1}", 5, &entails_nothing)
            .unwrap();
        let done = store.command(first).unwrap().unwrap();
        assert_eq!(
            (done.state, done.status, done.done_at),
            (CommandState::Done, Some(200), Some(4))
        );

        // A queued command cannot complete without having been sent.
        let third = store.queue_command("IMEI:1", "{}", 6).unwrap();
        store
            .complete(third, 200, "{}", 7, &entails_nothing)
            .unwrap();
        assert_eq!(
            store.command(third).unwrap().unwrap().state,
            CommandState::Queued
        );
    });
}

#[test]
fn a_dead_session_gives_its_commands_back() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let id = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store.claim_pending("IMEI:1", "dead", 2).unwrap();
        assert_eq!(store.requeue_session("IMEI:2", "dead").unwrap(), 0);
        assert_eq!(store.requeue_session("IMEI:1", "dead").unwrap(), 1);
        let again = store.claim_pending("IMEI:1", "next", 3).unwrap();
        assert_eq!(again[0].id, id);
        assert_eq!(again[0].session_key.as_deref(), Some("next"));
    });
}

#[test]
fn abandoned_commands_go_back_to_the_queue() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let old = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store.claim_pending("IMEI:1", "dead", 10).unwrap();
        let recent = store.queue_command("IMEI:1", "{}", 11).unwrap();
        store.claim_pending("IMEI:1", "live", 100).unwrap();
        assert_eq!(
            store.requeue_abandoned(50).unwrap(),
            vec!["IMEI:1".to_owned()]
        );
        assert_eq!(
            store.command(old).unwrap().unwrap().state,
            CommandState::Queued
        );
        assert_eq!(
            store.command(recent).unwrap().unwrap().state,
            CommandState::Sent
        );
        let again = store.claim_pending("IMEI:1", "next", 101).unwrap();
        assert_eq!(again.iter().map(|c| c.id).collect::<Vec<_>>(), vec![old]);
    });
}

#[test]
fn devices_and_events_page() {
    each_backend(|store| {
        for i in 0..5 {
            store.enroll(&device(&format!("IMEI:{i}")), 0).unwrap();
            store
                .log_event(Some(&format!("IMEI:{i}")), "alert", "{}", i)
                .unwrap();
        }
        let all = DeviceFilter::default();
        let first = store.devices(&all, None, 2).unwrap();
        let next = store
            .devices(&all, Some(&first[1].record.dev_id), 10)
            .unwrap();
        assert_eq!((first.len(), next.len()), (2, 3));
        assert_eq!(next[0].record.dev_id, "IMEI:2");
        let all = EventFilter::default();
        let events = store.events(0, 3, &all).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(store.events(events[2].id, 10, &all).unwrap().len(), 2);
        store.log_event(Some("IMEI:1"), "attach", "{}", 9).unwrap();
        let attaches = EventFilter {
            kind: Some("attach".into()),
            ..EventFilter::default()
        };
        let found = store.events(0, 10, &attaches).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].dev_id.as_deref(), Some("IMEI:1"));
        let of_device = EventFilter {
            dev_id: Some("IMEI:1".into()),
            ..EventFilter::default()
        };
        assert_eq!(store.events(0, 10, &of_device).unwrap().len(), 2);
    });
}

#[test]
fn an_auth_switch_applies_only_when_its_command_succeeds() {
    each_backend(|store| {
        let mut md5 = device("IMEI:1");
        md5.auth = AuthType::Md5;
        store.enroll(&md5, 0).unwrap();
        let first = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store
            .plan_auth_switch("IMEI:1", AuthType::Hmac, first)
            .unwrap();
        assert_eq!(
            store
                .complete(first, 425, "{}", 0, &entails_nothing)
                .unwrap()
                .auth_switched_to,
            None
        );
        assert_eq!(store.device("IMEI:1").unwrap().unwrap().auth, AuthType::Md5);
        let second = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store
            .plan_auth_switch("IMEI:1", AuthType::Hmac, second)
            .unwrap();
        assert_eq!(
            store
                .complete(second, 200, "{}", 0, &entails_nothing)
                .unwrap()
                .auth_switched_to,
            Some(AuthType::Hmac)
        );
        assert_eq!(
            store.device("IMEI:1").unwrap().unwrap().auth,
            AuthType::Hmac
        );
        assert_eq!(
            store
                .complete(second, 200, "{}", 0, &entails_nothing)
                .unwrap()
                .auth_switched_to,
            None,
            "settled once"
        );
    });
}

#[test]
fn a_bootstrap_becomes_an_association_when_the_device_confirms_it() {
    each_backend(|store| {
        for id in ["IMEI:gw1", "IMEI:gw2", "IMEI:ed"] {
            store.enroll(&device(id), 0).unwrap();
        }
        for (gateway_id, dev_id) in [("gw-1", "IMEI:gw1"), ("gw-2", "IMEI:gw2")] {
            store
                .register_gateway(&gateway(gateway_id, dev_id))
                .unwrap();
        }
        let commands = vec!["{\"op\":\"Get\",\"target\":\"./DevInfo\"}".to_owned(); 2];
        let recorded = Followups {
            commands: Vec::new(),
            events: vec![NewEvent {
                dev_id: Some("IMEI:ed".into()),
                kind: "location-update",
                detail: "{}".into(),
            }],
        };
        let plan = |gateway_id, client_secret| BootstrapPlan {
            dev_id: "IMEI:ed",
            gateway_id,
            client_secret,
            server_secret: "s",
            commands: &commands,
            then: &recorded,
        };
        // What a settled bootstrap entails here: a command to each gateway it names, and
        // an event; both must be written with the settlement.
        let entailed = |settled: &SettledBootstrap,
                        device: &DeviceRecord,
                        new: Option<&GatewayRecord>,
                        old: Option<&GatewayRecord>| Followups {
            commands: new
                .into_iter()
                .chain(old)
                .map(|gateway| NewCommand {
                    dev_id: gateway.dev_id.clone(),
                    spec: format!("{{\"told\":\"{}\"}}", device.dev_id),
                    validates: None,
                })
                .collect(),
            events: vec![NewEvent {
                dev_id: Some(settled.dev_id.clone()),
                kind: "bootstrap",
                detail: "{}".into(),
            }],
        };
        let settle = |command, status, now| {
            store
                .complete(command, status, "{}", now, &entailed)
                .unwrap()
                .bootstrap
        };
        let told =
            |gateway_dev_id: &str| store.claim_pending(gateway_dev_id, "k", 9).unwrap().len();
        let first = store.queue_bootstrap(&plan("gw-1", "c"), 0).unwrap();
        assert!(store.bootstrap_pending("IMEI:ed", "gw-1").unwrap());
        assert!(!store.bootstrap_pending("IMEI:ed", "gw-2").unwrap());
        assert_eq!(settle(first - 1, 200, 1), None, "the last command settles");
        assert_eq!(settle(first, 507, 1), None);
        assert_eq!(told("IMEI:gw1"), 0, "a failed bootstrap tells no gateway");
        assert_eq!(store.association("IMEI:ed").unwrap(), None);
        assert!(!store.bootstrap_pending("IMEI:ed", "gw-1").unwrap());

        let second = store.queue_bootstrap(&plan("gw-1", "c"), 1).unwrap();
        let (settled, then) = settle(second, 200, 2).unwrap();
        assert_eq!(
            (settled.gateway_id.as_str(), settled.previous),
            ("gw-1", None)
        );
        assert_eq!(then.commands.len(), 1);
        assert_eq!(told("IMEI:gw1"), 1, "the new gateway's command is queued");
        let third = store.queue_bootstrap(&plan("gw-2", "c2"), 2).unwrap();
        let (moved, _) = settle(third, 200, 3).unwrap();
        assert_eq!(moved.previous.as_deref(), Some("gw-1"));
        assert_eq!(
            (told("IMEI:gw1"), told("IMEI:gw2")),
            (1, 1),
            "the gateway left and the new one are both told"
        );
        assert_eq!(
            store.association("IMEI:ed").unwrap().unwrap().gateway_id,
            "gw-2"
        );
        assert_eq!(settle(third, 200, 4), None, "settled once");
        let entailed_events = store
            .events(0, 20, &EventFilter::default())
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "bootstrap")
            .count();
        assert_eq!(entailed_events, 2, "each settlement wrote what it entails");
        let planned = store
            .events(0, 10, &EventFilter::default())
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "location-update")
            .count();
        assert_eq!(planned, 3, "each plan recorded its event");
        assert!(matches!(
            store.queue_bootstrap(
                &BootstrapPlan {
                    commands: &[],
                    ..plan("gw-1", "c")
                },
                5
            ),
            Err(StoreError::EmptyPlan)
        ));
        store
            .associate(
                "IMEI:gw1",
                "gw-1",
                "local-bootstrap",
                None,
                5,
                &Followups::default(),
            )
            .unwrap();
        let ids = |page: Vec<Association>| page.into_iter().map(|a| a.dev_id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.associations(None, "", 10).unwrap()),
            ["IMEI:ed", "IMEI:gw1"]
        );
        assert_eq!(
            ids(store.associations(Some("gw-1"), "", 10).unwrap()),
            ["IMEI:gw1"]
        );
        assert_eq!(
            ids(store.associations(None, "IMEI:ed", 10).unwrap()),
            ["IMEI:gw1"]
        );
        assert_eq!(ids(store.associations(None, "", 1).unwrap()), ["IMEI:ed"]);
        let gateways = store.gateways("gw-1", 10).unwrap();
        assert_eq!(gateways.len(), 1);
        assert_eq!(gateways[0].gateway_id, "gw-2");
    });
}

#[test]
fn the_last_reported_tree_replaces_the_one_before() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        assert_eq!(store.tree("IMEI:1").unwrap(), None);
        store.set_tree("IMEI:1", "<MgmtTree/>", 5).unwrap();
        store
            .set_tree("IMEI:1", "<MgmtTree>2</MgmtTree>", 6)
            .unwrap();
        assert_eq!(
            store.tree("IMEI:1").unwrap(),
            Some(("<MgmtTree>2</MgmtTree>".into(), 6))
        );
        assert_eq!(store.tree("IMEI:unknown").unwrap(), None);
    });
}

/// Two instances claiming the same device's commands at once (as when a device talks
/// to both): every command is claimed by exactly one session.
#[test]
fn commands_are_claimed_once_across_instances() {
    let Some(admin_url) = postgres_under_test() else {
        return;
    };
    let database = ScratchDatabase::create(&admin_url);
    let instances = [
        PostgresStore::open(&database.url).unwrap(),
        PostgresStore::open(&database.url).unwrap(),
    ];
    instances[0].enroll(&device("IMEI:1"), 0).unwrap();
    let mut queued = Vec::new();
    for round in 0..20 {
        for _ in 0..10 {
            queued.push(
                instances[round % 2]
                    .queue_command("IMEI:1", "{}", 1)
                    .unwrap(),
            );
        }
        let claims: Vec<Vec<i64>> = std::thread::scope(|scope| {
            let claimers: Vec<_> = (0..8)
                .map(|session| {
                    let store = &instances[session % 2];
                    scope.spawn(move || {
                        store
                            .claim_pending("IMEI:1", &format!("r{round}s{session}"), 2)
                            .unwrap()
                            .into_iter()
                            .map(|c| c.id)
                            .collect()
                    })
                })
                .collect();
            claimers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let mut claimed: Vec<i64> = claims.into_iter().flatten().collect();
        claimed.sort();
        let expected: Vec<i64> = queued[round * 10..].to_vec();
        assert_eq!(claimed, expected, "round {round}");
    }
}

/// Instances starting together migrate the schema once; a database from a newer
/// gwmo is refused untouched.
#[test]
fn postgres_migrations_run_once_and_refuse_a_newer_schema() {
    let Some(admin_url) = postgres_under_test() else {
        return;
    };
    let database = ScratchDatabase::create(&admin_url);
    std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStore::open(&database.url).map(|_| ())))
            .collect();
        for open in opening {
            open.join().unwrap().unwrap();
        }
    });
    let mut client = ::postgres::Client::connect(&database.url, ::postgres::NoTls).unwrap();
    client
        .batch_execute("UPDATE gwmo_schema SET version = 99")
        .unwrap();
    assert!(matches!(
        PostgresStore::open(&database.url),
        Err(StoreError::TooNew(99, _))
    ));
}

fn postgres_under_test() -> Option<String> {
    match std::env::var("GWMO_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must test the PostgreSQL backend: set GWMO_TEST_POSTGRES")
        }
        Err(_) => {
            eprintln!("GWMO_TEST_POSTGRES unset: PostgreSQL backend not tested");
            None
        }
    }
}

#[test]
fn history_older_than_the_cutoff_is_forgotten_and_nothing_else() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.enroll(&device("GW:1"), 0).unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        let old = store.queue_command("IMEI:1", "{}", 1).unwrap();
        let recent = store.queue_command("IMEI:1", "{}", 1).unwrap();
        let running = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store.claim_pending("IMEI:1", "s1", 2).unwrap();
        store
            .complete(old, 200, "{}", 10, &entails_nothing)
            .unwrap();
        store
            .complete(recent, 200, "{}", 100, &entails_nothing)
            .unwrap();
        let queued = store.queue_command("IMEI:1", "{}", 3).unwrap();
        let fanout = |done_at: Option<i64>| {
            let id = store.create_fanout("gw-1", "IMEI:1", "{}", 1).unwrap();
            if let Some(at) = done_at {
                assert!(store.complete_fanout(id, "gw-1", "[]", at).unwrap());
            }
            id
        };
        let (old_fanout, recent_fanout, open_fanout) =
            (fanout(Some(10)), fanout(Some(100)), fanout(None));
        store.log_event(Some("IMEI:1"), "alert", "{}", 10).unwrap();
        store.log_event(Some("IMEI:1"), "alert", "{}", 100).unwrap();

        assert_eq!(store.forget_history(50).unwrap(), 3);
        assert!(store.command(old).unwrap().is_none());
        for kept in [recent, running, queued] {
            assert!(store.command(kept).unwrap().is_some(), "command {kept}");
        }
        assert!(store.fanout(old_fanout).unwrap().is_none());
        for kept in [recent_fanout, open_fanout] {
            assert!(store.fanout(kept).unwrap().is_some(), "fan-out {kept}");
        }
        let events = store.events(0, 10, &EventFilter::default()).unwrap();
        assert_eq!(events.iter().map(|e| e.at).collect::<Vec<_>>(), vec![100]);
        assert!(store.device("IMEI:1").unwrap().is_some());
        assert!(store.gateway("gw-1").unwrap().is_some());
        assert_eq!(store.forget_history(50).unwrap(), 0);
    });
}

#[test]
fn a_device_attach_sent_again_is_told_from_a_new_bootstrap() {
    each_backend(|store| {
        store.enroll(&device("GW:1"), 0).unwrap();
        store.enroll(&device("GW:2"), 0).unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        for (gateway_id, dev_id) in [("gw-1", "GW:1"), ("gw-2", "GW:2")] {
            store
                .register_gateway(&gateway(gateway_id, dev_id))
                .unwrap();
        }
        // Each new association queues a validation with it; a repeated report none.
        let validation = Followups {
            commands: vec![NewCommand {
                dev_id: "IMEI:1".into(),
                spec: "{}".into(),
                validates: None,
            }],
            events: Vec::new(),
        };
        let attach = |gateway_id: &str, key: Option<&str>, now: i64| {
            store
                .associate(
                    "IMEI:1",
                    gateway_id,
                    "local-bootstrap",
                    key,
                    now,
                    &validation,
                )
                .unwrap()
        };
        assert!(attach("gw-1", Some("100"), 1), "the first report");
        assert!(!attach("gw-1", Some("100"), 2), "the same report again");
        let since = store.association("IMEI:1").unwrap().unwrap().since;
        assert_eq!(since, 1, "a repeated report changes nothing");
        assert!(attach("gw-1", Some("200"), 3), "a new bootstrap");
        assert!(attach("gw-2", Some("200"), 4), "another gateway");
        assert!(attach("gw-1", Some("200"), 5), "and back");
        assert!(attach("gw-1", None, 6), "no key: always new");
        assert!(attach("gw-1", None, 7), "no key: always new");
        let validations = store.claim_pending("IMEI:1", "k", 8).unwrap().len();
        assert_eq!(
            validations, 6,
            "one validation per association that changed"
        );
    });
}

#[test]
fn a_client_nonce_is_consumed_once() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let held = store.device("IMEI:1").unwrap().unwrap().client_nonce;
        assert!(store.swap_client_nonce("IMEI:1", &held, b"next-1").unwrap());
        // A second session that checked its Cred against the same nonce loses.
        assert!(!store.swap_client_nonce("IMEI:1", &held, b"next-2").unwrap());
        let record = store.device("IMEI:1").unwrap().unwrap();
        assert_eq!(record.client_nonce, b"next-1");
        assert!(!store.swap_client_nonce("IMEI:9", b"", b"x").unwrap());
    });
}

#[test]
fn a_session_reads_the_device_s_credentials_and_nonces_as_its_record_holds_them() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let held = store.device("IMEI:1").unwrap().unwrap().client_nonce;
        assert!(store.swap_client_nonce("IMEI:1", &held, b"client").unwrap());
        store
            .record_reported("IMEI:1", &server_nonce_only(b"server"))
            .unwrap();
        // Compared as text: the credentials hold secrets, and so no equality of their own.
        let read = |auth: DeviceAuth| format!("{auth:?}");
        let record = store.device("IMEI:1").unwrap().unwrap();
        let auth = store.session_auth("IMEI:1").unwrap().unwrap();
        assert_eq!(read(auth.clone()), read(record.session_auth()));
        assert_eq!(
            (auth.client.secret.as_str(), auth.server.name.as_str()),
            ("cs", "s")
        );
        assert_eq!(
            (auth.client_nonce.as_slice(), auth.server_nonce.as_slice()),
            (&b"client"[..], &b"server"[..])
        );
        assert!(store.session_auth("IMEI:9").unwrap().is_none());
    });
}

#[test]
fn a_session_s_first_message_records_the_session_only_with_the_nonce_it_swaps() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let held = store.device("IMEI:1").unwrap().unwrap().client_nonce;
        let session = |man: &str, now| {
            let devinfo = BTreeMap::from([("./DevInfo/Man".to_owned(), man.to_owned())]);
            move |store: &dyn Store, used: &[u8], next: &[u8]| {
                let record = SessionRecord {
                    devinfo: &devinfo,
                    encoding: "wbxml",
                    notify_address: Some("https://10.0.0.7/notify"),
                    now,
                };
                store
                    .swap_client_nonce_and_record_session("IMEI:1", used, next, &record)
                    .unwrap()
            }
        };
        assert!(session("Acme", 100)(store, &held, b"next-1"));
        // A replay of the same credentials: the nonce is spent, nothing is recorded.
        assert!(!session("Replayed", 200)(store, &held, b"next-2"));
        let record = store.device("IMEI:1").unwrap().unwrap();
        assert_eq!(record.client_nonce, b"next-1");
        assert_eq!(record.devinfo_leaf("Man"), "Acme");
        assert_eq!((record.sessions, record.last_session_at), (1, Some(100)));
        assert_eq!(
            record.notify_address.as_deref(),
            Some("https://10.0.0.7/notify")
        );
    });
}

#[test]
fn what_a_message_reports_is_kept_in_one_write_and_each_part_alone_leaves_the_other() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let leaf = |uri: &str, value: &str| BTreeMap::from([(uri.to_owned(), value.to_owned())]);
        let fwv = leaf("./DevDetail/FwV", "1.0");
        store
            .record_reported(
                "IMEI:1",
                &Reported {
                    server_nonce: Some(b"first"),
                    devdetail: &fwv,
                },
            )
            .unwrap();
        store
            .record_reported("IMEI:1", &server_nonce_only(b"second"))
            .unwrap();
        store
            .record_reported("IMEI:1", &devdetail_only(&leaf("./DevDetail/HwV", "r3")))
            .unwrap();
        let record = store.device("IMEI:1").unwrap().unwrap();
        assert_eq!(record.server_nonce, b"second");
        let listed = store.devices(&DeviceFilter::default(), None, 10).unwrap();
        assert_eq!(
            listed[0].devdetail,
            BTreeMap::from([
                ("./DevDetail/FwV".to_owned(), "1.0".to_owned()),
                ("./DevDetail/HwV".to_owned(), "r3".to_owned()),
            ])
        );
    });
}

#[test]
fn a_session_counts_and_keeps_its_devinfo_and_a_notify_address_only_when_it_reports_one() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let devinfo = BTreeMap::from([("./DevInfo/Man".to_owned(), "Acme".to_owned())]);
        let url = "https://10.0.0.7:8443/notify";
        store
            .record_session(
                "IMEI:1",
                &SessionRecord {
                    devinfo: &devinfo,
                    encoding: "wbxml",
                    notify_address: Some(url),
                    now: 100,
                },
            )
            .unwrap();
        store
            .record_session(
                "IMEI:1",
                &SessionRecord {
                    devinfo: &devinfo,
                    encoding: "xml",
                    notify_address: None,
                    now: 200,
                },
            )
            .unwrap();
        let record = store.device("IMEI:1").unwrap().unwrap();
        assert_eq!(record.notify_address.as_deref(), Some(url));
        assert_eq!(record.devinfo, devinfo);
        assert_eq!(record.encoding.as_deref(), Some("xml"));
        assert_eq!((record.sessions, record.last_session_at), (2, Some(200)));
    });
}

#[test]
fn devices_with_queued_commands_are_listed_once_and_each_says_so() {
    each_backend(|store| {
        for dev_id in ["IMEI:2", "IMEI:1", "IMEI:3"] {
            store.enroll(&device(dev_id), 0).unwrap();
        }
        store.queue_command("IMEI:2", "{}", 0).unwrap();
        store.queue_command("IMEI:2", "{}", 0).unwrap();
        store.queue_command("IMEI:1", "{}", 0).unwrap();
        let sent = store.queue_command("IMEI:3", "{}", 0).unwrap();
        store.claim_pending("IMEI:3", "s", 0).unwrap();
        assert_eq!(
            store.devices_with_queued_commands().unwrap(),
            ["IMEI:1", "IMEI:2"]
        );
        assert!(store.has_queued_commands("IMEI:1").unwrap());
        assert!(!store.has_queued_commands("IMEI:3").unwrap(), "claimed");
        assert!(!store.has_queued_commands("IMEI:unknown").unwrap());
        store.claim_pending("IMEI:1", "s", 0).unwrap();
        assert!(!store.has_queued_commands("IMEI:1").unwrap());
        store
            .complete(sent, 200, "{}", 1, &entails_nothing)
            .unwrap();
    });
}

#[test]
fn a_sent_command_is_sent_again_in_another_form_once() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let id = store.queue_command("IMEI:1", "{\"a\":1}", 0).unwrap();
        assert!(!store.resend_as(id, "{\"b\":1}").unwrap(), "not sent yet");
        store.claim_pending("IMEI:1", "s1", 0).unwrap();
        assert!(store.resend_as(id, "{\"b\":1}").unwrap());
        let claimed = store.claim_pending("IMEI:1", "s1", 1).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].spec, "{\"b\":1}");
        store.complete(id, 200, "{}", 2, &entails_nothing).unwrap();
        assert!(!store.resend_as(id, "{\"c\":1}").unwrap(), "done");
    });
}

#[test]
fn a_group_of_calls_commits_once_at_its_end_and_a_failed_call_undoes_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_shared(&path, 2).unwrap());
    let reader = rusqlite::Connection::open(&path).unwrap();
    let visible = || -> i64 {
        reader
            .query_row("SELECT count(*) FROM devices", [], |row| row.get(0))
            .unwrap()
    };
    store.enroll(&device("d0"), 1).unwrap();
    let mut seen_inside = None;
    let outcome = store.grouped(|| {
        store.enroll(&device("d1"), 1)?;
        // Taken already: fails, and undoes nothing but itself.
        assert!(matches!(
            store.enroll(&device("d0"), 1),
            Err(StoreError::AlreadyExists(_))
        ));
        store.enroll(&device("d2"), 1)?;
        seen_inside = Some(visible());
        Err(StoreError::EmptyPlan)
    });
    assert!(
        matches!(outcome, Err(StoreError::EmptyPlan)),
        "the work's own error comes back"
    );
    assert_eq!(
        seen_inside,
        Some(1),
        "nothing of the group was committed before its end"
    );
    assert_eq!(
        visible(),
        3,
        "the group's calls that succeeded are committed at its end"
    );
}

#[test]
fn a_queued_command_can_be_cancelled_and_a_sent_one_cannot() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let cancelled = store.queue_command("IMEI:1", "{}", 1).unwrap();
        let sent = store.queue_command("IMEI:1", "{}", 1).unwrap();
        assert_eq!(store.cancel_command(cancelled, 2).unwrap(), Cancelled::Now);
        let claimed = store.claim_pending("IMEI:1", "s1", 3).unwrap();
        assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![sent]);
        assert_eq!(
            store.cancel_command(sent, 4).unwrap(),
            Cancelled::TooLate(CommandState::Sent)
        );
        assert_eq!(
            store.cancel_command(cancelled, 5).unwrap(),
            Cancelled::TooLate(CommandState::Cancelled)
        );
        assert_eq!(store.cancel_command(9_999, 5).unwrap(), Cancelled::NotFound);
        let record = store.command(cancelled).unwrap().unwrap();
        assert_eq!(
            (record.state, record.done_at),
            (CommandState::Cancelled, Some(2))
        );
        assert_eq!(
            store.command(sent).unwrap().unwrap().state,
            CommandState::Sent
        );
    });
}

#[test]
fn an_expired_command_is_never_sent_and_ends_as_expired() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.enroll(&device("IMEI:2"), 0).unwrap();
        let queue = |dev_id: &str, expires_at: Option<i64>| {
            store
                .queue(
                    &QueuedCommand {
                        dev_id,
                        spec: "{}",
                        expires_at,
                    },
                    1,
                )
                .unwrap()
        };
        let lapsed = queue("IMEI:1", Some(10));
        let lasting = queue("IMEI:1", Some(100));
        let forever = queue("IMEI:1", None);
        let claimed = store.claim_pending("IMEI:1", "s1", 10).unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![lasting, forever],
            "at its expiry a command no longer goes out"
        );
        let record = store.command(lapsed).unwrap().unwrap();
        assert_eq!(
            (
                record.state,
                record.session_key,
                record.sent_at,
                record.done_at
            ),
            (CommandState::Expired, None, None, Some(10))
        );
        // The sweep ends those of devices that hold no session.
        let swept = queue("IMEI:2", Some(20));
        let kept = queue("IMEI:2", Some(21));
        assert_eq!(store.expire_commands(20).unwrap(), 1);
        assert_eq!(
            store.command(swept).unwrap().unwrap().state,
            CommandState::Expired
        );
        assert_eq!(
            store.command(kept).unwrap().unwrap().state,
            CommandState::Queued
        );
        assert_eq!(store.expire_commands(20).unwrap(), 0);
        // Ended ones are history: forgotten with the rest.
        assert_eq!(store.cancel_command(kept, 30).unwrap(), Cancelled::Now);
        assert_eq!(store.forget_history(31).unwrap(), 3);
    });
}

#[test]
fn a_device_s_commands_page_newest_first_and_filter_by_state() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.enroll(&device("IMEI:2"), 0).unwrap();
        let ids: Vec<i64> = (0..5)
            .map(|_| store.queue_command("IMEI:1", "{}", 1).unwrap())
            .collect();
        store.queue_command("IMEI:2", "{}", 1).unwrap();
        store.cancel_command(ids[1], 2).unwrap();
        let page = |filter: &CommandFilter, limit| {
            store
                .commands_of("IMEI:1", filter, limit)
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(page(&CommandFilter::default(), 2), vec![ids[4], ids[3]]);
        let older = CommandFilter {
            state: None,
            before: Some(ids[3]),
        };
        assert_eq!(page(&older, 10), vec![ids[2], ids[1], ids[0]]);
        let cancelled = CommandFilter {
            state: Some(CommandState::Cancelled),
            before: None,
        };
        assert_eq!(page(&cancelled, 10), vec![ids[1]]);
    });
}

#[test]
fn a_decommissioned_device_leaves_nothing_but_a_gateway_s_device_stays() {
    each_backend(|store| {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.enroll(&device("GW:1"), 0).unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        let none = Followups::default();
        store
            .associate("IMEI:1", "gw-1", "local", None, 5, &none)
            .unwrap();
        let command = store.queue_command("IMEI:1", "{}", 6).unwrap();

        assert_eq!(
            store.decommission_device("GW:1").unwrap(),
            Decommissioned::IsGateway("gw-1".into())
        );
        assert!(store.device("GW:1").unwrap().is_some());
        let Decommissioned::Removed(Some(association)) =
            store.decommission_device("IMEI:1").unwrap()
        else {
            panic!("the device and its association were there");
        };
        assert_eq!(
            (association.gateway_id.as_str(), association.origin.as_str()),
            ("gw-1", "local")
        );
        assert!(store.device("IMEI:1").unwrap().is_none());
        assert!(store.command(command).unwrap().is_none());
        assert!(store.association("IMEI:1").unwrap().is_none());
        assert_eq!(
            store.decommission_device("IMEI:1").unwrap(),
            Decommissioned::NotFound
        );
    });
}

#[test]
fn a_gateway_with_devices_behind_it_is_removed_only_when_forced() {
    each_backend(|store| {
        store.enroll(&device("GW:1"), 0).unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        store.register_gateway(&gateway("gw-2", "GW:1")).unwrap();
        let none = Followups::default();
        store
            .associate("IMEI:1", "gw-1", "local", None, 5, &none)
            .unwrap();
        store
            .associate("IMEI:9", "gw-1", "local", None, 5, &none)
            .unwrap();
        let fanout = store.create_fanout("gw-1", "[]", "{}", 6).unwrap();
        assert_eq!(
            store.associated_counts(&["gw-1", "gw-2", "gw-3"]).unwrap(),
            BTreeMap::from([("gw-1".into(), 2), ("gw-2".into(), 0), ("gw-3".into(), 0)])
        );

        assert_eq!(
            store.remove_gateway("gw-1", false).unwrap(),
            GatewayRemoval::HasDevices(2)
        );
        assert!(store.gateway("gw-1").unwrap().is_some());
        assert!(store.association("IMEI:1").unwrap().is_some());
        assert_eq!(
            store.remove_gateway("gw-1", true).unwrap(),
            GatewayRemoval::Removed(2)
        );
        assert!(store.gateway("gw-1").unwrap().is_none());
        assert!(store.association("IMEI:1").unwrap().is_none());
        assert!(store.fanout(fanout).unwrap().is_none());
        assert!(
            store.device("IMEI:1").unwrap().is_some(),
            "devices stay enrolled"
        );
        assert_eq!(
            store.remove_gateway("gw-2", false).unwrap(),
            GatewayRemoval::Removed(0)
        );
        assert_eq!(
            store.remove_gateway("gw-2", false).unwrap(),
            GatewayRemoval::NotFound
        );
    });
}

#[test]
fn fanouts_page_newest_first_and_by_gateway() {
    each_backend(|store| {
        store.enroll(&device("GW:1"), 0).unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        store.register_gateway(&gateway("gw-2", "GW:1")).unwrap();
        let a = store.create_fanout("gw-1", "[]", "{}", 1).unwrap();
        let b = store.create_fanout("gw-2", "[]", "{}", 1).unwrap();
        let c = store.create_fanout("gw-1", "[]", "{}", 1).unwrap();
        let ids = |page: Vec<FanoutRecord>| page.iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(store.fanouts(None, None, 2).unwrap()), vec![c, b]);
        assert_eq!(ids(store.fanouts(None, Some(b), 2).unwrap()), vec![a]);
        assert_eq!(
            ids(store.fanouts(Some("gw-1"), None, 10).unwrap()),
            vec![c, a]
        );
    });
}

#[test]
fn an_operator_is_found_by_its_token_digest_only_and_names_are_unique() {
    each_backend(|store| {
        let operator = |name: &str, role, digest: &str| OperatorRecord {
            name: name.into(),
            role,
            token_sha256: digest.into(),
            created_at: 7,
        };
        store
            .add_operator(&operator("bob", Role::Viewer, "d1"))
            .unwrap();
        store
            .add_operator(&operator("alice", Role::Admin, "d2"))
            .unwrap();
        assert!(matches!(
            store.add_operator(&operator("bob", Role::Admin, "d3")),
            Err(StoreError::AlreadyExists(name)) if name == "bob"
        ));
        assert_eq!(
            store.operator_by_token("d1").unwrap(),
            Some(operator("bob", Role::Viewer, "d1")),
            "the refused second bob changed nothing"
        );
        assert_eq!(store.operator_by_token("d3").unwrap(), None);
        let names: Vec<String> = store
            .operators()
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(store.remove_operator("bob").unwrap());
        assert!(!store.remove_operator("bob").unwrap());
        assert_eq!(store.operator_by_token("d1").unwrap(), None);
    });
}

#[test]
fn the_audit_log_pages_newest_first_filters_and_is_forgotten_with_history() {
    each_backend(|store| {
        let entry = |at, operator: Option<&str>, status| AuditEntry {
            at,
            operator: operator.map(str::to_owned),
            role: operator.map(|_| Role::Operator),
            source: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/api/devices?x=1".into(),
            status,
        };
        store.record_audit(&entry(10, Some("bob"), 201)).unwrap();
        store.record_audit(&entry(20, None, 401)).unwrap();
        store.record_audit(&entry(30, Some("bob"), 403)).unwrap();
        let all = store.audit_log(None, 10, &AuditFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|r| r.entry.at).collect::<Vec<_>>(),
            vec![30, 20, 10]
        );
        assert_eq!(all[1].entry, entry(20, None, 401));
        let older = store
            .audit_log(Some(all[0].id), 1, &AuditFilter::default())
            .unwrap();
        assert_eq!(older[0].entry.at, 20);
        let refused = AuditFilter {
            operator: None,
            refused: true,
        };
        let at = |filter| {
            store
                .audit_log(None, 10, &filter)
                .unwrap()
                .iter()
                .map(|r| r.entry.at)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(refused), vec![30, 20]);
        assert_eq!(
            at(AuditFilter {
                operator: Some("bob".into()),
                refused: false
            }),
            vec![30, 10]
        );
        assert_eq!(store.forget_history(25).unwrap(), 2);
        assert_eq!(at(AuditFilter::default()), vec![30]);
    });
}

#[test]
fn devices_are_found_by_what_they_reported_where_they_are_and_their_tags() {
    each_backend(|store| {
        for dev_id in ["IMEI:351", "IMEI:352", "IMEI:361", "GW:1"] {
            store.enroll(&device(dev_id), 0).unwrap();
        }
        let devinfo = |man: &str, model: &str| {
            BTreeMap::from([
                ("./DevInfo/Man".to_owned(), man.to_owned()),
                ("./DevInfo/Mod".to_owned(), model.to_owned()),
            ])
        };
        store
            .record_session(
                "IMEI:351",
                &SessionRecord {
                    devinfo: &devinfo("Acme", "M1"),
                    encoding: "xml",
                    notify_address: None,
                    now: 100,
                },
            )
            .unwrap();
        store
            .record_session(
                "IMEI:352",
                &SessionRecord {
                    devinfo: &devinfo("Acme", "M2"),
                    encoding: "xml",
                    notify_address: None,
                    now: 500,
                },
            )
            .unwrap();
        store
            .record_session(
                "IMEI:361",
                &SessionRecord {
                    devinfo: &devinfo("Other", "M1"),
                    encoding: "xml",
                    notify_address: None,
                    now: 900,
                },
            )
            .unwrap();
        let firmware = |fwv: &str| BTreeMap::from([("./DevDetail/FwV".to_owned(), fwv.to_owned())]);
        store
            .record_reported("IMEI:351", &devdetail_only(&firmware("1.0")))
            .unwrap();
        store
            .record_reported("IMEI:352", &devdetail_only(&firmware("1.0")))
            .unwrap();
        store
            .record_reported("IMEI:352", &devdetail_only(&firmware("2.0")))
            .unwrap();
        store
            .record_reported(
                "IMEI:352",
                &devdetail_only(&BTreeMap::from([(
                    "./DevDetail/HwV".to_owned(),
                    "r3".to_owned(),
                )])),
            )
            .unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        let none = Followups::default();
        store
            .associate("IMEI:352", "gw-1", "local-bootstrap", None, 5, &none)
            .unwrap();
        store
            .associate("IMEI:361", "gw-1", "server-assisted", None, 5, &none)
            .unwrap();

        let found = |filter: DeviceFilter| {
            let devices: Vec<String> = store
                .devices(&filter, None, 100)
                .unwrap()
                .into_iter()
                .map(|d| d.record.dev_id)
                .collect();
            assert_eq!(store.count_devices(&filter).unwrap(), devices.len() as u64);
            devices
        };
        let by = DeviceFilter::default;
        assert_eq!(found(by()).len(), 4);
        assert_eq!(
            found(DeviceFilter {
                dev_id_prefix: Some("IMEI:35".into()),
                ..by()
            }),
            ["IMEI:351", "IMEI:352"]
        );
        assert_eq!(
            found(DeviceFilter {
                manufacturer: Some("Acme".into()),
                model: Some("M1".into()),
                ..by()
            }),
            ["IMEI:351"]
        );
        assert_eq!(
            found(DeviceFilter {
                firmware: Some("2.0".into()),
                ..by()
            }),
            ["IMEI:352"]
        );
        assert_eq!(
            found(DeviceFilter {
                gateway: Some("gw-1".into()),
                ..by()
            }),
            ["IMEI:352", "IMEI:361"]
        );
        assert_eq!(
            found(DeviceFilter {
                origin: Some("server-assisted".into()),
                ..by()
            }),
            ["IMEI:361"]
        );
        assert_eq!(
            found(DeviceFilter {
                seen_since: Some(500),
                ..by()
            }),
            ["IMEI:352", "IMEI:361"]
        );
        assert_eq!(
            found(DeviceFilter {
                unseen_since: Some(500),
                ..by()
            }),
            ["GW:1", "IMEI:351"]
        );
        assert_eq!(
            found(DeviceFilter {
                dev_id_prefix: Some("x' OR 1=1 --".into()),
                ..by()
            }),
            Vec::<String>::new()
        );
        let listed = store
            .devices(
                &DeviceFilter {
                    dev_id: Some("IMEI:352".into()),
                    ..by()
                },
                None,
                1,
            )
            .unwrap();
        assert_eq!(
            listed[0].devdetail,
            BTreeMap::from([
                ("./DevDetail/FwV".to_owned(), "2.0".to_owned()),
                ("./DevDetail/HwV".to_owned(), "r3".to_owned())
            ]),
            "merged: a later read replaces a leaf and keeps the others"
        );

        // Tags, by filter, in bulk; a device's tags come with it, in order.
        let acme = DeviceFilter {
            manufacturer: Some("Acme".into()),
            ..by()
        };
        let tags = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            store
                .tag_devices(&acme, &tags(&["pilot", "eu"]), &[])
                .unwrap(),
            2
        );
        assert_eq!(
            store.tag_devices(&acme, &tags(&["pilot"]), &[]).unwrap(),
            2,
            "twice is once"
        );
        let one = DeviceFilter {
            dev_id: Some("IMEI:351".into()),
            ..by()
        };
        assert_eq!(store.tag_devices(&one, &[], &tags(&["eu"])).unwrap(), 1);
        assert_eq!(
            found(DeviceFilter {
                tag: Some("pilot".into()),
                ..by()
            }),
            ["IMEI:351", "IMEI:352"]
        );
        assert_eq!(
            found(DeviceFilter {
                tag: Some("eu".into()),
                ..by()
            }),
            ["IMEI:352"]
        );
        let listed = store
            .devices(
                &DeviceFilter {
                    dev_id: Some("IMEI:352".into()),
                    ..by()
                },
                None,
                1,
            )
            .unwrap();
        assert_eq!(listed[0].tags, ["eu", "pilot"]);
        assert_eq!(
            store.tags().unwrap(),
            vec![("eu".to_owned(), 1), ("pilot".to_owned(), 2)]
        );
        assert_eq!(
            store
                .tag_devices(
                    &DeviceFilter {
                        dev_id: Some("IMEI:0".into()),
                        ..by()
                    },
                    &tags(&["x"]),
                    &[]
                )
                .unwrap(),
            0
        );
        // A decommissioned device takes its tags with it.
        store.decommission_device("IMEI:352").unwrap();
        assert_eq!(store.tags().unwrap(), vec![("pilot".to_owned(), 1)]);
    });
}

#[test]
fn every_listing_counts_what_its_filter_matches() {
    each_backend(|store| {
        store.enroll(&device("GW:1"), 0).unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        store.register_gateway(&gateway("gw-2", "GW:1")).unwrap();
        let none = Followups::default();
        store
            .associate("IMEI:1", "gw-1", "local-bootstrap", None, 1, &none)
            .unwrap();
        store
            .associate("IMEI:2", "gw-2", "local-bootstrap", None, 1, &none)
            .unwrap();
        let first = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store.queue_command("IMEI:1", "{}", 1).unwrap();
        store.cancel_command(first, 2).unwrap();
        store.create_fanout("gw-1", "[]", "{}", 1).unwrap();
        store.log_event(Some("IMEI:1"), "alert", "{}", 1).unwrap();
        store.log_event(None, "boot", "{}", 1).unwrap();
        for status in [201, 403, 401] {
            let entry = AuditEntry {
                at: 1,
                operator: Some("ann".into()),
                role: Some(Role::Admin),
                source: "::1".into(),
                method: "POST".into(),
                path: "/api/x".into(),
                status,
            };
            store.record_audit(&entry).unwrap();
        }
        let counts = counts::Counts(store.sql());
        assert_eq!(counts.gateways().unwrap(), 2);
        assert_eq!(
            (
                counts.associations(None).unwrap(),
                counts.associations(Some("gw-2")).unwrap()
            ),
            (2, 1)
        );
        assert_eq!(counts.commands("IMEI:1", None).unwrap(), 2);
        assert_eq!(
            counts
                .commands("IMEI:1", Some(CommandState::Cancelled))
                .unwrap(),
            1
        );
        assert_eq!(
            (
                counts.fanouts(None).unwrap(),
                counts.fanouts(Some("gw-2")).unwrap()
            ),
            (1, 0)
        );
        let alerts = EventFilter {
            kind: Some("alert".into()),
            dev_id: None,
        };
        assert_eq!(
            (
                counts.events(&EventFilter::default()).unwrap(),
                counts.events(&alerts).unwrap()
            ),
            (2, 1)
        );
        let refused = AuditFilter {
            operator: None,
            refused: true,
        };
        assert_eq!(
            (
                counts.audit(&AuditFilter::default()).unwrap(),
                counts.audit(&refused).unwrap()
            ),
            (3, 2)
        );
        assert_eq!(counts.campaigns().unwrap(), 0);
        let gauges = counts.gauges().unwrap();
        assert_eq!(
            (
                gauges.devices,
                gauges.queued_commands,
                gauges.gateways,
                gauges.campaigns_running
            ),
            (2, 1, 2, 0)
        );
        assert_eq!(counts.campaign_targets(1, None, None).unwrap(), 0);
    });
}

#[test]
fn a_local_bootstrap_is_restricted_until_its_validation_succeeds_and_devices_are_found_by_trust() {
    each_backend(|store| {
        store.enroll(&device("GW:1"), 0).unwrap();
        store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
        for dev_id in ["IMEI:1", "IMEI:2", "IMEI:3"] {
            store.enroll(&device(dev_id), 0).unwrap();
        }
        let validated_by = |dev_id: &str| Followups {
            commands: vec![NewCommand {
                dev_id: dev_id.into(),
                spec: "{\"op\":\"Replace\"}".into(),
                validates: Some("gw-1".into()),
            }],
            events: Vec::new(),
        };
        store
            .associate(
                "IMEI:1",
                "gw-1",
                "local-bootstrap",
                Some("k1"),
                1,
                &validated_by("IMEI:1"),
            )
            .unwrap();
        store
            .associate(
                "IMEI:2",
                "gw-1",
                "local-bootstrap",
                Some("k2"),
                1,
                &validated_by("IMEI:2"),
            )
            .unwrap();
        store
            .associate(
                "IMEI:3",
                "gw-1",
                "server-assisted",
                None,
                1,
                &Followups::default(),
            )
            .unwrap();
        let trust = |dev_id: &str| store.association(dev_id).unwrap().unwrap().trust;
        assert_eq!(
            (trust("IMEI:1"), trust("IMEI:2"), trust("IMEI:3")),
            ("restricted".into(), "restricted".into(), "full".into())
        );

        let nothing = |_: &_, _: &_, _: Option<&_>, _: Option<&_>| Followups::default();
        let answer = |dev_id: &str, status: u16| {
            let sent = store.claim_pending(dev_id, dev_id, 2).unwrap();
            store
                .complete(sent[0].id, status, "{}", 3, &nothing)
                .unwrap()
        };
        assert!(answer("IMEI:1", 200).validated);
        assert!(!answer("IMEI:2", 404).validated);
        assert_eq!(
            (trust("IMEI:1"), trust("IMEI:2")),
            ("validated".into(), "restricted".into())
        );
        let found = |trust: &str| {
            let filter = DeviceFilter {
                trust: Some(trust.into()),
                ..DeviceFilter::default()
            };
            store
                .devices(&filter, None, 10)
                .unwrap()
                .into_iter()
                .map(|d| d.record.dev_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (found("validated"), found("restricted"), found("full")),
            (
                vec!["IMEI:1".to_owned()],
                vec!["IMEI:2".to_owned()],
                vec!["IMEI:3".to_owned()]
            )
        );
        // A planned validation made through the admin API settles the same way.
        let command = store.queue_command("IMEI:2", "{}", 4).unwrap();
        store.plan_validation(command, "IMEI:2", "gw-1").unwrap();
        assert!(answer("IMEI:2", 200).validated);
        assert_eq!(trust("IMEI:2"), "validated");
        // A new local bootstrap starts restricted again.
        store
            .associate(
                "IMEI:1",
                "gw-1",
                "local-bootstrap",
                Some("k9"),
                5,
                &Followups::default(),
            )
            .unwrap();
        assert_eq!(trust("IMEI:1"), "restricted");
    });
}
