//! Real mDNS between an advertiser and a browser, inside a network namespace this
//! test makes for its own thread (so nothing it sends can leave the machine).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gwmo_discovery::{GATEWAY_SERVICE, advertise, browse, private_network};

#[test]
fn a_gateway_advertised_on_loopback_is_found_with_its_server_id() {
    if let Err(reason) = private_network() {
        eprintln!("NOT RUN: real mDNS needs a private network namespace ({reason})");
        return;
    }
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let _gw1 = advertise(GATEWAY_SERVICE, "lo", "gw-1", localhost, 18090).unwrap();
    let _gw2 = advertise(GATEWAY_SERVICE, "lo", "gw-2", localhost, 18091).unwrap();
    let found = browse(GATEWAY_SERVICE, "lo", Duration::from_secs(3)).unwrap();
    let ids: Vec<&str> = found.iter().map(|f| f.server_id.as_str()).collect();
    assert_eq!(ids, vec!["gw-1", "gw-2"], "{found:?}");
    assert_eq!(found[0].port, 18090);
    assert!(found[0].addresses.contains(&localhost));
}

#[test]
fn nothing_is_found_where_nothing_is_advertised() {
    if let Err(reason) = private_network() {
        eprintln!("NOT RUN: real mDNS needs a private network namespace ({reason})");
        return;
    }
    let found = browse(GATEWAY_SERVICE, "lo", Duration::from_millis(800)).unwrap();
    assert!(found.is_empty(), "{found:?}");
}
