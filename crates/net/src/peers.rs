//! The client's connector: each peer (scheme, host and port) gets a TLS configuration
//! of its own, so that the session tickets one peer hands out are offered to that peer
//! only. rustls files tickets under the host name or address alone, so two services on
//! one address (a gateway's DM service and its Local DM Bootstrap Server, say, or every
//! role of a rehearsal on loopback) took each other's tickets, and no connection to
//! either ever resumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ClientConfig;
use rustls::client::Resumption;
use tower_service::Service;

/// Peers whose tickets a client keeps at once. A client that calls more (a DM
/// Server waking a whole fleet) starts over: its next connections to the peers it
/// forgot are full handshakes, as they would be without tickets.
const PEERS_KEPT: usize = 1024;

/// Tickets kept per peer: enough for the connections a device opens to one server
/// at once.
const TICKETS_PER_PEER: usize = 8;

#[derive(Clone)]
pub(crate) struct PerPeerTls {
    base: Arc<ClientConfig>,
    http: HttpConnector,
    peers: Arc<Mutex<HashMap<String, HttpsConnector<HttpConnector>>>>,
}

impl PerPeerTls {
    pub(crate) fn new(base: Arc<ClientConfig>, http: HttpConnector) -> PerPeerTls {
        PerPeerTls {
            base,
            http,
            peers: Arc::default(),
        }
    }

    /// The connector of the peer `uri` names, made on first use.
    fn connector(&self, uri: &Uri) -> HttpsConnector<HttpConnector> {
        let peer = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        // A poisoned map only means a panic elsewhere; its connectors are whole.
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if peers.len() >= PEERS_KEPT && !peers.contains_key(&peer) {
            peers.clear();
        }
        peers
            .entry(peer)
            .or_insert_with(|| {
                let mut config = (*self.base).clone();
                config.resumption = Resumption::in_memory_sessions(TICKETS_PER_PEER);
                HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(self.http.clone())
            })
            .clone()
    }
}

impl Service<Uri> for PerPeerTls {
    type Response = <HttpsConnector<HttpConnector> as Service<Uri>>::Response;
    type Error = <HttpsConnector<HttpConnector> as Service<Uri>>::Error;
    type Future = <HttpsConnector<HttpConnector> as Service<Uri>>::Future;

    /// Always ready: an `HttpConnector` is, and each call takes a connector of its own.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.connector(&uri).call(uri)
    }
}
