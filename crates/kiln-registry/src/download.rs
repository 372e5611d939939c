//! Plain HTTP(S) downloads of single files (`ADD https://…` in a Dockerfile), on the same
//! client, certificates, proxies and stall rule ([`crate::stall`]) as registry traffic.
//!
//! The caller checks the content (a `--checksum`, a pin in the lock); this module only
//! moves bytes, at most [`Download::limit`] of them, and reports `Last-Modified` and the
//! `ETag` (which the caller may send back to be told "not modified", as BuildKit does for
//! unpinned URLs).

use std::io::Write;

use crate::ops::Session;
use crate::stall::Progress;

/// The most a download may be, unless the caller says otherwise (BuildKit has no limit;
/// kiln keeps one so a runaway server cannot fill the disk).
pub const DEFAULT_LIMIT: u64 = 8 << 30;

/// What to download.
#[derive(Debug, Clone)]
pub struct Download<'a> {
    /// `https://…`, or `http://…`.
    pub url: &'a str,
    /// Refuse a body bigger than this.
    pub limit: u64,
    /// The ETag of the copy the caller has: sent as `If-None-Match`, and a `304 Not
    /// Modified` answer then means that copy is current ([`Downloaded::not_modified`]).
    pub if_none_match: Option<&'a str>,
}

/// What a finished download reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// The `Last-Modified` header, as seconds since the epoch, when the server sent a valid one.
    pub last_modified: Option<i64>,
    /// The `ETag` header, when the server sent a usable one (a strong validator of visible
    /// ASCII, at most [`MAX_ETAG`] bytes): what to send as `If-None-Match` next time.
    pub etag: Option<String>,
    /// The server answered `304 Not Modified` to [`Download::if_none_match`]: nothing was
    /// written, and the caller's copy is current.
    pub not_modified: bool,
}

/// The longest ETag kept; a longer one is ignored (the file is then fetched every time).
pub const MAX_ETAG: usize = 512;

/// A response's ETag, if it is one worth sending back: strong (a weak `W/` tag only says
/// "equivalent", not "the same bytes"), visible ASCII, and short.
fn etag_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let v = headers.get(reqwest::header::ETAG)?.to_str().ok()?;
    let ok = v.len() <= MAX_ETAG
        && v.len() >= 2
        && v.starts_with('"')
        && v.ends_with('"')
        && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_string())
}

/// A download that failed, naming the URL.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason} (hint: {hint})")]
pub struct DownloadError {
    /// The URL.
    pub url: String,
    /// What went wrong.
    pub reason: String,
    /// What to do.
    pub hint: String,
    /// True when the server answered (a 4xx status, a body too big): the Dockerfile's
    /// doing; false for the network or the disk.
    pub input: bool,
}

impl Session {
    /// Downloads `d.url` into `out`. Redirects are followed; a connection that fails before
    /// any byte arrives is tried twice more; nothing arriving for `--timeout` is a stall.
    pub fn download(&self, d: &Download<'_>, out: &mut dyn Write) -> Result<Downloaded, DownloadError> {
        let err = |reason: String, hint: &str, input: bool| DownloadError {
            url: d.url.to_string(),
            reason,
            hint: hint.to_string(),
            input,
        };
        let host = host_of(d.url).ok_or_else(|| {
            err(
                "not an http:// or https:// URL".into(),
                "ADD downloads http(s) URLs only",
                true,
            )
        })?;
        let reg = self
            .registry(&host)
            .map_err(|e| err(e.to_string(), "check --cert-dir and --ca-file", true))?;
        let timeout = reg.timeout();
        let stalled = |p: &Progress| {
            err(
                format!("no progress for {}s", p.idle().as_secs()),
                "the server accepts connections but does not answer; check it, or give it longer with --timeout SECONDS",
                false,
            )
        };
        self.block_on(async {
            let progress = Progress::new();
            let mut attempt = 0;
            let mut resp = loop {
                let mut req = reg.http().get(d.url);
                if let Some(tag) = d.if_none_match {
                    req = req.header(reqwest::header::IF_NONE_MATCH, tag);
                }
                let sent = crate::stall::within(req.send(), &progress, timeout).await;
                match sent.map_err(|_| stalled(&progress))? {
                    Ok(r) => break r,
                    Err(e) if attempt < 2 && (e.is_connect() || e.is_request()) => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(300 * attempt)).await;
                    }
                    Err(e) => {
                        return Err(err(
                            crate::client::error_chain(&e),
                            "check the URL and the network (and https_proxy)",
                            false,
                        ));
                    }
                }
            };
            progress.tick();
            let status = resp.status().as_u16();
            let last_modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date);
            let etag = etag_of(resp.headers());
            if status == 304 && d.if_none_match.is_some() {
                return Ok(Downloaded {
                    size: 0,
                    last_modified,
                    etag,
                    not_modified: true,
                });
            }
            if !(200..300).contains(&status) {
                let input = (400..500).contains(&status);
                return Err(err(
                    format!("HTTP {status}"),
                    if input {
                        "check the URL in the ADD instruction"
                    } else {
                        "the server failed; try again later"
                    },
                    input,
                ));
            }
            let too_big = || {
                err(
                    format!("more than the {} bytes kiln accepts for one file", d.limit),
                    "download it in a RUN step, or vendor it into the context",
                    true,
                )
            };
            if resp.content_length().is_some_and(|n| n > d.limit) {
                return Err(too_big());
            }
            let mut size = 0u64;
            loop {
                let chunk = crate::stall::within(resp.chunk(), &progress, timeout)
                    .await
                    .map_err(|_| stalled(&progress))?
                    .map_err(|e| err(crate::client::error_chain(&e), "the transfer broke; try again", false))?;
                let Some(chunk) = chunk else { break };
                progress.tick();
                size += chunk.len() as u64;
                if size > d.limit {
                    return Err(too_big());
                }
                out.write_all(&chunk)
                    .map_err(|e| err(format!("writing the download: {e}"), "check the disk", false))?;
            }
            Ok(Downloaded {
                size,
                last_modified,
                etag,
                not_modified: false,
            })
        })
    }
}

/// `host[:port]` of an http(s) URL.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let hostport = rest.split(['/', '?', '#']).next()?;
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    (!hostport.is_empty()).then(|| hostport.to_string())
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's preferred form) as seconds
/// since the epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let d: i64 = day.parse().ok()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| *x == month)? as i64 + 1;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, sec] = hms[..] else { return None };
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strong_short_visible_etags_are_kept() {
        let tag = |v: &str| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(reqwest::header::ETAG, v.parse().unwrap());
            etag_of(&h)
        };
        assert_eq!(tag("\"abc-1\"").as_deref(), Some("\"abc-1\""));
        assert_eq!(tag("W/\"abc\""), None, "weak: equivalent, not the same bytes");
        assert_eq!(tag("abc"), None, "not quoted");
        assert_eq!(tag("\"a b\""), None, "not visible ASCII");
        assert_eq!(tag(&format!("\"{}\"", "x".repeat(MAX_ETAG))), None, "too long");
        assert_eq!(etag_of(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn http_dates_and_hosts() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(
            host_of("https://u:p@example.org:8443/a?b").as_deref(),
            Some("example.org:8443")
        );
        assert_eq!(host_of("http://127.0.0.1:80").as_deref(), Some("127.0.0.1:80"));
        assert_eq!(host_of("ftp://x/y"), None);
    }
}
