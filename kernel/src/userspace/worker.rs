//! One worker thread of the userspace dataplane: a TUN queue, per-worker
//! buffers, its share of the UDP/4500 sockets.
//!
//! Outbound: TUN (GSO super-packets split by tun-rs) → 5-tuple → policy →
//! encapsulate → `sendmmsg`. Inbound: `recvmmsg` → IKE (non-ESP marker) to
//! the daemon, keepalives dropped, ESP by SPI → replay check → decrypt →
//! inner packet checked against the SA's selectors → TUN (TCP segments
//! coalesced by tun-rs GRO). Nothing is allocated per packet.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::dataplane::{sock_pos, Shared, Sock, TX_CAP};
use super::esp::{self, classify_udp4500, Udp4500};
use super::ip;
use super::spd::Action;
use super::table::{lock, OutSa};
use super::udp;

/// Receive buffer: a GRO-coalesced run of datagrams (at most 64 KiB).
const RX_GRO_CAP: usize = 65536;
/// Room in front of a decrypted packet (its ESP header) that tun-rs uses for
/// the virtio header when offload is on.
const RX_OFFSET: usize = esp::PREFIX_LEN;

/// One worker: a TUN queue, per-worker buffers, the shared sockets.
pub(super) struct Worker {
    sh: Arc<Shared>,
    tun: tun_rs::SyncDevice,
    offload: bool,
    /// TUN receive: the raw (possibly GSO) frame and the split packets.
    tun_raw: Vec<u8>,
    tun_bufs: Vec<Vec<u8>>,
    tun_sizes: Vec<usize>,
    /// Encapsulated packets and their destinations, per batch.
    tx: Vec<Vec<u8>>,
    tx_dst: Vec<SocketAddr>,
    tx_sock: Vec<usize>,
    /// UDP receive buffers (each may hold GRO-coalesced datagrams), their
    /// sources and segment sizes.
    rx: Vec<Vec<u8>>,
    rx_from: Vec<Option<SocketAddr>>,
    rx_segs: Vec<usize>,
    /// Decrypted packets bound for the TUN device, `RX_OFFSET` bytes in.
    tun_out: Vec<Vec<u8>>,
    /// UDP segmentation offload on send (off after the kernel refuses it).
    gso: bool,
    gro: tun_rs::GROTable,
    socks: Vec<Arc<Sock>>,
    socks_gen: u64,
    /// This worker reads the sockets whose index is `id` modulo `of`: one
    /// reader per socket keeps every flow's packets in order (two readers
    /// of one socket would reorder TCP segments).
    id: usize,
    of: usize,
    /// `pfds[1 + k]` is socket `polled[k]`.
    polled: Vec<usize>,
}

impl Worker {
    pub(super) fn new(sh: Arc<Shared>, tun: tun_rs::SyncDevice, id: usize, of: usize) -> Worker {
        let n = tun_rs::IDEAL_BATCH_SIZE;
        let offload = sh.opts.offload;
        Worker {
            sh,
            tun,
            offload,
            tun_raw: vec![0; tun_rs::VIRTIO_NET_HDR_LEN + 65535],
            tun_bufs: (0..n).map(|_| vec![0; 2048]).collect(),
            tun_sizes: vec![0; n],
            tx: (0..n).map(|_| Vec::with_capacity(TX_CAP)).collect(),
            tx_dst: Vec::with_capacity(n),
            tx_sock: Vec::with_capacity(n),
            rx: (0..udp::BATCH)
                .map(|_| Vec::with_capacity(RX_GRO_CAP))
                .collect(),
            rx_from: vec![None; udp::BATCH],
            rx_segs: vec![0; udp::BATCH],
            // TUN GRO coalesces into the first buffer of a flow: room for
            // 64 KiB.
            tun_out: (0..n)
                .map(|_| Vec::with_capacity(65536 + RX_OFFSET))
                .collect(),
            gso: true,
            gro: tun_rs::GROTable::default(),
            socks: Vec::new(),
            socks_gen: u64::MAX,
            id,
            of,
            polled: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        let tun_fd = self.tun.as_raw_fd();
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        while !self.sh.stop.load(Ordering::Relaxed) {
            let g = self.sh.socks_gen.load(Ordering::SeqCst);
            if g != self.socks_gen {
                self.socks_gen = g;
                self.socks = self
                    .sh
                    .socks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                pfds.clear();
                pfds.push(libc::pollfd {
                    fd: tun_fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                self.polled.clear();
                for (k, s) in self.socks.iter().enumerate() {
                    if k % self.of != self.id {
                        continue;
                    }
                    self.polled.push(k);
                    pfds.push(libc::pollfd {
                        fd: s.sock.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            // SAFETY: `pfds` is a valid array of pollfd.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
            if r <= 0 {
                continue;
            }
            if pfds[0].revents != 0 {
                self.drain_tun();
            }
            for k in 0..self.polled.len() {
                if pfds[k + 1].revents != 0 {
                    self.drain_udp(self.polled[k]);
                }
            }
        }
    }

    /// Outbound: drain the TUN queue (bounded rounds, then poll again).
    fn drain_tun(&mut self) {
        for _ in 0..16 {
            let n = if self.offload {
                match self.tun.recv_multiple(
                    &mut self.tun_raw,
                    &mut self.tun_bufs,
                    &mut self.tun_sizes,
                    0,
                ) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        self.sh.stats.tun_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("TUN read: {e}");
                        return;
                    }
                }
            } else {
                match self.tun.recv(&mut self.tun_bufs[0]) {
                    Ok(n) => {
                        self.tun_sizes[0] = n;
                        1
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        self.sh.stats.tun_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("TUN read: {e}");
                        return;
                    }
                }
            };
            self.encapsulate_batch(n);
        }
    }

    fn encapsulate_batch(&mut self, n: usize) {
        self.tx_dst.clear();
        self.tx_sock.clear();
        let sh = self.sh.clone();
        let now = Instant::now();
        {
            let t = sh.read();
            let now_ms = t.ms(now);
            let mut last: Option<(u32, Arc<OutSa>, usize)> = None;
            for i in 0..n {
                let pkt = &self.tun_bufs[i][..self.tun_sizes[i]];
                let Ok(tuple) = ip::parse_five_tuple(pkt) else {
                    sh.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let reqid = match t.policy(&tuple) {
                    Some(Action::Protect { reqid }) => *reqid,
                    Some(Action::Trap { owner, child }) => {
                        sh.trapped(owner, child, pkt, now);
                        continue;
                    }
                    Some(Action::Discard) | Some(Action::Bypass) | None => {
                        sh.stats.no_policy.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                if last.as_ref().is_none_or(|(r, _, _)| *r != reqid) {
                    let Some(out) = t.outbound(reqid) else {
                        sh.stats.no_sa.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let Some(si) = sock_pos(&self.socks, out.local) else {
                        sh.stats.no_sa.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    last = Some((reqid, out.clone(), si));
                }
                let Some((_, out, si)) = &last else { continue };
                let k = self.tx_dst.len();
                let buf = &mut self.tx[k];
                buf.clear();
                match lock(&out.sa).encapsulate(pkt, buf) {
                    Ok(_) => {}
                    Err(esp::EspError::TransportFragment) => {
                        sh.stats.transport_fragments.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => {
                        sh.stats.esp_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                out.last_tx_ms.store(now_ms, Ordering::Relaxed);
                self.tx_dst.push(out.remote);
                self.tx_sock.push(*si);
            }
            // Sent under the read lock: an SA removed (and its DELETE
            // answered) after this batch was encrypted would otherwise see
            // the batch arrive at the peer after the DELETE.
            self.send_tx();
        }
    }

    /// Sends the batch, in runs of the same socket.
    fn send_tx(&mut self) {
        let total = self.tx_dst.len();
        let mut start = 0;
        while start < total {
            let si = self.tx_sock[start];
            let mut end = start + 1;
            while end < total && self.tx_sock[end] == si {
                end += 1;
            }
            let fd = self.socks[si].sock.as_raw_fd();
            let (pkts, dsts) = (&self.tx[start..end], &self.tx_dst[start..end]);
            let sent = if self.gso {
                match udp::send_batch_gso(fd, pkts, dsts) {
                    Ok(n) => n,
                    Err(e) => {
                        // Resending duplicates at worst, which the peer's
                        // replay window drops.
                        tracing::info!(
                            "UDP segmentation offload refused ({e}); sending datagrams one by one"
                        );
                        self.gso = false;
                        udp::send_batch(fd, pkts, dsts)
                    }
                }
            } else {
                udp::send_batch(fd, pkts, dsts)
            };
            self.sh
                .stats
                .tx_packets
                .fetch_add(sent as u64, Ordering::Relaxed);
            self.sh
                .stats
                .send_drops
                .fetch_add((end - start - sent) as u64, Ordering::Relaxed);
            start = end;
        }
    }

    /// Inbound: drain one UDP/4500 socket (bounded rounds).
    fn drain_udp(&mut self, si: usize) {
        let sock = self.socks[si].clone();
        let fd: RawFd = sock.sock.as_raw_fd();
        for _ in 0..16 {
            let r = udp::recv_batch_gro(
                fd,
                &mut self.rx,
                RX_GRO_CAP,
                &mut self.rx_from,
                &mut self.rx_segs,
            );
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!("recvmmsg on {}: {e}", sock.local);
                    return;
                }
            };
            self.decapsulate_batch(&sock, n);
            if n < udp::BATCH {
                return;
            }
        }
    }

    /// Decrypts every datagram (every GRO segment) of the batch and writes
    /// the inner packets to the TUN device in batches.
    fn decapsulate_batch(&mut self, sock: &Sock, n: usize) {
        let sh = self.sh.clone();
        let t = sh.read();
        let mut k = 0;
        for i in 0..n {
            let Some(from) = self.rx_from[i] else {
                continue;
            };
            let seg = self.rx_segs[i].max(1);
            let len = self.rx[i].len();
            let mut off = 0;
            while off < len {
                let end = (off + seg).min(len);
                let d = &mut self.rx[i][off..end];
                off = end;
                let spi = match classify_udp4500(d) {
                    Udp4500::Keepalive => {
                        sh.stats.keepalives_rx.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Udp4500::Ike => {
                        (sock.ike)(sock.local, from, d);
                        continue;
                    }
                    Udp4500::Invalid => {
                        sh.stats.invalid.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Udp4500::Esp(spi) => spi,
                };
                let Some(inb) = t.inbound(spi) else {
                    let n = sh.stats.unknown_spi.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() {
                        tracing::debug!(
                            "ESP for unknown SPI {spi:08x} from {from} ({} so far)",
                            n + 1
                        );
                    }
                    continue;
                };
                let mut sa = lock(&inb.sa);
                match sa.decapsulate(d) {
                    Ok(p) if p.is_dummy() => {}
                    Ok(p) => {
                        if inb.pending_out.load(Ordering::Relaxed)
                            && inb.pending_out.swap(false, Ordering::SeqCst)
                        {
                            lock(&sh.promote).push((inb.reqid, spi));
                        }
                        let out = &mut self.tun_out[k];
                        out.clear();
                        out.resize(RX_OFFSET, 0);
                        match inb.transport_to {
                            None => out.extend_from_slice(p.payload),
                            Some(to) => {
                                let ok = esp::transport_rebuild(
                                    out,
                                    from.ip(),
                                    to,
                                    p.next_header,
                                    p.payload,
                                );
                                if !ok {
                                    sh.stats.invalid.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                            }
                        }
                        if !inb.allows(&out[RX_OFFSET..]) {
                            inb.selector_drops.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        k += 1;
                        sh.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                        if let Some(c) = sh.stats.rx_by_worker.get(self.id) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Counted by cause in the SA's statistics.
                    Err(_) => {}
                }
                drop(sa);
                if k == self.tun_out.len() {
                    self.write_tun(k);
                    k = 0;
                }
            }
        }
        drop(t);
        if k > 0 {
            self.write_tun(k);
        }
        sh.promote_pending();
    }

    /// Writes `tun_out[..k]` to the TUN queue (coalesced by GRO).
    fn write_tun(&mut self, k: usize) {
        let r = if self.offload {
            self.tun
                .send_multiple(&mut self.gro, &mut self.tun_out[..k], RX_OFFSET)
                .map(|_| ())
        } else {
            let mut r = Ok(());
            for b in &self.tun_out[..k] {
                if let Err(e) = self.tun.send(&b[RX_OFFSET..]) {
                    r = Err(e);
                }
            }
            r
        };
        if let Err(e) = r {
            self.sh.stats.tun_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TUN write: {e}");
        }
    }
}
