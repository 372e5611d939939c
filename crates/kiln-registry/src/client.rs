//! One registry host: transport choice (HTTPS, or HTTP only where allowed), authentication
//! (Basic, or Bearer tokens per scope), and the retry loop every request goes through.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::sync::OnceCell;

use crate::auth::{self, Credentials};
use crate::error::{RegistryError, Result};
use crate::stall::{Progress, within};

/// The largest manifest or index kiln reads, as containerd: a bigger one is refused, never
/// buffered.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest token server answer kiln reads.
pub const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// How much of an error body kiln reads for its message.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// How hard to retry transient failures: connection errors, 429, 500 (idempotent requests
/// only), 502, 503, 504.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts per request, including the first.
    pub attempts: u32,
    /// First backoff; doubles each time, with jitter.
    pub base: Duration,
    /// Longest single wait (also caps a registry's Retry-After).
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(4),
        }
    }
}

impl Retry {
    /// The wait before attempt `n + 1` (n counts from 0): exponential with "equal jitter",
    /// so clients that failed together do not come back together.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << n.min(16)).min(self.cap);
        let half = exp / 2;
        half + Duration::from_nanos(jitter(half.as_nanos() as u64))
    }
}

fn jitter(max: u64) -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    if max == 0 {
        return 0;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % max
}

pub use crate::transfer::ProgressFn;

/// Settings shared by every registry a command talks to.
#[derive(Clone)]
pub struct Options {
    /// Hosts (`host` or `host:port`) that may be reached over plain HTTP, as with docker's
    /// `--insecure-registry`. Loopback hosts always may.
    pub insecure_registries: Vec<String>,
    /// A directory of extra CA certificates (`*.crt`) and an optional client certificate
    /// (`*.cert` + `*.key`), as in podman/skopeo `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// One more CA bundle (PEM).
    pub ca_file: Option<PathBuf>,
    /// Credentials file (`--authfile`); default per [`auth::auth_file_path`].
    pub auth_file: Option<PathBuf>,
    /// Credentials that override the file (`--creds USER:PASS`).
    pub credentials: Option<Credentials>,
    /// Retry policy.
    pub retry: Retry,
    /// Blobs larger than this are uploaded in chunks of this size (PATCH), so a broken
    /// connection costs one chunk, not the whole layer.
    pub chunk_size: u64,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Where to report blob transfers (begun, bytes moved, finished), if anywhere.
    pub progress: Option<ProgressFn>,
    /// How long an operation may go without progress (no answer, no byte moving) before
    /// kiln gives up on the registry (`--timeout`).
    pub timeout: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("insecure_registries", &self.insecure_registries)
            .field("cert_dir", &self.cert_dir)
            .field("ca_file", &self.ca_file)
            .field("auth_file", &self.auth_file)
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .field("chunk_size", &self.chunk_size)
            .field("jobs", &self.jobs)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure_registries: vec![],
            cert_dir: None,
            ca_file: None,
            auth_file: None,
            credentials: None,
            retry: Retry::default(),
            chunk_size: 64 << 20,
            jobs: 6,
            progress: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without a port): plain HTTP to
/// these never leaves the machine.
pub fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    h == "localhost" || h == "::1" || h.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The host to connect to for a registry name (Docker Hub's name is not its API host).
fn endpoint_for(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
        h => h.to_string(),
    }
}

#[derive(Debug, Clone)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// Parses a `WWW-Authenticate` header: `Bearer realm="…",service="…",scope="…"` or `Basic …`.
fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(k, v.to_string());
        s = tail.trim_start_matches(',').trim();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
    })
}

/// The `scope` for a repository, as token servers expect it.
pub fn scope(repository: &str, push: bool) -> String {
    if push {
        format!("repository:{repository}:pull,push")
    } else {
        format!("repository:{repository}:pull")
    }
}

/// The HTTP client settings every kiln download shares (registries and Debian mirrors):
/// rustls with the platform's roots (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus
/// `opts.ca_file`, `opts.cert_dir` and the `certs.d/HOST` directories of podman and docker
/// (CA `*.crt`, client `*.cert` + `*.key`), a connect timeout, kiln's User-Agent, and
/// proxies from the standard environment (`http_proxy`, `https_proxy`, `no_proxy`).
pub fn client_builder(host: &str, opts: &Options) -> Result<reqwest::ClientBuilder> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No read timeout: registries judge stalls by progress per operation (crate::stall);
    // Debian mirrors add their own.
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15).min(opts.timeout))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")));
    let mut certs = Vec::new();
    let mut ca_paths: Vec<PathBuf> = opts.ca_file.iter().cloned().collect();
    let mut cert_dirs: Vec<PathBuf> = opts.cert_dir.iter().cloned().collect();
    for d in ["/etc/containers/certs.d", "/etc/docker/certs.d"] {
        let p = Path::new(d).join(host);
        if p.is_dir() {
            cert_dirs.push(p);
        }
    }
    let mut identity: Option<(PathBuf, PathBuf)> = None;
    for dir in &cert_dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| RegistryError::Config {
            path: dir.clone(),
            reason: e.to_string(),
            hint: "--cert-dir must be a directory of *.crt CA files".into(),
        })?;
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => ca_paths.push(p),
                Some("cert") => {
                    let key = p.with_extension("key");
                    if key.is_file() {
                        identity = Some((p, key));
                    }
                }
                _ => {}
            }
        }
    }
    for p in &ca_paths {
        let pem = std::fs::read(p).map_err(|e| RegistryError::Config {
            path: p.clone(),
            reason: e.to_string(),
            hint: "give a readable PEM file of CA certificates".into(),
        })?;
        let mut c = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Config {
            path: p.clone(),
            reason: format!("not a PEM certificate bundle: {e}"),
            hint: "give the CA certificate in PEM form".into(),
        })?;
        if c.is_empty() {
            return Err(RegistryError::Config {
                path: p.clone(),
                reason: "no certificates in the file".into(),
                hint: "give the CA certificate in PEM form".into(),
            });
        }
        certs.append(&mut c);
    }
    if !certs.is_empty() {
        b = b.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(&cert).unwrap_or_default();
        pem.extend(std::fs::read(&key).unwrap_or_default());
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| RegistryError::Config {
            path: cert.clone(),
            reason: format!("client certificate and key unusable: {e}"),
            hint: "give a PEM certificate and its PEM private key".into(),
        })?;
        b = b.identity(id);
    }
    Ok(b)
}

/// A connection to one registry host. Cheap to clone; clones share tokens and the
/// transport decision.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    endpoint: String,
    http: reqwest::Client,
    opts: Arc<Options>,
    allow_http: bool,
    base: OnceCell<String>,
    creds: OnceCell<Option<Credentials>>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, String>>,
    pushing: Mutex<HashMap<(String, kiln_oci::Digest), BlobPushLock>>,
}

/// Held while one blob goes into one repository. docker-registry (distribution 2.8)
/// rewrites a blob's link file in place (truncate, then write) on every upload and mount,
/// so a second push of the same blob running beside a manifest PUT that names it makes the
/// PUT read an empty link and fail with MANIFEST_BLOB_UNKNOWN. One push per blob and
/// repository at a time: the second waits, then finds the blob present and writes nothing.
pub(crate) type BlobPushLock = Arc<tokio::sync::Mutex<()>>;

/// How a response status is treated by [`Registry::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    /// Safe to repeat: retried on connection errors and 429/500/502/503/504.
    Yes,
    /// Not safe (a PATCH that may have been half applied): returned to the caller, which
    /// knows how to resume.
    No,
}

impl Registry {
    /// A client for `host` (`host`, `host:port`, or `docker.io`).
    pub fn new(host: &str, opts: Arc<Options>) -> Result<Registry> {
        let b = client_builder(host, &opts)?;
        let http = b.build().map_err(|e| RegistryError::Config {
            path: PathBuf::from(host),
            reason: format!("cannot set up HTTPS: {e}"),
            hint: "check --cert-dir and --ca-file".into(),
        })?;
        let allow_http = is_loopback(host) || opts.insecure_registries.iter().any(|h| h == host);
        Ok(Registry {
            inner: Arc::new(Inner {
                host: host.to_string(),
                endpoint: endpoint_for(host),
                http,
                opts,
                allow_http,
                base: OnceCell::new(),
                creds: OnceCell::new(),
                challenge: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
                pushing: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The lock a push of `digest` into `repository` holds (see [`BlobPushLock`]).
    pub(crate) fn blob_push_lock(&self, repository: &str, digest: &kiln_oci::Digest) -> BlobPushLock {
        let mut m = self.inner.pushing.lock().unwrap();
        m.entry((repository.to_string(), digest.clone())).or_default().clone()
    }

    /// Lets go of a lock from [`Registry::blob_push_lock`]; the last holder removes it from
    /// the map, so a long session does not keep one per blob it ever pushed. Clones are
    /// made only under the map's mutex, so the count read under it is exact.
    pub(crate) fn release_blob_push_lock(&self, repository: &str, digest: &kiln_oci::Digest, lock: BlobPushLock) {
        let mut m = self.inner.pushing.lock().unwrap();
        if Arc::strong_count(&lock) == 2 {
            m.remove(&(repository.to_string(), digest.clone()));
        }
    }

    /// The registry host as named.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Announces `blobs` downloads of `bytes` in all to the progress sink, if there is one.
    pub(crate) fn planned(&self, blobs: usize, bytes: u64) {
        if let Some(p) = &self.inner.opts.progress {
            p(&crate::transfer::TransferEvent::Planned { blobs, bytes });
        }
    }

    /// A reporter of one blob's transfer to the progress sink, if there is one.
    pub(crate) fn meter(&self, digest: &kiln_oci::Digest) -> crate::transfer::Meter {
        crate::transfer::Meter::new(self.inner.opts.progress.clone(), digest)
    }

    /// The underlying HTTP client (for absolute URLs such as upload locations).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    async fn credentials(&self) -> Result<Option<Credentials>> {
        self.inner
            .creds
            .get_or_try_init(|| async {
                if let Some(c) = &self.inner.opts.credentials {
                    return Ok(Some(c.clone()));
                }
                let path = auth::auth_file_path(self.inner.opts.auth_file.as_deref());
                let host = self.inner.host.clone();
                tokio::task::spawn_blocking(move || auth::lookup(&path, &host))
                    .await
                    .expect("credential lookup does not panic")
            })
            .await
            .cloned()
    }

    /// `https://host` or `http://host`, decided once by pinging `/v2/`. HTTPS is always
    /// tried first; HTTP only for loopback or `--insecure-registry` hosts, and never after
    /// a certificate error, which is reported instead.
    pub async fn base(&self) -> Result<String> {
        self.inner.base.get_or_try_init(|| self.ping()).await.cloned()
    }

    async fn ping(&self) -> Result<String> {
        let start = Instant::now();
        let progress = Progress::new();
        let retry = &self.inner.opts.retry;
        let schemes: &[&str] = if self.inner.allow_http {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut last = String::new();
        for attempt in 0..retry.attempts {
            for scheme in schemes {
                let url = format!("{scheme}://{}/v2/", self.inner.endpoint);
                let sent = self
                    .within(self.inner.http.get(&url).send(), &progress, "", "GET /v2/")
                    .await?;
                match sent {
                    Ok(resp) => {
                        if resp.status() == StatusCode::UNAUTHORIZED {
                            self.note_challenge(resp.headers());
                        }
                        if matches!(resp.status().as_u16(), 429 | 502..=504) {
                            last = format!("HTTP {}", resp.status().as_u16());
                            break;
                        }
                        return Ok(format!("{scheme}://{}", self.inner.endpoint));
                    }
                    Err(e) => {
                        let chain = error_chain(&e);
                        if *scheme == "https" && is_cert_error(&chain) {
                            return Err(RegistryError::Unreachable {
                                registry: self.inner.host.clone(),
                                repository: String::new(),
                                what: "TLS handshake".into(),
                                reason: format!("the certificate is not trusted: {chain}"),
                                attempts: attempt + 1,
                                secs: start.elapsed().as_secs_f64(),
                                hint: "give the registry's CA with --ca-file FILE or --cert-dir DIR".into(),
                            });
                        }
                        last = chain;
                    }
                }
            }
            if attempt + 1 < retry.attempts {
                self.backoff(retry.backoff(attempt), &progress, "", "GET /v2/").await?;
            }
        }
        Err(RegistryError::Unreachable {
            registry: self.inner.host.clone(),
            repository: String::new(),
            what: "connecting".into(),
            reason: last,
            attempts: retry.attempts,
            secs: start.elapsed().as_secs_f64(),
            hint: if self.inner.allow_http {
                "is the registry running and listening on that address?".into()
            } else {
                "is the registry running? plain HTTP is only used for loopback hosts or --insecure-registry".into()
            },
        })
    }

    fn note_challenge(&self, headers: &HeaderMap) {
        if let Some(c) = headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .filter_map(parse_challenge)
            .next()
        {
            *self.inner.challenge.lock().unwrap() = Some(c);
        }
    }

    async fn authorization(&self, scope: &str) -> Result<Option<HeaderValue>> {
        let challenge = self.inner.challenge.lock().unwrap().clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials().await?.map(|c| {
                let v = format!("Basic {}", B64.encode(format!("{}:{}", c.username, c.password)));
                HeaderValue::from_str(&v).expect("base64 is a valid header")
            })),
            Some(Challenge::Bearer { .. }) => Ok(self
                .inner
                .tokens
                .lock()
                .unwrap()
                .get(scope)
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())),
        }
    }

    async fn fetch_token(&self, repository: &str, scope: &str) -> Result<()> {
        let Some(Challenge::Bearer { realm, service }) = self.inner.challenge.lock().unwrap().clone() else {
            return Ok(());
        };
        crate::token::check_realm(&realm, &self.inner.host, repository, self.inner.allow_http)?;
        let what = format!("token from {realm}");
        // A realm that does not parse will not start to by asking again.
        if reqwest::Url::parse(&realm).is_err() {
            return Err(RegistryError::Invalid {
                registry: self.inner.host.clone(),
                repository: repository.to_string(),
                what,
                reason: format!("the auth challenge names token realm {realm:?}, which is not a URL"),
                hint: "the registry's token auth is misconfigured; check its auth settings".into(),
            });
        }
        let creds = self.credentials().await?;
        let retry = &self.inner.opts.retry;
        let start = Instant::now();
        let progress = Progress::new();
        let realm_host = reqwest::Url::parse(&realm)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_default();
        // A stall here is the token server's, and the message names it.
        let at_realm = |e: RegistryError| match e {
            RegistryError::Stalled { secs, .. } => RegistryError::Stalled {
                registry: realm_host.clone(),
                repository: repository.to_string(),
                what: what.clone(),
                secs,
                hint: format!(
                    "the token server {realm_host} accepts connections but does not answer; check it, or give it longer with --timeout SECONDS"
                ),
            },
            e => e,
        };
        let mut last = String::new();
        for attempt in 0..retry.attempts {
            // `kiln login` asks for no repository: no scope parameter then, as docker does.
            let rb = crate::token::request(&self.inner.http, &realm, service.as_deref(), scope, creds.as_ref());
            match self
                .within(rb.send(), &progress, repository, &what)
                .await
                .map_err(at_realm)?
            {
                Ok(resp) if resp.status().is_success() => {
                    let body = self
                        .read_body(repository, &what, resp, MAX_TOKEN_BYTES, &progress)
                        .await
                        .map_err(at_realm)?;
                    let v: serde_json::Value =
                        serde_json::from_slice(&body).map_err(|e| self.invalid(repository, "token", e))?;
                    let token = v
                        .get("token")
                        .or_else(|| v.get("access_token"))
                        .and_then(|t| t.as_str())
                        .ok_or_else(|| self.invalid(repository, "token", "the token server sent no token"))?;
                    self.inner
                        .tokens
                        .lock()
                        .unwrap()
                        .insert(scope.to_string(), token.to_string());
                    return Ok(());
                }
                Ok(resp) if matches!(resp.status().as_u16(), 429 | 502..=504) => {
                    progress.tick();
                    last = format!("HTTP {}", resp.status().as_u16());
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let detail = detail_of(resp).await;
                    return Err(RegistryError::Http {
                        registry: self.inner.host.clone(),
                        repository: repository.to_string(),
                        what,
                        status,
                        detail,
                        hint: auth_hint(creds.is_some()),
                    });
                }
                Err(e) => last = error_chain(&e),
            }
            if attempt + 1 < retry.attempts {
                self.backoff(retry.backoff(attempt), &progress, repository, &what)
                    .await?;
            }
        }
        Err(RegistryError::Unreachable {
            registry: self.inner.host.clone(),
            repository: repository.to_string(),
            what,
            reason: last,
            attempts: retry.attempts,
            secs: start.elapsed().as_secs_f64(),
            hint: "is the token server reachable?".into(),
        })
    }

    /// Checks that the registry accepts the session's credentials (for `kiln login`): a
    /// `GET /v2/` that answers the auth challenge with a token or Basic credentials.
    pub async fn check_login(&self) -> Result<()> {
        let resp = self
            .send("", "login", "", Idempotent::Yes, &|c, base| {
                c.get(format!("{base}/v2/"))
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error("", "login", resp).await)
        }
    }

    /// Sends a request built by `make` (given the base URL) with authentication, handling
    /// one auth challenge and, for idempotent requests, retrying transient failures. Any
    /// other status is returned for the caller to judge. The whole exchange fails once
    /// nothing has happened for `--timeout`.
    pub async fn send(
        &self,
        repository: &str,
        what: &str,
        scope: &str,
        idempotent: Idempotent,
        make: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        self.send_with(repository, what, scope, idempotent, make, &Progress::new())
            .await
    }

    /// [`Registry::send`] on the progress clock of a longer operation (a blob transfer, whose
    /// body chunks also move it).
    pub async fn send_with(
        &self,
        repository: &str,
        what: &str,
        scope: &str,
        idempotent: Idempotent,
        make: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Sync),
        progress: &Progress,
    ) -> Result<Response> {
        let base = self.base().await.map_err(|mut e| {
            // The ping knows no repository; the error should still name the one asked for.
            if let RegistryError::Unreachable { repository: r, .. } | RegistryError::Stalled { repository: r, .. } =
                &mut e
                && r.is_empty()
            {
                *r = repository.to_string();
            }
            e
        })?;
        let retry = &self.inner.opts.retry;
        let start = Instant::now();
        let mut authed_once = false;
        let mut attempt = 0;
        loop {
            let mut rb = make(&self.inner.http, &base);
            if let Some(h) = self.authorization(scope).await? {
                rb = rb.header(reqwest::header::AUTHORIZATION, h);
            }
            let (reason, wait) = match self.within(rb.send(), progress, repository, what).await? {
                Ok(resp) => {
                    progress.tick();
                    let status = resp.status().as_u16();
                    if status == 401 && !authed_once {
                        authed_once = true;
                        self.note_challenge(resp.headers());
                        let has_creds = self.credentials().await?.is_some();
                        let challenge = self.inner.challenge.lock().unwrap().clone();
                        match challenge {
                            Some(Challenge::Bearer { .. }) => self.fetch_token(repository, scope).await?,
                            Some(Challenge::Basic) if has_creds => {}
                            _ => return Ok(resp),
                        }
                        continue;
                    }
                    // 500 too: docker-registry answers it for passing storage races, and an
                    // idempotent request is safe to repeat.
                    if idempotent == Idempotent::Yes && matches!(status, 429 | 500 | 502..=504) {
                        let after = resp
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|s| Duration::from_secs(s).min(retry.cap));
                        (format!("HTTP {status}"), after)
                    } else {
                        return Ok(resp);
                    }
                }
                Err(e) if idempotent == Idempotent::Yes => (error_chain(&e), None),
                Err(e) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.inner.host.clone(),
                        repository: repository.to_string(),
                        what: what.to_string(),
                        reason: error_chain(&e),
                        attempts: attempt + 1,
                        secs: start.elapsed().as_secs_f64(),
                        hint: "the request is not safe to repeat as is".into(),
                    });
                }
            };
            attempt += 1;
            if attempt >= retry.attempts {
                return Err(RegistryError::Unreachable {
                    registry: self.inner.host.clone(),
                    repository: repository.to_string(),
                    what: what.to_string(),
                    reason,
                    attempts: attempt,
                    secs: start.elapsed().as_secs_f64(),
                    hint: "the registry keeps failing; check that it is running and healthy, then try again".into(),
                });
            }
            tracing::debug!("{}/{repository}: {what}: {reason}; retrying", self.inner.host);
            self.backoff(
                wait.unwrap_or_else(|| retry.backoff(attempt - 1)),
                progress,
                repository,
                what,
            )
            .await?;
        }
    }

    /// An HTTP error for an unexpected status, with the registry's own error message.
    pub async fn status_error(&self, repository: &str, what: &str, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let hint = match status {
            401 => auth_hint(self.credentials().await.ok().flatten().is_some()),
            403 => "your credentials do not allow this; check the account's permissions".to_string(),
            404 => "check the repository and tag names".to_string(),
            405 => "the registry does not allow this operation (read-only or a proxy?)".to_string(),
            _ => "check the registry's logs".to_string(),
        };
        let detail = detail_of(resp).await;
        RegistryError::Http {
            registry: self.inner.host.clone(),
            repository: repository.to_string(),
            what: what.to_string(),
            status,
            detail,
            hint,
        }
    }

    /// An [`RegistryError::Invalid`] for this registry.
    pub fn invalid(&self, repository: &str, what: &str, reason: impl std::fmt::Display) -> RegistryError {
        RegistryError::Invalid {
            registry: self.inner.host.clone(),
            repository: repository.to_string(),
            what: what.to_string(),
            reason: reason.to_string(),
            hint: "the registry sent something unexpected; check its logs".into(),
        }
    }

    /// An [`RegistryError::Unreachable`] for a failure outside [`Registry::send`] (a body
    /// cut mid-stream after every retry).
    pub fn unreachable(
        &self,
        repository: &str,
        what: &str,
        reason: String,
        attempts: u32,
        start: Instant,
    ) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.inner.host.clone(),
            repository: repository.to_string(),
            what: what.to_string(),
            reason,
            attempts,
            secs: start.elapsed().as_secs_f64(),
            hint: "the connection keeps breaking; check the network and the registry, then try again".into(),
        }
    }

    /// Resolves a `Location` header against the base URL.
    pub async fn absolute(&self, location: &str) -> Result<String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Ok(location.to_string());
        }
        let base = self.base().await?;
        Ok(format!("{base}{}", if location.starts_with('/') { "" } else { "/" }) + location)
    }

    /// Sends a request to an absolute URL (an upload location), with the same auth and
    /// retry handling as [`Registry::send`], on the progress clock of its operation (the
    /// third part of the method-and-URL triple).
    pub async fn send_url(
        &self,
        repository: &str,
        what: &str,
        scope: &str,
        idempotent: Idempotent,
        (method, url, progress): (Method, &str, &Progress),
        decorate: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        self.send_with(
            repository,
            what,
            scope,
            idempotent,
            &|c, _| decorate(c.request(method.clone(), url)),
            progress,
        )
        .await
    }

    /// The `--timeout` in force.
    pub fn timeout(&self) -> Duration {
        self.inner.opts.timeout
    }

    /// Awaits `fut` on `progress`'s clock: a [`RegistryError::Stalled`] naming this host if
    /// nothing happens for the timeout.
    pub async fn within<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
        progress: &Progress,
        repository: &str,
        what: &str,
    ) -> Result<T> {
        within(fut, progress, self.inner.opts.timeout)
            .await
            .map_err(|stalled| self.stalled(repository, what, stalled.0))
    }

    /// The error for an operation that made no progress for `idle`.
    pub fn stalled(&self, repository: &str, what: &str, idle: Duration) -> RegistryError {
        RegistryError::Stalled {
            registry: self.inner.host.clone(),
            repository: repository.to_string(),
            what: what.to_string(),
            secs: idle.as_secs_f64(),
            hint: format!(
                "{} accepts connections but does not answer; check it (or a proxy in between), or give it longer with --timeout SECONDS (now {})",
                self.inner.host,
                self.inner.opts.timeout.as_secs()
            ),
        }
    }

    /// Waits `wait` before a retry, unless that would take the operation past its timeout
    /// without progress: then it is a stall.
    async fn backoff(&self, wait: Duration, progress: &Progress, repository: &str, what: &str) -> Result<()> {
        let timeout = self.inner.opts.timeout;
        if progress.idle() + wait >= timeout {
            return Err(self.stalled(repository, what, progress.idle() + wait));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Reads a response body of at most `limit` bytes on `progress`'s clock. A bigger body
    /// is refused as soon as it is seen to be bigger (from its Content-Length, or when the
    /// bytes pass the limit), so memory stays bounded whatever the registry sends.
    pub async fn read_body(
        &self,
        repository: &str,
        what: &str,
        mut resp: Response,
        limit: u64,
        progress: &Progress,
    ) -> Result<bytes::Bytes> {
        let too_big = |n: String| {
            self.invalid(
                repository,
                what,
                format!("the answer is {n} bytes, more than the {limit} kiln accepts"),
            )
        };
        if let Some(n) = resp.content_length()
            && n > limit
        {
            return Err(too_big(n.to_string()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = self
            .within(resp.chunk(), progress, repository, what)
            .await?
            .map_err(|e| self.unreachable(repository, what, error_chain(&e), 1, Instant::now()))?
        {
            progress.tick();
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_big(format!("more than {limit}")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }
}

fn auth_hint(had_creds: bool) -> String {
    if had_creds {
        "the registry rejected the credentials; check the user name and password, then `kiln login` again".into()
    } else {
        "the registry needs credentials; run `kiln login HOST` or pass --creds USER:PASSWORD".into()
    }
}

/// `: CODE message` from a registry's error body, or empty.
async fn detail_of(mut resp: Response) -> String {
    // Bounded in size and time: an error body is only for the message.
    let mut raw = Vec::new();
    let progress = Progress::new();
    while let Ok(Ok(Some(chunk))) = within(resp.chunk(), &progress, Duration::from_secs(10)).await {
        raw.extend_from_slice(&chunk);
        if raw.len() as u64 > MAX_ERROR_BYTES {
            raw.truncate(MAX_ERROR_BYTES as usize);
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(errs) = v.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errs
            .iter()
            .map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                // distribution puts the blob or tag at fault in `detail`: worth showing.
                let detail = match e.get("detail") {
                    Some(serde_json::Value::String(d)) if !d.is_empty() && d.len() <= 160 => format!(" ({d})"),
                    _ => String::new(),
                };
                format!("{code} {msg}{detail}").trim().to_string()
            })
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let t = text.trim();
    if t.is_empty() || t.len() > 200 {
        String::new()
    } else {
        format!(": {}", t.replace('\n', " "))
    }
}

/// The error and its sources on one line ("error sending request: connection refused").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn is_cert_error(chain: &str) -> bool {
    let c = chain.to_ascii_lowercase();
    c.contains("certificate") || c.contains("unknownissuer") || c.contains("invalid peer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_push_locks_are_shared_and_the_last_holder_removes_them() {
        let r = Registry::new("127.0.0.1:5000", Arc::new(Options::default())).unwrap();
        let d = kiln_oci::Digest::sha256_of(b"layer");
        let a = r.blob_push_lock("app", &d);
        let b = r.blob_push_lock("app", &d);
        assert!(Arc::ptr_eq(&a, &b), "one lock per repository and blob");
        assert!(!Arc::ptr_eq(&a, &r.blob_push_lock("other", &d)));
        r.release_blob_push_lock("other", &d, r.blob_push_lock("other", &d));
        r.release_blob_push_lock("app", &d, a);
        assert_eq!(r.inner.pushing.lock().unwrap().len(), 1, "b still holds it");
        r.release_blob_push_lock("app", &d, b);
        assert!(r.inner.pushing.lock().unwrap().is_empty());
    }

    #[test]
    fn challenges() {
        match parse_challenge(r#"Bearer realm="https://auth.io/token",service="reg.io",scope="repository:a:pull""#) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.io/token");
                assert_eq!(service.as_deref(), Some("reg.io"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_challenge(r#"Basic realm="x""#), Some(Challenge::Basic)));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost:5000", "127.0.0.1:1", "127.3.4.5", "[::1]:5000", "localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["registry.io", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_or_insecure_hosts() {
        let opts = Arc::new(Options {
            insecure_registries: vec!["10.0.0.9:5000".into()],
            ..Options::default()
        });
        let allowed = |h: &str| Registry::new(h, opts.clone()).unwrap().inner.allow_http;
        assert!(allowed("127.0.0.1:5000") && allowed("localhost:5000") && allowed("10.0.0.9:5000"));
        assert!(!allowed("10.0.0.9:5001") && !allowed("registry.example.com"));
        assert_eq!(
            Registry::new("docker.io", opts).unwrap().inner.endpoint,
            "registry-1.docker.io"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for n in 0..10 {
            let d = r.backoff(n);
            let exp = Duration::from_millis(100 * (1 << n.min(4))).min(Duration::from_secs(1));
            assert!(d >= exp / 2 && d <= exp, "{n}: {d:?}");
        }
    }
}
