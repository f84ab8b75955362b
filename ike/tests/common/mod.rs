//! Helpers shared by the exchange tests.
#![allow(dead_code)]

use ike::testing::{test_config, Pair};

pub fn established(p: &Pair) -> bool {
    p.a.is_established() && p.b.is_established()
}

pub fn pair_with(
    f: impl FnOnce(&mut ike::config::PeerConfig, &mut ike::config::PeerConfig),
) -> Pair {
    let mut a = test_config("a-to-b", "a.test", "b.test", "secret-psk-123", true);
    let mut b = test_config("b-from-a", "b.test", "a.test", "secret-psk-123", false);
    f(&mut a, &mut b);
    Pair::new(7, a, b)
}

pub fn up(p: &mut Pair) {
    p.initiate(&["net"]);
    p.drive();
    assert!(
        established(p),
        "not established: a={:?} b={:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
}
