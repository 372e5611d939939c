//! A TCP proxy for stall and resume tests: it forwards requests to an upstream registry
//! (one connection per request, `Connection: close`), holds the ones a rule picks forever
//! (accepts, never answers: a stalled registry), and counts the bytes it passes back to the
//! client, so a test can tell how much a pull really downloaded. A throttled proxy passes
//! bytes back at a set rate, as a slow link would.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decides from a request line (`GET /v2/... HTTP/1.1`) whether to stall it.
pub type StallRule = fn(&str) -> bool;

/// A running proxy; stops accepting when dropped (held connections are closed then).
pub struct Proxy {
    /// `127.0.0.1:PORT` to give kiln.
    pub addr: String,
    /// Bytes passed from the upstream to clients (response heads and bodies).
    pub down_bytes: Arc<AtomicU64>,
    /// Requests seen (stalled ones included).
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A listener that accepts every connection and never reads or answers anything.
    pub fn stalling() -> Proxy {
        Self::start(None, |_| true, 0)
    }

    /// Forwards to `upstream` (`127.0.0.1:PORT`), stalling the requests `stall` picks.
    pub fn forwarding(upstream: &str, stall: StallRule) -> Proxy {
        Self::start(Some(upstream.to_string()), stall, 0)
    }

    /// Forwards to `upstream`, passing answers back at about `bytes_per_second` per request.
    pub fn throttled(upstream: &str, bytes_per_second: u64) -> Proxy {
        Self::start(Some(upstream.to_string()), |_| false, bytes_per_second)
    }

    fn start(upstream: Option<String>, stall: StallRule, rate: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let p = Proxy {
            addr,
            down_bytes: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            held: Arc::new(Mutex::new(Vec::new())),
        };
        let (down, requests, stop, held) = (p.down_bytes.clone(), p.requests.clone(), p.stop.clone(), p.held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let Some(up) = upstream.clone() else {
                    requests.fetch_add(1, Ordering::Relaxed);
                    held.lock().unwrap().push(conn);
                    continue;
                };
                let (down, requests, held) = (down.clone(), requests.clone(), held.clone());
                std::thread::spawn(move || {
                    let _ = forward(conn, (&up, rate), stall, &down, &requests, &held);
                });
            }
        });
        p
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(&self.addr);
    }
}

fn forward(
    client: TcpStream,
    (upstream, rate): (&str, u64),
    stall: StallRule,
    down: &AtomicU64,
    requests: &AtomicU64,
    held: &Mutex<Vec<TcpStream>>,
) -> std::io::Result<()> {
    let mut client = client;
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 0 || first[0] == 0x16 {
        // A TLS ClientHello (kiln probing for HTTPS on a plain registry): refuse it.
        return Ok(());
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    requests.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&head).to_string();
    if stall(text.lines().next().unwrap_or_default()) {
        // Never answered, never read further: the client's upload fills the socket and stops.
        held.lock().unwrap().push(client);
        return Ok(());
    }
    let mut new_head = String::new();
    for l in text.split("\r\n") {
        if l.to_ascii_lowercase().starts_with("connection:") || l.is_empty() {
            continue;
        }
        new_head.push_str(l);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(new_head.as_bytes())?;
    let (mut c2, mut u2) = (client.try_clone()?, up.try_clone()?);
    let uploader = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        down.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(ns) = (n as u64 * 1_000_000_000).checked_div(rate) {
            std::thread::sleep(Duration::from_nanos(ns));
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = uploader.join();
    Ok(())
}
