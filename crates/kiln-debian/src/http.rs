//! Downloads from Debian mirrors, on the reqwest client kiln-registry builds
//! ([`kiln_registry::client::client_builder`]): `http://` and `https://` mirrors (rustls,
//! with the system's roots, `SSL_CERT_FILE`/`SSL_CERT_DIR`, and `certs.d/HOST` CA
//! directories), proxies from the standard environment (`http_proxy`, `https_proxy`,
//! `no_proxy`), redirects, a connect timeout and a read timeout (a mirror that stops
//! sending is given up on), and a size limit on every body: the caller says how many bytes
//! it expects at most (the size the signed InRelease or kiln.lock gives), and a longer body
//! is cut off there, never buffered. Header size and count are bounded by hyper's limits.
//!
//! kiln's code is synchronous here; requests run on one small tokio runtime of this module,
//! so it can be called from any thread, inside another runtime or not.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The largest InRelease kiln reads (Debian's are about 150 KiB).
pub const MAX_INRELEASE_BYTES: u64 = 16 << 20;

/// How long a mirror may send nothing in the middle of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Tries per download (a connection error, a cut-off body, 429 or 5xx is tried again).
const ATTEMPTS: u32 = 3;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A URL kiln cannot fetch.
    #[error("{url}: unsupported URL (hint: Debian mirrors are used over http:// or https://)")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The connection or transfer failed.
    #[error(
        "{url}: {message} (hint: check the network, the mirror URL and any http_proxy/https_proxy; for an https mirror with a private CA, set SSL_CERT_FILE or add it to /etc/containers/certs.d/HOST/)"
    )]
    Io {
        /// The URL.
        url: String,
        /// The failure, with its causes.
        message: String,
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
    /// The body is longer than the caller allows.
    #[error(
        "{url}: the mirror sent more than {limit} bytes, the most expected here (hint: the mirror serves something other than what was signed or locked; use another mirror)"
    )]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The HTTP client cannot be set up (for example, an unreadable CA file).
    #[error("{0}")]
    Client(String),
}

impl HttpError {
    /// Whether the server said the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HttpError::Status { status: 404 | 410, .. })
    }

    fn retryable(&self) -> bool {
        match self {
            HttpError::Io { .. } => true,
            HttpError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-debian-http")
            .enable_all()
            .build()
            .expect("a tokio runtime for Debian downloads")
    })
}

/// The client for a mirror host (one per host: CA directories are per host).
fn client(host: &str) -> Result<reqwest::Client, HttpError> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, reqwest::Client>>> = OnceLock::new();
    let mut clients = CLIENTS.get_or_init(Default::default).lock().expect("lock");
    if let Some(c) = clients.get(host) {
        return Ok(c.clone());
    }
    let opts = kiln_registry::client::Options::default();
    let c = kiln_registry::client::client_builder(host, &opts)
        .map_err(|e| HttpError::Client(e.to_string()))?
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| HttpError::Client(format!("cannot set up HTTP for {host}: {e}")))?;
    clients.insert(host.to_string(), c.clone());
    Ok(c)
}

/// Downloads `url` into memory: at most `max` bytes, or [`HttpError::TooLarge`]. A failed
/// connection, a cut-off body, 429 or a 5xx is tried again from the start, twice.
pub fn get_bytes(url: &str, max: u64) -> Result<Vec<u8>, HttpError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| HttpError::BadUrl { url: url.to_string() })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(HttpError::BadUrl { url: url.to_string() });
    }
    let host = match parsed.port() {
        Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let client = client(&host)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let url = url.to_string();
    runtime().spawn(async move {
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match get_once(&client, &url, max).await {
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                other => break other,
            }
        };
        let _ = tx.send(result);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(HttpError::Client("the download task ended early".into())))
}

async fn get_once(client: &reqwest::Client, url: &str, max: u64) -> Result<Vec<u8>, HttpError> {
    let io = |e: reqwest::Error| HttpError::Io {
        url: url.to_string(),
        message: kiln_registry::client::error_chain(&e),
    };
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT_ENCODING, "identity")
        .send()
        .await
        .map_err(io)?;
    let status = resp.status().as_u16();
    if status != 200 {
        let hint = match status {
            404 | 410 => {
                "the file is not on this mirror; if it is a .deb of an old lock, the archive removed it: run `kiln lock --update`"
            }
            407 => "the proxy wants credentials: give them in http_proxy/https_proxy (http://user:pass@host:port)",
            _ => "the mirror refused the request; try again or use another mirror",
        };
        return Err(HttpError::Status {
            url: url.to_string(),
            status,
            hint,
        });
    }
    let too_large = || HttpError::TooLarge {
        url: url.to_string(),
        limit: max,
    };
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(max).min(64 << 20) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(io)? {
        if out.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn urls() {
        assert!(matches!(get_bytes("ftp://x/", 1), Err(HttpError::BadUrl { .. })));
        assert!(matches!(get_bytes("not a url", 1), Err(HttpError::BadUrl { .. })));
    }

    #[test]
    fn serves_from_a_loopback_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for (i, s) in l.incoming().take(6).enumerate() {
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
                    0 => b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                    2 => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
                    _ => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
                };
                s.write_all(resp).unwrap();
            }
        });
        assert_eq!(get_bytes(&format!("http://127.0.0.1:{port}/a"), 5).unwrap(), b"abcde");
        // Longer than the caller allows: refused, not retried.
        assert!(matches!(
            get_bytes(&format!("http://127.0.0.1:{port}/c"), 4),
            Err(HttpError::TooLarge { limit: 4, .. })
        ));
        // A short body is an error after the first try and two retries (3 connections).
        assert!(matches!(
            get_bytes(&format!("http://127.0.0.1:{port}/d"), 100),
            Err(HttpError::Io { .. })
        ));
        t.join().unwrap();
    }
}
