//! Binding the DNS sockets: one UDP socket and one TCP listener per `[dns].listen`
//! address, on the same port.
//!
//! This module owns socket options and the port-0 dance (UDP first, then TCP on the
//! port the UDP socket got, retrying if that TCP port is taken). It must not serve:
//! binding happens before the runtime starts and before tenants are loaded, so a
//! port conflict fails start-up at once.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// A bound UDP socket and TCP listener on the same address.
pub struct DnsSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl DnsSockets {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Attempts at finding a port free for both UDP and TCP when the port is 0.
const PORT_ZERO_ATTEMPTS: usize = 16;
/// Room for a burst of queries while the workers are busy.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Binds UDP and TCP on `addr`. With port 0, UDP picks the port and TCP follows it.
pub fn bind(addr: SocketAddr) -> io::Result<DnsSockets> {
    let mut last = None;
    for _ in 0..PORT_ZERO_ATTEMPTS {
        let udp = bind_udp(addr)?;
        let bound = udp.local_addr()?;
        match crate::server::bind(bound) {
            Ok(tcp) => return Ok(DnsSockets { udp, tcp }),
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    // No SO_REUSEADDR: on UDP it would let another socket share the port.
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_the_same_port_to_udp_and_tcp() {
        let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = s.udp.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(s.tcp.local_addr().unwrap().port(), port);
    }
}
