//! The XFRM netlink socket, owned by one I/O thread.
//!
//! Callers hand the thread a batch of requests and wait for its answers.
//! The thread takes every batch that is waiting, writes all their messages
//! in one `sendmsg` (the kernel handles them in order), then reads the
//! answers, so a thousand CHILD SAs installed at start cost a handful of
//! system calls, not a round trip each. A wait for the kernel is bounded.
//!
//! The parser of `netlink-packet-xfrm` can panic on short input; every
//! parse runs under `catch_unwind`, and a panic is a failed answer, not a
//! dead thread.
//!
//! A second thread listens to the ACQUIRE and EXPIRE multicast groups and
//! hands each parsed event to a callback.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_xfrm::XfrmMessage;
use netlink_sys::{protocols::NETLINK_XFRM, Socket, SocketAddr};

/// How long a caller waits for the kernel's answer to a batch.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Most messages written in one `sendmsg`.
const MAX_BATCH: usize = 256;

/// One request: a message, and whether the kernel answers with data (a
/// state, a dump) rather than an acknowledgement.
#[derive(Clone, Debug)]
pub enum Request {
    /// Acknowledged (add, update, delete).
    Ack(XfrmMessage),
    /// Answered with one message (ALLOCSPI, GETSA).
    Get(XfrmMessage),
    /// Answered with many, until NLMSG_DONE (GETSA/GETPOLICY dumps).
    Dump(XfrmMessage),
}

/// The kernel's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Done,
    Data(Vec<XfrmMessage>),
    Error(KernelError),
}

/// An error the kernel returned (or the socket failed with).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KernelError {
    /// The errno (positive), 0 when the failure is not the kernel's.
    pub errno: i32,
    pub message: String,
}

impl KernelError {
    fn os(errno: i32) -> KernelError {
        KernelError {
            errno,
            message: std::io::Error::from_raw_os_error(errno).to_string(),
        }
    }

    fn local(message: impl Into<String>) -> KernelError {
        KernelError {
            errno: 0,
            message: message.into(),
        }
    }
}

struct Batch {
    requests: Vec<Request>,
    reply: mpsc::SyncSender<Vec<Answer>>,
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct Netlink {
    tx: mpsc::SyncSender<Batch>,
}

impl Netlink {
    /// Opens the socket and starts its thread.
    pub fn open() -> std::io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_XFRM)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_rx_buf_sz(4 << 20);
        let (tx, rx) = mpsc::sync_channel::<Batch>(1024);
        std::thread::Builder::new()
            .name("xfrm-netlink".into())
            .spawn(move || Worker { sock, seq: 0 }.run(rx))?;
        Ok(Netlink { tx })
    }

    /// Sends `requests` and waits (bounded) for their answers, in order.
    /// On a multi-threaded Tokio runtime the wait moves the other tasks off
    /// this thread (`block_in_place`), so the runtime keeps running.
    pub fn run(&self, requests: Vec<Request>) -> Vec<Answer> {
        let n = requests.len();
        let (reply, answers) = mpsc::sync_channel(1);
        let failed = |why: &str| vec![Answer::Error(KernelError::local(why)); n];
        if self.tx.send(Batch { requests, reply }).is_err() {
            return failed("netlink thread is gone");
        }
        let wait = || answers.recv_timeout(ANSWER_TIMEOUT);
        let got = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        };
        got.unwrap_or_else(|_| failed("no answer from the kernel within 5 s"))
    }

    /// One request.
    pub fn one(&self, request: Request) -> Answer {
        self.run(vec![request])
            .pop()
            .unwrap_or(Answer::Error(KernelError::local("no answer")))
    }
}

struct Worker {
    sock: Socket,
    seq: u32,
}

struct Pending {
    /// Index into the flattened answers.
    slot: usize,
    dump: bool,
    data: Vec<XfrmMessage>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Batch>) {
        while let Ok(first) = rx.recv() {
            let mut batches = vec![first];
            let mut count = batches[0].requests.len();
            while count < MAX_BATCH {
                match rx.try_recv() {
                    Ok(b) => {
                        count += b.requests.len();
                        batches.push(b);
                    }
                    Err(_) => break,
                }
            }
            let lens: Vec<usize> = batches.iter().map(|b| b.requests.len()).collect();
            let requests: Vec<Request> = batches
                .iter_mut()
                .flat_map(|b| std::mem::take(&mut b.requests))
                .collect();
            let mut answers = self.exchange(requests);
            for (b, len) in batches.into_iter().zip(lens) {
                let rest = answers.split_off(len.min(answers.len()));
                let mine = std::mem::replace(&mut answers, rest);
                let _ = b.reply.send(mine);
            }
        }
    }

    /// Writes every request, then reads until each has its answer.
    fn exchange(&mut self, requests: Vec<Request>) -> Vec<Answer> {
        let mut answers = vec![Answer::Done; requests.len()];
        let mut pending: HashMap<u32, Pending> = HashMap::new();
        let mut out = Vec::new();
        for (slot, r) in requests.into_iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            let (msg, flags, dump) = match r {
                Request::Ack(m) => (m, NLM_F_REQUEST | NLM_F_ACK, false),
                Request::Get(m) => (m, NLM_F_REQUEST, false),
                Request::Dump(m) => (m, NLM_F_REQUEST | NLM_F_DUMP, true),
            };
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            header.sequence_number = self.seq;
            let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
            nl.finalize();
            let start = out.len();
            out.resize(start + nl.buffer_len(), 0);
            nl.serialize(&mut out[start..]);
            pending.insert(
                self.seq,
                Pending {
                    slot,
                    dump,
                    data: Vec::new(),
                },
            );
            // A dump must be alone in its write: the kernel answers it from
            // the socket's receive path, after the messages before it.
            if dump || out.len() > 1 << 20 {
                self.flush(&mut out, &mut pending, &mut answers);
            }
        }
        self.flush(&mut out, &mut pending, &mut answers);
        answers
    }

    fn flush(
        &mut self,
        out: &mut Vec<u8>,
        pending: &mut HashMap<u32, Pending>,
        answers: &mut [Answer],
    ) {
        if out.is_empty() {
            return;
        }
        if let Err(e) = self.sock.send(out, 0) {
            let err = KernelError::local(format!("netlink send: {e}"));
            for p in pending.drain() {
                answers[p.1.slot] = Answer::Error(err.clone());
            }
            out.clear();
            return;
        }
        out.clear();
        let mut buf = vec![0u8; 1 << 16];
        while !pending.is_empty() {
            let n = match self.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    for p in pending.drain() {
                        answers[p.1.slot] = Answer::Error(e.clone());
                    }
                    return;
                }
            };
            let mut at = 0;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                if len < 16 || at + len > n {
                    break;
                }
                let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
                let one = &buf[at..at + len];
                at += (len + 3) & !3;
                let Some(p) = pending.get_mut(&seq) else {
                    continue;
                };
                match parse(one) {
                    Err(e) => {
                        answers[p.slot] = Answer::Error(e);
                        pending.remove(&seq);
                    }
                    Ok(NetlinkPayload::Error(e)) => {
                        answers[p.slot] = match e.code {
                            None => Answer::Done,
                            Some(c) => {
                                let mut err = KernelError::os(-c.get());
                                if let Some(m) = extack_message(one) {
                                    err.message = format!("{m} ({})", err.message);
                                }
                                Answer::Error(err)
                            }
                        };
                        pending.remove(&seq);
                    }
                    Ok(NetlinkPayload::Done(_)) => {
                        answers[p.slot] = Answer::Data(std::mem::take(&mut p.data));
                        pending.remove(&seq);
                    }
                    Ok(NetlinkPayload::InnerMessage(m)) => {
                        p.data.push(m);
                        if !p.dump {
                            answers[p.slot] = Answer::Data(std::mem::take(&mut p.data));
                            pending.remove(&seq);
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
    }

    fn recv(&self, buf: &mut Vec<u8>) -> Result<usize, KernelError> {
        // Bounded: a kernel that never answers fails the batch.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.sock);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ANSWER_TIMEOUT.as_millis() as i32) };
        if r <= 0 {
            return Err(KernelError::local("netlink: the kernel did not answer"));
        }
        buf.clear();
        self.sock
            .recv(buf, 0)
            .map_err(|e| KernelError::local(format!("netlink receive: {e}")))
    }
}

/// The kernel's own explanation in an error answer (the extended ACK's
/// NLMSGERR_ATTR_MSG), as `ip` prints it ("Requested AEAD algorithm not
/// found.").
pub fn extack_message(raw: &[u8]) -> Option<String> {
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let flags = u16::from_ne_bytes(raw.get(6..8)?.try_into().ok()?);
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // Header, errno, then the request's header (or all of it, uncapped).
    let orig_len = u32::from_ne_bytes(raw.get(20..24)?.try_into().ok()?) as usize;
    let mut at = 20
        + if flags & NLM_F_CAPPED != 0 {
            16
        } else {
            (orig_len + 3) & !3
        };
    while at + 4 <= raw.len() {
        let len = u16::from_ne_bytes(raw.get(at..at + 2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(raw.get(at + 2..at + 4)?.try_into().ok()?);
        if len < 4 || at + len > raw.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &raw[at + 4..at + len];
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += (len + 3) & !3;
    }
    None
}

/// Parses one netlink message; a parser panic is an error.
fn parse(bytes: &[u8]) -> Result<NetlinkPayload<XfrmMessage>, KernelError> {
    match catch_unwind(AssertUnwindSafe(|| {
        NetlinkMessage::<XfrmMessage>::deserialize(bytes)
    })) {
        Ok(Ok(m)) => Ok(m.payload),
        Ok(Err(e)) => Err(KernelError::local(format!(
            "netlink: unparsable answer: {e}"
        ))),
        Err(_) => Err(KernelError::local(
            "netlink: the parser panicked on the kernel's answer",
        )),
    }
}

/// Kernel events vpnd reacts to.
#[derive(Debug)]
pub enum KernelEvent {
    Acquire(Box<netlink_packet_xfrm::AcquireMessage>),
    Expire(Box<netlink_packet_xfrm::ExpireMessage>),
}

/// Starts the thread that listens to ACQUIRE and EXPIRE and calls `on` for
/// each. Unparsable or unknown messages are counted in `bad` and skipped.
pub fn listen(
    on: impl Fn(KernelEvent) + Send + 'static,
    bad: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<()> {
    use netlink_packet_xfrm::{XFRMNLGRP_ACQUIRE, XFRMNLGRP_EXPIRE};
    let mut sock = Socket::new(NETLINK_XFRM)?;
    sock.bind_auto()?;
    sock.add_membership(XFRMNLGRP_ACQUIRE)?;
    sock.add_membership(XFRMNLGRP_EXPIRE)?;
    let _ = sock.set_rx_buf_sz(4 << 20);
    std::thread::Builder::new()
        .name("xfrm-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            loop {
                buf.clear();
                let n = match sock.recv(&mut buf, 0) {
                    Ok(n) => n,
                    // ENOBUFS: events were lost; keep listening.
                    Err(_) => {
                        bad.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                };
                let mut at = 0;
                while at + 16 <= n {
                    let len =
                        u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                    if len < 16 || at + len > n {
                        break;
                    }
                    match parse(&buf[at..at + len]) {
                        Ok(NetlinkPayload::InnerMessage(XfrmMessage::Acquire(a))) => {
                            on(KernelEvent::Acquire(Box::new(a)))
                        }
                        Ok(NetlinkPayload::InnerMessage(XfrmMessage::Expire(e))) => {
                            on(KernelEvent::Expire(Box::new(e)))
                        }
                        _ => {
                            bad.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    at += (len + 3) & !3;
                }
            }
        })?;
    Ok(())
}
