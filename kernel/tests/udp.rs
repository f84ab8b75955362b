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

#[test]
fn reuseport_group_steers_each_spi_to_one_socket() {
    use kernel::userspace::udp::{bind_reuseport, reuseport, steer_by_spi};
    let first = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(reuseport(first.as_raw_fd()));
    let at = first.local_addr().unwrap();
    let mut group = vec![first];
    for _ in 0..2 {
        group.push(bind_reuseport(at).unwrap());
    }
    // Without SO_REUSEPORT the port is taken.
    assert!(UdpSocket::bind(at).is_err());
    steer_by_spi(group[0].as_raw_fd(), 3).unwrap();
    for s in &group {
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 64];
    for spi in [0u32, 1, 2, 3, 7, 0xc0ffee01, u32::MAX] {
        let mut d = spi.to_be_bytes().to_vec();
        d.extend_from_slice(b"esp");
        tx.send_to(&d, at).unwrap();
        let want = (spi % 3) as usize;
        let n = group[want].recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &d[..], "SPI {spi:#x} on socket {want}");
    }
    // A one-byte NAT keepalive (too short to load a word) goes to socket 0.
    tx.send_to(&[0xff], at).unwrap();
    assert_eq!(group[0].recv(&mut buf).unwrap(), 1);
    // Nothing went astray.
    for s in &group {
        s.set_nonblocking(true).unwrap();
        assert!(s.recv(&mut buf).is_err());
    }
}
