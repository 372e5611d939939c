//! Published ports (`-p HOST:CTR[/udp]`): kiln listens on the host port and connects each
//! client to the port inside the container's own network namespace, as Docker's userland
//! proxy does. The container keeps a private network namespace; only the published ports
//! reach it. A UDP port keeps one socket inside per client address (at most
//! [`UDP_MAX_FLOWS`]), dropped after [`UDP_IDLE`] without a reply.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::RuntimeError;
use crate::options::{Proto, Publish};

/// How long a UDP client's socket inside lives without a datagram coming back (Docker's
/// userland proxy waits 90 s; conntrack's default for UDP streams is 120 s).
pub const UDP_IDLE: Duration = Duration::from_secs(120);

/// The most TCP connections relayed at once per published port; a client beyond it is
/// closed at once.
pub const TCP_MAX_CONNECTIONS: usize = 1024;

/// The most UDP clients served at once per port (a socket and a thread each): datagrams
/// from further new addresses are dropped until one goes idle, so a flood of forged
/// source addresses cannot exhaust threads or descriptors.
pub const UDP_MAX_FLOWS: usize = 1024;

/// A host port bound for publishing.
#[derive(Debug)]
pub enum Socket {
    /// A listening TCP socket.
    Tcp(TcpListener),
    /// A bound UDP socket.
    Udp(UdpSocket),
}

impl Socket {
    /// The descriptor, to hand to the detached container's helper.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(l) => l.as_raw_fd(),
            Socket::Udp(u) => u.as_raw_fd(),
        }
    }
}

/// Binds every host port before the container starts, so a port in use fails the run at once.
pub fn bind(publish: &[Publish]) -> Result<Vec<(Publish, Socket)>, RuntimeError> {
    publish
        .iter()
        .map(|p| {
            let bound = match p.proto {
                Proto::Tcp => TcpListener::bind(("0.0.0.0", p.host)).map(Socket::Tcp),
                Proto::Udp => UdpSocket::bind(("0.0.0.0", p.host)).map(Socket::Udp),
            };
            bound.map(|s| (*p, s)).map_err(|e| {
                RuntimeError::input(
                    format!("-p {}: cannot listen on host port {}: {e}", p, p.host),
                    "pick a free host port",
                )
            })
        })
        .collect()
}

/// The network namespace of a running container's process, opened so it stays reachable.
pub fn open_netns(pid: u32) -> Result<File, RuntimeError> {
    File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
        RuntimeError::env(
            format!("opening the network namespace of container process {pid}: {e}"),
            "the container exited before its ports could be published",
        )
    })
}

/// Serves every published port on its own thread until the process exits.
pub fn serve(listeners: Vec<(Publish, Socket)>, netns: File) {
    let netns = Arc::new(netns);
    for (p, socket) in listeners {
        let netns = Arc::clone(&netns);
        std::thread::spawn(move || match socket {
            Socket::Tcp(listener) => serve_tcp(listener, &netns, p.container, TCP_MAX_CONNECTIONS),
            Socket::Udp(host) => serve_udp(host, &netns, p.container, UDP_MAX_FLOWS),
        });
    }
}

/// Relays each connection to the host port to `port` on the container's loopback, at most
/// `max` at once (two threads each): past the limit a new client is closed at once.
fn serve_tcp(listener: TcpListener, netns: &Arc<File>, port: u16, max: usize) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for client in listener.incoming().flatten() {
        if open.load(Ordering::SeqCst) >= max {
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (netns, open) = (Arc::clone(netns), Arc::clone(&open));
        std::thread::spawn(move || {
            let _ = relay(client, &netns, port);
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Relays datagrams between clients of the host port and `port` on the container's
/// loopback: each client address gets its own socket inside (so replies find their way
/// back), and a thread that returns the replies until the client is idle for [`UDP_IDLE`].
fn serve_udp(host: UdpSocket, netns: &Arc<File>, port: u16, max_flows: usize) {
    let host = Arc::new(host);
    let mut flows: HashMap<SocketAddr, (Arc<UdpSocket>, Arc<AtomicBool>)> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = host.recv_from(&mut buf) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        flows.retain(|_, (_, ended)| !ended.load(Ordering::SeqCst));
        let inside = match flows.get(&from) {
            Some((s, _)) => Arc::clone(s),
            None if flows.len() >= max_flows => continue,
            None => {
                let Ok(s) = udp_inside(netns, port) else { continue };
                let (s, ended) = (Arc::new(s), Arc::new(AtomicBool::new(false)));
                let (replies, to, done) = (Arc::clone(&s), Arc::clone(&host), Arc::clone(&ended));
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let _ = replies.set_read_timeout(Some(UDP_IDLE));
                    while let Ok(n) = replies.recv(&mut buf) {
                        let _ = to.send_to(&buf[..n], from);
                    }
                    done.store(true, Ordering::SeqCst);
                });
                flows.insert(from, (Arc::clone(&s), ended));
                s
            }
        };
        let _ = inside.send(&buf[..n]);
    }
}

/// A UDP socket of the container's network namespace, connected to `port` on its loopback.
/// Made on a thread that joins the namespace (a socket belongs to the namespace it was made
/// in, whichever thread uses it later).
fn udp_inside(netns: &File, port: u16) -> io::Result<UdpSocket> {
    let netns = netns.try_clone()?;
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(netns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(io::Error::from)?;
        let s = UdpSocket::bind(("127.0.0.1", 0))?;
        s.connect(("127.0.0.1", port))?;
        Ok(s)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
}

/// Connects to `port` on the container's loopback from a thread that joined its network
/// namespace (the socket belongs to the namespace it was made in), retrying for a few seconds
/// while the program inside is still starting.
fn connect_inside(netns: &File, port: u16) -> io::Result<TcpStream> {
    rustix::thread::move_into_link_name_space(netns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(io::Error::from)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

fn relay(client: TcpStream, netns: &File, port: u16) -> io::Result<()> {
    let inside = connect_inside(netns, port)?;
    let (mut c_read, mut i_write) = (client.try_clone()?, inside.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut i_write);
        let _ = i_write.shutdown(Shutdown::Write);
    });
    let (mut i_read, mut c_write) = (inside, client);
    let _ = io::copy(&mut i_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// True while `/proc/PID/ns/net` is still the namespace `netns` names: the container's
/// process is alive (a reused pid would be in another namespace).
pub fn still_there(pid: u32, netns: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(now) = std::fs::metadata(Path::new(&format!("/proc/{pid}/ns/net"))) else {
        return false;
    };
    netns
        .metadata()
        .is_ok_and(|m| m.ino() == now.ino() && m.dev() == now.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP echo server on 127.0.0.1 of this namespace; its port.
    fn echo() -> u16 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
        port
    }

    fn ask(client: &UdpSocket, port: u16, msg: &[u8]) -> Option<Vec<u8>> {
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 512];
        for _ in 0..5 {
            client.send_to(msg, ("127.0.0.1", port)).unwrap();
            if let Ok(n) = client.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    /// A connection is relayed while it is open; one beyond the limit is closed at once,
    /// and once the first is done a new one is served again.
    #[test]
    fn tcp_connections_are_bounded() {
        use std::io::{Read, Write};
        if !rustix::process::geteuid().is_root() {
            panic!("this test joins a network namespace: run it as root (CI does)");
        }
        let inside = TcpListener::bind("127.0.0.1:0").unwrap();
        let inside_port = inside.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in inside.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let host = TcpListener::bind("127.0.0.1:0").unwrap();
        let published = host.local_addr().unwrap().port();
        let netns = Arc::new(File::open("/proc/self/ns/net").unwrap());
        std::thread::spawn(move || serve_tcp(host, &netns, inside_port, 1));
        let echo = |c: &mut TcpStream, msg: &[u8]| -> usize {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(msg).unwrap();
            let mut buf = [0u8; 64];
            c.read(&mut buf).unwrap_or(0)
        };
        let mut first = TcpStream::connect(("127.0.0.1", published)).unwrap();
        assert_eq!(echo(&mut first, b"one"), 3);
        let mut second = TcpStream::connect(("127.0.0.1", published)).unwrap();
        assert_eq!(echo(&mut second, b"two"), 0, "over the limit: closed, nothing relayed");
        drop(first);
        let start = Instant::now();
        loop {
            let mut third = TcpStream::connect(("127.0.0.1", published)).unwrap();
            if echo(&mut third, b"three") == 5 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the slot never came back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Each client gets its own flow (replies come back to the right one), and clients
    /// beyond the limit are not served. The "container" is this process's own namespace
    /// (joining it needs root, as every kiln run does).
    #[test]
    fn udp_flows_are_per_client_and_bounded() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test joins a network namespace: run it as root (CI does)");
        }
        let inside = echo();
        let host = UdpSocket::bind("127.0.0.1:0").unwrap();
        let published = host.local_addr().unwrap().port();
        let netns = Arc::new(File::open("/proc/self/ns/net").unwrap());
        std::thread::spawn(move || serve_udp(host, &netns, inside, 2));
        let clients: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        assert_eq!(ask(&clients[0], published, b"a").as_deref(), Some(&b"a"[..]));
        assert_eq!(ask(&clients[1], published, b"b").as_deref(), Some(&b"b"[..]));
        assert_eq!(
            ask(&clients[2], published, b"c"),
            None,
            "a third client is over the limit"
        );
        assert_eq!(ask(&clients[0], published, b"again").as_deref(), Some(&b"again"[..]));
    }
}
