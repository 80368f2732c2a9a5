//! Bounded traffic generator for the integration tests. Every mode stops by
//! itself: byte and packet counts are fixed and every socket has a timeout.
//! Prints what it sent or received, in payload bytes, as `sent N` or
//! `received N`.
//!
//! trafgen tcp-send ADDR PORT BYTES [SECONDS]
//! trafgen tcp-recv ADDR PORT CONNECTIONS
//! trafgen udp-send ADDR PORT SIZE COUNT [SECONDS]
//! trafgen udp-recv ADDR PORT COUNT
//! trafgen tcp-flood ADDR PORT SECONDS MAX_BYTES
//! trafgen tcp-recv-for ADDR PORT SECONDS
//! trafgen udp-blast ADDR PORT SIZE SECONDS
//! trafgen udp-count ADDR PORT SECONDS
//! trafgen tun-reflect DEVICE COUNT
//! trafgen userns-loop BASE INNER SIZE COUNT
//!
//! `udp-blast` sends datagrams of SIZE payload bytes as fast as it can for
//! SECONDS (at most 60), 64 per `sendmmsg` call, and prints `sent N` with N
//! in datagrams; `udp-count` waits for the first datagram, counts those
//! that arrive in the SECONDS after it (`recvmmsg`) and prints
//! `received N`, in datagrams. The benchmarks measure packet rates with them.
//!
//! `tcp-flood` sends as fast as it can for SECONDS (at most 60) or until
//! MAX_BYTES; `tcp-recv-for` reads one connection for SECONDS from its
//! accept and reports what arrived in that window (0 if nobody connected),
//! which over SECONDS is the rate the sender achieved.
//!
//! With SECONDS (at most 60), the sender spreads its bytes evenly over that
//! time instead of sending as fast as it can.

#[path = "trafgen/tun.rs"]
mod tun;
#[path = "trafgen/userns.rs"]
mod userns;

use std::{
    io::{Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    time::{Duration, Instant},
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Optional pacing: the fraction `done` of the work is due at
/// `start + done * seconds`; sleeps until then.
fn pace(start: Instant, seconds: f64, done: f64) {
    let due = start + Duration::from_secs_f64((seconds * done).min(60.0));
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

fn optional_seconds(args: &[String], i: usize) -> f64 {
    args.get(i)
        .map_or(0.0, |_| arg::<f64>(args, i, "seconds").clamp(0.0, 60.0))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("trafgen: argument {i} ({what}) missing or invalid"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    if mode == "tun-reflect" {
        let device: String = arg(&args, 2, "device");
        return report(
            &format!("{mode} {device}"),
            tun::reflect(&device, arg(&args, 3, "count"), TIMEOUT),
        );
    }
    if mode == "userns-loop" {
        return report(
            mode,
            userns::run(
                arg(&args, 2, "base"),
                arg(&args, 3, "inner uid"),
                arg(&args, 4, "size"),
                arg(&args, 5, "count"),
            ),
        );
    }
    let ip: IpAddr = arg(&args, 2, "address");
    let port: u16 = arg(&args, 3, "port");
    let addr = SocketAddr::new(ip, port);
    let result = match mode {
        "tcp-send" => tcp_send(addr, arg(&args, 4, "bytes"), optional_seconds(&args, 5)),
        "tcp-recv" => tcp_recv(addr, arg(&args, 4, "connections")),
        "udp-send" => udp_send(
            addr,
            arg(&args, 4, "size"),
            arg(&args, 5, "count"),
            optional_seconds(&args, 6),
        ),
        "udp-recv" => udp_recv(addr, arg(&args, 4, "count")),
        "tcp-flood" => tcp_flood(
            addr,
            Duration::from_secs_f64(arg::<f64>(&args, 4, "seconds").clamp(0.0, 60.0)),
            arg(&args, 5, "max bytes"),
        ),
        "tcp-recv-for" => tcp_recv_for(
            addr,
            Duration::from_secs_f64(arg::<f64>(&args, 4, "seconds").clamp(0.0, 60.0)),
        ),
        "udp-blast" => udp_blast(
            addr,
            arg(&args, 4, "size"),
            Duration::from_secs_f64(arg::<f64>(&args, 5, "seconds").clamp(0.0, 60.0)),
        ),
        "udp-count" => udp_count(
            addr,
            Duration::from_secs_f64(arg::<f64>(&args, 4, "seconds").clamp(0.0, 60.0)),
        ),
        _ => Err(std::io::Error::other(format!("unknown mode {mode:?}"))),
    };
    report(&format!("{mode} {addr}"), result)
}

/// Prints the result line, or the error naming `what` failed.
fn report(what: &str, result: std::io::Result<String>) -> ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trafgen {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects (retrying while the receiver starts), sends `bytes`, shuts down
/// its side and reads until the receiver closes, so the exchange completes.
fn tcp_send(addr: SocketAddr, bytes: u64, seconds: f64) -> std::io::Result<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let chunk = vec![0x5au8; 16 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
        if seconds > 0.0 {
            pace(start, seconds, 1.0 - left as f64 / bytes as f64);
        }
    }
    stream.shutdown(Shutdown::Write)?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink)?;
    Ok(format!("sent {bytes}"))
}

/// Accepts `connections` connections one after another and reads each to
/// the end, then closes it.
fn tcp_recv(addr: SocketAddr, connections: u32) -> std::io::Result<String> {
    let listener = TcpListener::bind(addr)?;
    println!("listening");
    let mut total = 0u64;
    for _ in 0..connections {
        let (mut stream, _) = accept_with_timeout(&listener)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(format!("received {total}"))
}

/// Connects within `seconds` and writes until `seconds` have passed,
/// `max` bytes are written or the receiver goes away.
fn tcp_flood(addr: SocketAddr, seconds: Duration, max: u64) -> std::io::Result<String> {
    let deadline = Instant::now() + seconds;
    let mut stream = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no connection",
            ));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0u64;
    while sent < max && Instant::now() < deadline {
        let n = chunk
            .len()
            .min(usize::try_from(max - sent).unwrap_or(usize::MAX));
        match stream.write(&chunk[..n]) {
            Ok(n) => sent += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    Ok(format!("sent {sent}"))
}

/// Accepts one connection within `seconds` and counts what arrives in the
/// `seconds` after the accept.
fn tcp_recv_for(addr: SocketAddr, seconds: Duration) -> std::io::Result<String> {
    let listener = TcpListener::bind(addr)?;
    println!("listening");
    listener.set_nonblocking(true)?;
    let accept_deadline = Instant::now() + seconds;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > accept_deadline {
                    return Ok("received 0".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + seconds;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(format!("received {total}"))
}

fn accept_with_timeout(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false)?;
                return Ok((s, a));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends `count` datagrams of `size` payload bytes, paced so that a
/// receiver on the same machine keeps up.
fn udp_send(addr: SocketAddr, size: usize, count: u32, seconds: f64) -> std::io::Result<String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_write_timeout(Some(TIMEOUT))?;
    let payload = vec![0xa5u8; size];
    let start = Instant::now();
    for i in 0..count {
        socket.send_to(&payload, addr)?;
        if seconds > 0.0 {
            pace(start, seconds, f64::from(i + 1) / f64::from(count));
        } else if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(format!("sent {}", size as u64 * u64::from(count)))
}

/// Receives until `count` datagrams arrived or the timeout passed.
fn udp_recv(addr: SocketAddr, count: u32) -> std::io::Result<String> {
    let socket = UdpSocket::bind(addr)?;
    println!("listening");
    socket.set_read_timeout(Some(Duration::from_secs(3)))?;
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 65536];
    let (mut total, mut got) = (0u64, 0u32);
    while got < count && Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                total += n as u64;
                got += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(format!("received {total}"))
}

/// Datagrams per `sendmmsg`/`recvmmsg` call.
const BATCH: usize = 64;

fn udp_socket_for(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    UdpSocket::bind(bind)
}

/// Sends datagrams of `size` bytes to `addr` as fast as the stack takes
/// them, `BATCH` per `sendmmsg` (a hand-written loop: std has no batch
/// send), until `seconds` have passed.
fn udp_blast(addr: SocketAddr, size: usize, seconds: Duration) -> std::io::Result<String> {
    use std::os::fd::AsRawFd as _;
    let socket = udp_socket_for(addr)?;
    socket.connect(addr)?;
    socket.set_write_timeout(Some(Duration::from_millis(100)))?;
    let payload = vec![0xa5u8; size];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: size,
    };
    // SAFETY: mmsghdr is plain data; zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &raw mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let deadline = Instant::now() + seconds;
    let mut sent = 0u64;
    while Instant::now() < deadline {
        // SAFETY: `msgs` holds BATCH headers pointing to `iov` and
        // `payload`, which outlive the call; the socket is connected.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        } else {
            let e = std::io::Error::last_os_error();
            // A full queue or a refused port (nobody listening yet) is
            // not the end of the run.
            if !matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS | libc::EAGAIN | libc::ECONNREFUSED)
            ) {
                return Err(e);
            }
        }
    }
    Ok(format!("sent {sent}"))
}

/// Counts the datagrams that arrive at `addr` in the `seconds` after the
/// first one (which must come within 10 s).
fn udp_count(addr: SocketAddr, seconds: Duration) -> std::io::Result<String> {
    use std::os::fd::AsRawFd as _;
    let socket = UdpSocket::bind(addr)?;
    let fd = socket.as_raw_fd();
    // A deep receive queue, so the counter is not the bottleneck.
    let rcvbuf: libc::c_int = 32 << 20;
    // SAFETY: setsockopt with a c_int option of its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&rcvbuf).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    println!("listening");
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 2048];
    socket.recv_from(&mut buf)?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(&mut iovs) {
        m.msg_hdr.msg_iov = std::ptr::from_mut(iov);
        m.msg_hdr.msg_iovlen = 1;
    }
    let deadline = Instant::now() + seconds;
    let mut got = 0u64;
    while Instant::now() < deadline {
        // SAFETY: every header points to its own buffer, all of which
        // outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            got += n as u64;
        } else {
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                return Err(e);
            }
        }
    }
    Ok(format!("received {got}"))
}
