//! Published ports (`-p HOST:CTR`): kiln listens on the host port and connects each client
//! to the port inside the container's own network namespace, as Docker's userland proxy
//! does. The container keeps a private network namespace; only the published ports reach it.

use std::fs::File;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::RuntimeError;
use crate::options::Publish;

/// Binds every host port before the container starts, so a port in use fails the run at once.
pub fn bind(publish: &[Publish]) -> Result<Vec<(Publish, TcpListener)>, RuntimeError> {
    publish
        .iter()
        .map(|p| {
            TcpListener::bind(("0.0.0.0", p.host)).map(|l| (*p, l)).map_err(|e| {
                RuntimeError::input(
                    format!(
                        "-p {}:{}: cannot listen on host port {}: {e}",
                        p.host, p.container, p.host
                    ),
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

/// Serves every listener on its own thread until the process exits.
pub fn serve(listeners: Vec<(Publish, TcpListener)>, netns: File) {
    let netns = std::sync::Arc::new(netns);
    for (p, listener) in listeners {
        let netns = std::sync::Arc::clone(&netns);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let netns = std::sync::Arc::clone(&netns);
                std::thread::spawn(move || {
                    let _ = relay(client, &netns, p.container);
                });
            }
        });
    }
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
