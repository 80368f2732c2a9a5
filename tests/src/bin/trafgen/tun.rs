//! `trafgen tun-reflect DEVICE COUNT`: the far end of a tun device, for the
//! tests of L3 interfaces. It attaches to DEVICE (an existing tun device,
//! without packet information), prints `listening`, and writes every UDP
//! datagram it reads back into the device with its addresses and ports
//! swapped (the checksums stay valid: their sums do not change). It stops
//! 500 ms after its COUNTth reflection, reading whatever the stack still
//! sends (so the device delivers it), or when the timeout passes, and
//! prints `reflected N`.

use std::{
    fs::OpenOptions,
    io::{Read as _, Write as _},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

/// How long the reflector reads on after its last reflection.
const LINGER: Duration = Duration::from_millis(500);

pub fn reflect(device: &str, count: u64, timeout: Duration) -> std::io::Result<String> {
    let mut tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: the name (at most IFNAMSIZ - 1 bytes, NUL-terminated),
    // then the flags as a short.
    let mut req = [0u8; 40];
    let name = device.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!("{device}: name too long")));
    }
    req[..name.len()].copy_from_slice(name);
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
    req[libc::IFNAMSIZ..libc::IFNAMSIZ + 2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `req` is
    // large enough for.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    println!("listening");
    let deadline = Instant::now() + timeout;
    let mut until = deadline;
    let mut reflected = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if ready < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if ready == 0 {
            break;
        }
        let n = tun.read(&mut buf)?;
        if swap_udp(&mut buf[..n]) {
            tun.write_all(&buf[..n])?;
            reflected += 1;
            if reflected == count {
                until = (Instant::now() + LINGER).min(deadline);
            }
        }
    }
    Ok(format!("reflected {reflected}"))
}

/// Swaps source and destination (addresses and ports) of an IPv4 or IPv6
/// UDP datagram in place; false, untouched, for any other packet.
fn swap_udp(p: &mut [u8]) -> bool {
    let (addr, len, udp) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 28 && p[9] == 17 => (12, 4, usize::from(p[0] & 0xf) * 4),
        Some(6) if p.len() >= 48 && p[6] == 17 => (8, 16, 40),
        _ => return false,
    };
    if p.len() < udp + 8 {
        return false;
    }
    for i in 0..len {
        p.swap(addr + i, addr + len + i);
    }
    for i in 0..2 {
        p.swap(udp + i, udp + 2 + i);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::swap_udp;

    #[test]
    fn swaps_ipv4_udp_and_leaves_the_rest() {
        let mut p = [0u8; 30];
        p[0] = 0x45;
        p[9] = 17;
        p[12..20].copy_from_slice(&[198, 51, 100, 1, 198, 51, 100, 2]);
        p[20..24].copy_from_slice(&[0x12, 0x34, 0x23, 0x28]);
        assert!(swap_udp(&mut p));
        assert_eq!(p[12..20], [198, 51, 100, 2, 198, 51, 100, 1]);
        assert_eq!(p[20..24], [0x23, 0x28, 0x12, 0x34]);
        p[9] = 1; // ICMP
        assert!(!swap_udp(&mut p));
    }
}
