//! What a TLS handshake costs each side in CPU, with the configurations every gwmo
//! role uses (`TlsSettings::acceptor`, `TlsSettings::client`) and a certificate from
//! the development CA, both sides in memory: no sockets, no kernel, no HTTP. The
//! floor under a DM message on a new connection: a server pays `server/full` for every
//! device that connects for the first time and `client/full` for every package 0 it
//! posts to a device it never called before.
//! `cargo bench -p gwmo-net --bench handshake`

#![allow(clippy::unwrap_used, clippy::expect_used)] // in benchmarks, a failed unwrap is a failed run

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, ServerConfig, ServerConnection,
};

/// Time spent by each side of one handshake, and which kind it was.
#[derive(Default)]
struct Spent {
    client: Duration,
    server: Duration,
    kind: Option<HandshakeKind>,
}

/// Moves whatever `from` has to send into `to` and lets `to` process it; the time
/// `from` took to write is added to `from_time`, the time `to` took to read and
/// process it to `to_time`.
fn deliver(
    from: &mut Connection,
    to: &mut Connection,
    from_time: &mut Duration,
    to_time: &mut Duration,
) {
    let mut wire = Vec::new();
    let started = Instant::now();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    *from_time += started.elapsed();
    if wire.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut unread = &wire[..];
    while !unread.is_empty() {
        to.read_tls(&mut unread).unwrap();
        to.process_new_packets().unwrap();
    }
    *to_time += started.elapsed();
}

/// Runs one handshake to its end, the server's session tickets delivered too (a
/// client keeps them for its next connection).
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Spent {
    let mut spent = Spent::default();
    let started = Instant::now();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = Connection::from(ClientConnection::new(client.clone(), name).unwrap());
    spent.client += started.elapsed();
    let started = Instant::now();
    let mut server = Connection::from(ServerConnection::new(server.clone()).unwrap());
    spent.server += started.elapsed();
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        deliver(
            &mut client,
            &mut server,
            &mut spent.client,
            &mut spent.server,
        );
        deliver(
            &mut server,
            &mut client,
            &mut spent.server,
            &mut spent.client,
        );
    }
    spent.kind = server.handshake_kind();
    spent
}

/// The configurations gwmo's roles use, with a certificate for `localhost` from a
/// development CA made for the run.
fn configurations() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let dir = tempfile::tempdir().unwrap();
    let settings = gwmo_net::certs::issue(dir.path(), "server", &["localhost".to_owned()])
        .unwrap()
        .tls_settings();
    let acceptor = settings.acceptor("benchmark").unwrap().unwrap();
    let client = settings.client().unwrap();
    (client.rustls_config().clone(), acceptor.config().clone())
}

/// Sums one side's share of `iterations` handshakes, each made by `next`, which must
/// all be of the `expected` kind (a benchmark of resumptions that fell back to full
/// handshakes would report the wrong cost).
fn side_of(
    iterations: u64,
    expected: HandshakeKind,
    mut next: impl FnMut() -> Spent,
    side: fn(&Spent) -> Duration,
) -> Duration {
    (0..iterations)
        .map(|_| {
            let spent = next();
            assert_eq!(spent.kind, Some(expected));
            side(&spent)
        })
        .sum()
}

fn handshakes(c: &mut Criterion) {
    let (client, server) = configurations();
    // A client without a resumption store: every handshake is a full one.
    let mut never_resumes = (*client).clone();
    never_resumes.resumption = rustls::client::Resumption::disabled();
    let never_resumes = Arc::new(never_resumes);
    // A client that connected once: every later handshake resumes with a ticket.
    let resumes = client;
    handshake(&resumes, &server);

    let mut group = c.benchmark_group("tls13");
    let server_side: fn(&Spent) -> Duration = |spent| spent.server;
    let client_side: fn(&Spent) -> Duration = |spent| spent.client;
    for (kind, client, name) in [
        (HandshakeKind::Full, &never_resumes, "full"),
        (HandshakeKind::Resumed, &resumes, "resumed"),
    ] {
        for (side, of_side) in [("server", server_side), ("client", client_side)] {
            group.bench_function(format!("{side}/{name}"), |b| {
                b.iter_custom(|n| side_of(n, kind, || handshake(client, &server), of_side))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
