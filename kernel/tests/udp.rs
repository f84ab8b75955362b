//! Batched UDP receive: buffers are filled in place, never zero-filled or
//! reallocated, and hold exactly what arrived.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use kernel::userspace::udp::{recv_batch_gro, BATCH};

#[test]
fn recv_batch_fills_buffers_with_exactly_what_arrived() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    const CAP: usize = 65536;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0xaa; 3000]).collect();
    let mut froms = vec![None; BATCH];
    let mut segs = vec![0; BATCH];
    for b in &mut bufs {
        b.reserve(CAP);
    }
    let ptrs_reserved: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();

    for round in 0..3u8 {
        let sizes = [1400usize, 7, 900 - usize::from(round) * 100];
        for (k, n) in sizes.iter().enumerate() {
            let d: Vec<u8> = (0..*n).map(|i| (i as u8) ^ (k as u8) ^ round).collect();
            tx.send_to(&d, to).unwrap();
        }
        let mut got = 0;
        for _ in 0..100 {
            match recv_batch_gro(
                rx.as_raw_fd(),
                &mut bufs[got..],
                CAP,
                &mut froms[got..],
                &mut segs[got..],
            ) {
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if got == sizes.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, sizes.len());
        for (k, n) in sizes.iter().enumerate() {
            let want: Vec<u8> = (0..*n).map(|i| (i as u8) ^ (k as u8) ^ round).collect();
            assert_eq!(bufs[k], want, "round {round} datagram {k}");
            assert_eq!(froms[k], Some(tx.local_addr().unwrap()));
            assert_eq!(segs[k], *n);
        }
    }
    // No buffer was reallocated.
    let now: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
    assert_eq!(now, ptrs_reserved);
}
