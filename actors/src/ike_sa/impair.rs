//! Fault injection on one IKE SA's datagrams (`vpnd --impair`,
//! `vpnctl impair`): loss, duplication, corruption, delay, a stall.

use std::time::Duration;

use ike::sa::Transmit;

use crate::ctx::CtxRef;

/// Fault injection (`vpnd --impair`, `vpnctl impair`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impair {
    pub drop_inbound_pct: u32,
    pub drop_outbound_pct: u32,
    pub duplicate_pct: u32,
    pub corrupt_pct: u32,
    pub delay_ms: u32,
    pub stall: bool,
}

pub(super) fn roll(pct: u32) -> bool {
    pct > 0 && runtime::backoff::rand01() * 100.0 < pct as f64
}

/// Send one datagram through the connection's impairments.
pub(super) async fn send_impaired(ctx: &CtxRef, impair: &Impair, t: Transmit) {
    if impair.stall || roll(impair.drop_outbound_pct) {
        return;
    }
    let mut t = t;
    if roll(impair.corrupt_pct) && !t.data.is_empty() {
        let i = (runtime::backoff::rand01() * t.data.len() as f64) as usize % t.data.len();
        t.data[i] ^= 0x40;
    }
    let copies = if roll(impair.duplicate_pct) { 2 } else { 1 };
    if impair.delay_ms > 0 {
        let ctx = ctx.clone();
        let delay = Duration::from_millis(impair.delay_ms as u64);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for _ in 0..copies {
                ctx.sockets.send(&t).await;
            }
        });
        return;
    }
    for _ in 0..copies {
        ctx.sockets.send(&t).await;
    }
}

/// A `vpnctl impair` kind: `Some` impairment of the IKE SA's datagrams,
/// `None` for the kinds handled elsewhere (`panic`, `kernel-fail`, ...).
pub fn parse_impair(kind: &str) -> Result<Option<Impair>, String> {
    let (k, arg) = match kind.split_once('=') {
        Some((k, a)) => (k, Some(a)),
        None => (kind, None),
    };
    let pct = |a: Option<&str>| -> Result<u32, String> {
        let v: u32 = a
            .ok_or_else(|| format!("impairment '{k}' needs =PCT"))?
            .trim_end_matches('%')
            .parse()
            .map_err(|_| {
                format!(
                    "impairment '{k}': '{}' is not a percentage",
                    a.unwrap_or("")
                )
            })?;
        if v > 100 {
            return Err(format!("impairment '{k}': {v} is over 100%"));
        }
        Ok(v)
    };
    Ok(Some(match k {
        "drop-inbound" => Impair {
            drop_inbound_pct: pct(arg)?,
            ..Impair::default()
        },
        "drop-outbound" => Impair {
            drop_outbound_pct: pct(arg)?,
            ..Impair::default()
        },
        "duplicate" => Impair {
            duplicate_pct: pct(arg)?,
            ..Impair::default()
        },
        "corrupt" => Impair {
            corrupt_pct: pct(arg)?,
            ..Impair::default()
        },
        "delay" => Impair {
            delay_ms: arg
                .ok_or("impairment 'delay' needs =MS")?
                .trim_end_matches("ms")
                .parse()
                .map_err(|_| "impairment 'delay': not a number of milliseconds".to_string())?,
            ..Impair::default()
        },
        "stall" => Impair {
            stall: true,
            ..Impair::default()
        },
        "clear" => Impair::default(),
        "panic" | "panic-connection" | "kernel-fail" | "acquire" => return Ok(None),
        other => {
            return Err(format!(
                "unknown impairment '{other}': expected drop-inbound=PCT, drop-outbound=PCT, duplicate=PCT, delay=MS, corrupt=PCT, stall, panic, panic-connection, kernel-fail or clear"
            ))
        }
    }))
}
