//! Prints an IKEv2 conversation between two in-process endpoints driven by
//! `ike::testing::Pair`: IKE_SA_INIT, IKE_AUTH with a CHILD SA, a CHILD
//! rekey, an IKE rekey and a delete, with one lost message on the way.
//!
//! `cargo run -p ike --example handshake`

use ike::sa::{Command, Event};
use ike::testing::{Dir, Pair, Side};
use ike::wire::ExchangeType;

fn show(label: &str, side: &mut Side, from: &mut usize) {
    for e in &side.events[*from..] {
        let line = match e {
            Event::Established {
                name,
                proposal,
                remote_id,
                ..
            } => format!(
                "IKE SA '{name}' established with '{}' using {}",
                ike::config::display_identity(remote_id),
                proposal.describe()
            ),
            Event::ChildReady(c) => format!(
                "CHILD SA '{}' ready: SPIs {:08x}_i {:08x}_o, {} {}",
                c.name,
                c.spi_in,
                c.spi_out,
                c.proposal.describe(),
                c.local_ts
                    .iter()
                    .chain(&c.remote_ts)
                    .map(|t| ike::ts::Display(t).to_string())
                    .collect::<Vec<_>>()
                    .join(" === ")
            ),
            Event::ChildDeleted {
                name,
                spi_in,
                reason,
                ..
            } => format!("CHILD SA '{name}' {spi_in:08x}_i deleted: {reason}"),
            Event::IkeRekeyed { spi_i, spi_r, .. } => {
                format!("IKE SA rekeyed: new SPIs {spi_i:016x}_i {spi_r:016x}_r")
            }
            Event::Retired { spi_i, .. } => format!("old IKE SA {spi_i:016x}_i retired"),
            Event::Closed { reason, .. } => format!("IKE SA closed: {reason}"),
            other => format!("{other:?}"),
        };
        println!("  [{label}] {line}");
    }
    *from = side.events.len();
}

fn main() {
    let mut p = Pair::default_with_seed(2026);
    let (mut ea, mut eb) = (0, 0);
    println!("initiator a.test (198.18.0.1) <-> responder b.test (198.18.0.2), 10 ms latency");
    println!("* IKE_SA_INIT + IKE_AUTH; the first IKE_AUTH response is lost");
    p.drop_next(Dir::BtoA, ExchangeType::IKE_AUTH, true, 1);
    p.initiate(&["net"]);
    let t = p.drive();
    show("a", &mut p.a, &mut ea);
    show("b", &mut p.b, &mut eb);
    println!("  took {t:?} of simulated time (one retransmission)");

    println!("* CHILD SA rekey by the responder");
    let spi = *p.b.children.keys().next().unwrap();
    p.command(Dir::BtoA, Command::RekeyChild { spi_in: spi });
    p.drive();
    show("a", &mut p.a, &mut ea);
    show("b", &mut p.b, &mut eb);

    println!("* IKE SA rekey by the initiator");
    p.command(Dir::AtoB, Command::RekeyIke);
    p.drive();
    show("a", &mut p.a, &mut ea);
    show("b", &mut p.b, &mut eb);

    println!("* delete by the initiator");
    p.command(Dir::AtoB, Command::Delete);
    p.drive();
    show("a", &mut p.a, &mut ea);
    show("b", &mut p.b, &mut eb);
    println!(
        "datagrams: {} a->b, {} b->a, {} dropped",
        p.delivered[&Dir::AtoB],
        p.delivered[&Dir::BtoA],
        p.dropped.values().sum::<u32>()
    );
}
