//! A small HTTP/1.1 GET client for Debian mirrors.
//!
//! Debian mirrors are served over plain HTTP, and apt trusts them the same way kiln does:
//! every byte is checked against a hash that comes from the OpenPGP-signed InRelease. So
//! this needs no TLS, and a full HTTP stack (and its compile time) buys nothing. It honours
//! `http_proxy`, follows redirects, and reads `Content-Length`, chunked and close-delimited
//! bodies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A URL kiln cannot fetch.
    #[error(
        "{url}: unsupported URL (hint: Debian mirrors are used over http://; integrity comes from the signed InRelease)"
    )]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The connection or transfer failed.
    #[error("{url}: {source} (hint: check the network and the mirror URL)")]
    Io {
        /// The URL.
        url: String,
        /// The failure.
        source: io::Error,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status} (hint: {hint})")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// What to check.
        hint: &'static str,
    },
}

impl HttpError {
    /// Whether the server said the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HttpError::Status { status: 404 | 410, .. })
    }
}

struct Url<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse_url(url: &str) -> Option<Url<'_>> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().ok()?),
        _ => (hostport, 80),
    };
    if host.is_empty() {
        return None;
    }
    Some(Url { host, port, path })
}

/// Downloads `url` into `out`, returning the number of bytes written. Retries a failed
/// connection twice; a partial body is reported as an error (the caller discards `out`).
pub fn get(url: &str, out: &mut dyn Write) -> Result<u64, HttpError> {
    let mut url = url.to_string();
    for _ in 0..5 {
        match get_once(&url, out)? {
            Outcome::Done(n) => return Ok(n),
            Outcome::Redirect(to) => {
                url = if to.starts_with("http://") || to.starts_with("https://") {
                    to
                } else {
                    let u = parse_url(&url).ok_or(HttpError::BadUrl { url: url.clone() })?;
                    format!("http://{}:{}{}", u.host, u.port, to)
                };
            }
        }
    }
    Err(HttpError::Status {
        url,
        status: 310,
        hint: "too many redirects",
    })
}

/// Downloads `url` into memory. A transfer cut off midway (a reset, a short body) is tried
/// again from the start, twice; an HTTP error status is not.
pub fn get_bytes(url: &str) -> Result<Vec<u8>, HttpError> {
    let mut attempt = 0;
    loop {
        let mut v = Vec::new();
        match get(url, &mut v) {
            Ok(_) => return Ok(v),
            Err(HttpError::Io { .. }) if attempt < 2 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500 * attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

enum Outcome {
    Done(u64),
    Redirect(String),
}

fn connect(url: &str) -> Result<(TcpStream, String), HttpError> {
    let proxy = std::env::var("http_proxy")
        .or_else(|_| std::env::var("HTTP_PROXY"))
        .ok()
        .filter(|p| !p.is_empty());
    let u = parse_url(url).ok_or(HttpError::BadUrl { url: url.to_string() })?;
    let no_proxy = std::env::var("no_proxy").unwrap_or_default();
    let bypass = no_proxy.split(',').any(|d| {
        let d = d.trim().trim_start_matches('.');
        !d.is_empty() && (u.host == d || u.host.ends_with(&format!(".{d}")))
    });
    let (target, request_path) = match proxy.as_deref().filter(|_| !bypass) {
        Some(p) => {
            let pu = parse_url(p).ok_or(HttpError::BadUrl { url: p.to_string() })?;
            (format!("{}:{}", pu.host, pu.port), url.to_string())
        }
        None => (format!("{}:{}", u.host, u.port), u.path.to_string()),
    };
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(300 * attempt));
        }
        match TcpStream::connect(&target) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                return Ok((s, request_path));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(HttpError::Io {
        url: url.to_string(),
        source: last.expect("an attempt was made"),
    })
}

fn get_once(url: &str, out: &mut dyn Write) -> Result<Outcome, HttpError> {
    let io_e = |source| HttpError::Io {
        url: url.to_string(),
        source,
    };
    let u = parse_url(url).ok_or(HttpError::BadUrl { url: url.to_string() })?;
    let (mut stream, path) = connect(url)?;
    let host = if u.port == 80 {
        u.host.to_string()
    } else {
        format!("{}:{}", u.host, u.port)
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kiln/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .map_err(io_e)?;
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    let mut status_line = String::new();
    r.read_line(&mut status_line).map_err(io_e)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_e(io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response")))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(io_e)? == 0 {
            return Err(io_e(io::ErrorKind::UnexpectedEof.into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "location" => location = Some(v.to_string()),
                _ => {}
            }
        }
    }
    match status {
        200 => {}
        301 | 302 | 303 | 307 | 308 => {
            return location.map(Outcome::Redirect).ok_or(HttpError::Status {
                url: url.to_string(),
                status,
                hint: "a redirect without a Location",
            });
        }
        404 | 410 => {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
                hint: "the file is not on this mirror; if it is a .deb of an old lock, the archive removed it: run `kiln lock --update`",
            });
        }
        _ => {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
                hint: "the mirror refused the request; try again or use another mirror",
            });
        }
    }
    let n = if chunked {
        let mut total = 0u64;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).map_err(io_e)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io_e(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")))?;
            if size == 0 {
                break;
            }
            let copied = io::copy(&mut (&mut r).take(size), out).map_err(io_e)?;
            if copied != size {
                return Err(io_e(io::ErrorKind::UnexpectedEof.into()));
            }
            total += copied;
            let mut crlf = String::new();
            r.read_line(&mut crlf).map_err(io_e)?;
        }
        total
    } else if let Some(len) = length {
        let copied = io::copy(&mut (&mut r).take(len), out).map_err(io_e)?;
        if copied != len {
            return Err(io_e(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {copied} of {len} bytes"),
            )));
        }
        copied
    } else {
        io::copy(&mut r, out).map_err(io_e)?
    };
    Ok(Outcome::Done(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://deb.debian.org/debian/dists").unwrap();
        assert_eq!((u.host, u.port, u.path), ("deb.debian.org", 80, "/debian/dists"));
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.host, u.port, u.path), ("127.0.0.1", 8080, "/"));
        assert!(parse_url("https://x/").is_none());
    }

    #[test]
    fn serves_from_a_loopback_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for (i, s) in l.incoming().take(5).enumerate() {
                let mut s = s.unwrap();
                // Read the whole request, so closing never resets the connection.
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let resp: &[u8] = match i {
                    0 => b"HTTP/1.1 302 Found\r\nLocation: /b\r\n\r\n",
                    1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                    _ => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                };
                s.write_all(resp).unwrap();
            }
        });
        assert_eq!(get_bytes(&format!("http://127.0.0.1:{port}/a")).unwrap(), b"abcde");
        // A short body is an error after the first try and two retries (3 connections).
        assert!(get_bytes(&format!("http://127.0.0.1:{port}/c")).is_err());
        t.join().unwrap();
    }
}
