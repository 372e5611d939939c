//! Registry harness: Debian's real `docker-registry` on a random loopback port (optionally
//! with htpasswd basic auth and/or TLS from a throwaway CA made with the openssl CLI), a
//! seeded fault-injecting TCP proxy to put between kiln and it, and helpers that write test
//! images (single-arch, multi-arch, big multi-layer) straight into OCI layouts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_oci::{Descriptor, Digest, Index, Manifest, Platform, Store, canonical_json, media};

use crate::{require_tool, run_ok};

/// How the registry is protected.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Basic auth with this user and password (htpasswd, bcrypt).
    pub htpasswd: Option<(String, String)>,
    /// Serve HTTPS with a certificate from a fresh CA.
    pub tls: bool,
    /// Bearer-token auth: (realm URL, certificate the tokens are signed with).
    pub token: Option<(String, PathBuf)>,
    /// The IP address to listen on and name the registry by (default 127.0.0.1); a
    /// non-loopback one makes a registry kiln must not treat as insecure.
    pub ip: Option<String>,
}

/// A running `docker-registry`; killed on drop.
pub struct TestRegistry {
    child: Option<Child>,
    /// `127.0.0.1:PORT` (or the configured IP).
    pub addr: String,
    /// Temp dir with config, storage, certificates.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM) when TLS is on.
    pub ca_cert: Option<PathBuf>,
    config: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestRegistry {
    /// Starts a plain-HTTP registry without auth.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(RegistryConfig::default())
    }

    /// Starts a registry with `cfg` and waits until it accepts connections.
    ///
    /// # Panics
    /// If `docker-registry` (or openssl/htpasswd when needed) is missing, or it never starts.
    pub fn start_with(cfg: RegistryConfig) -> TestRegistry {
        let bin = require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let addr = "ADDR".to_string();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: kiln-test-secret\n",
            dir.path().join("data").display()
        );
        let mut ca_cert = None;
        if cfg.tls {
            let (ca, cert, key) = make_certs_for(dir.path(), cfg.ip.as_deref());
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca_cert = Some(ca);
        }
        if let Some((u, p)) = &cfg.htpasswd {
            let htpasswd = require_tool("htpasswd");
            let out = run_ok(Command::new(htpasswd).args(["-Bbn", u, p]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                file.display()
            ));
        }
        if let Some((realm, cert)) = &cfg.token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: kiln-test-registry\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            ));
        }
        let config = dir.path().join("config.yml");
        let mut r = TestRegistry {
            child: None,
            addr,
            dir,
            ca_cert,
            config,
        };
        // Another test may grab the free port before the registry binds it: try again.
        for _ in 0..5 {
            r.addr = format!("{}:{}", cfg.ip.as_deref().unwrap_or("127.0.0.1"), free_port());
            std::fs::write(&r.config, yaml.replace("addr: ADDR", &format!("addr: {}", r.addr))).unwrap();
            if let Some(child) = r.spawn(&bin) {
                r.child = Some(child);
                return r;
            }
        }
        panic!("docker-registry could not bind a port; log:\n{}", r.log());
    }

    /// Starts docker-registry; `None` if it exited (its port was taken).
    fn spawn(&self, bin: &Path) -> Option<Child> {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.addr).is_err() {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {}; log:\n{}",
                self.addr,
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Something answered; make sure it is ours and not another test's registry.
        std::thread::sleep(Duration::from_millis(100));
        if matches!(child.try_wait(), Ok(Some(_))) {
            return None;
        }
        Some(child)
    }

    /// Stops the registry (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's port.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI.
/// Returns (ca.crt, server.crt, server.key).
pub fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    make_certs_for(dir, None)
}

/// [`make_certs`], the certificate also valid for `ip`.
pub fn make_certs_for(dir: &Path, ip: Option<&str>) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require_tool("openssl");
    let p = |n: &str| dir.join(n);
    let ossl = |args: &[&str]| {
        run_ok(Command::new(&openssl).args(args).current_dir(dir));
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kiln test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        p("ext.cnf"),
        format!(
            "subjectAltName=IP:127.0.0.1,DNS:localhost{}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            ip.map(|ip| format!(",IP:{ip}")).unwrap_or_default()
        ),
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    (p("ca.crt"), p("server.crt"), p("server.key"))
}

/// A small deterministic random generator (xorshift64*), so fault patterns and image bytes
/// are the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Fills a buffer.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// How often the proxy misbehaves (probabilities per request).
#[derive(Debug, Clone)]
pub struct Faults {
    /// Seed for the fault pattern.
    pub seed: u64,
    /// Answer 503 instead of forwarding.
    pub p503: f64,
    /// Answer 429 with `Retry-After: 1`.
    pub p429: f64,
    /// Hold the request back up to 300 ms.
    pub p_delay: f64,
    /// Cut a blob transfer (GET, PATCH, PUT with a body) after a random number of bytes.
    pub p_cut: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 42,
            p503: 0.05,
            p429: 0.03,
            p_delay: 0.1,
            p_cut: 0.12,
        }
    }
}

/// Counts of what the proxy did, so a test can show the faults really happened.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Requests seen.
    pub requests: AtomicU64,
    /// 503 answers.
    pub s503: AtomicU64,
    /// 429 answers.
    pub s429: AtomicU64,
    /// Delays.
    pub delays: AtomicU64,
    /// Transfers cut while the client was downloading.
    pub cuts_down: AtomicU64,
    /// Transfers cut while the client was uploading.
    pub cuts_up: AtomicU64,
}

/// A TCP proxy in front of a registry that forces `Connection: close` (so every request is a
/// new connection it can judge) and injects faults per [`Faults`]. The first eligible request
/// of each kind is always faulted, so every kind happens in every run.
pub struct FaultProxy {
    /// `127.0.0.1:PORT` to give kiln.
    pub addr: String,
    /// What it did.
    pub stats: Arc<FaultStats>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream`.
    pub fn start(upstream: &str, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stats = Arc::new(FaultStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let upstream: SocketAddr = upstream.parse().unwrap();
        let rng = Arc::new(Mutex::new(Rng::new(faults.seed)));
        let firsts = Arc::new(Mutex::new([true; 4]));
        {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (stats, rng, faults, firsts) = (stats.clone(), rng.clone(), faults.clone(), firsts.clone());
                    std::thread::spawn(move || {
                        let _ = handle(conn, upstream, &faults, &rng, &firsts, &stats);
                    });
                }
            });
        }
        FaultProxy { addr, stats, stop }
    }

    /// A one-line summary of the faults injected.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "{} requests: {} x 503, {} x 429, {} delays, {} downloads cut, {} uploads cut",
            s.requests.load(Ordering::Relaxed),
            s.s503.load(Ordering::Relaxed),
            s.s429.load(Ordering::Relaxed),
            s.delays.load(Ordering::Relaxed),
            s.cuts_down.load(Ordering::Relaxed),
            s.cuts_up.load(Ordering::Relaxed)
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: &Faults,
    rng: &Mutex<Rng>,
    firsts: &Mutex<[bool; 4]>,
    stats: &FaultStats,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 0 || first[0] == 0x16 {
        // A TLS ClientHello (kiln probing for HTTPS on a plain registry): refuse it.
        return Ok(());
    }
    // Read the request head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Ok(());
        }
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&head).to_string();
    let request_line = text.lines().next().unwrap_or_default().to_string();
    let method = request_line.split(' ').next().unwrap_or_default().to_string();
    let is_blob_get = method == "GET" && request_line.contains("/blobs/sha256:");
    let body_len: u64 = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-length:"))
        .and_then(|l| l[15..].trim().parse().ok())
        .unwrap_or(0);
    let has_body = (method == "PATCH" || method == "PUT") && body_len > 0;
    // Decide this request's fate.
    let (fate, delay, cut_at) = {
        let mut r = rng.lock().unwrap();
        let mut f = firsts.lock().unwrap();
        let fate = if f[0] && method == "HEAD" {
            f[0] = false;
            503
        } else if f[1] && method == "GET" && request_line.contains("/manifests/") {
            f[1] = false;
            429
        } else if r.chance(faults.p503) {
            503
        } else if r.chance(faults.p429) {
            429
        } else {
            0
        };
        let delay = r.chance(faults.p_delay).then(|| Duration::from_millis(r.below(300)));
        // Until one download and one upload have really been cut, cut every big transfer.
        let cut = if fate != 0 {
            None
        } else if is_blob_get && f[2] {
            Some(r.below(1 << 20) + 4096)
        } else if has_body && f[3] && body_len > (2 << 20) {
            Some(r.below(body_len / 2) + 4096)
        } else if (is_blob_get || has_body) && r.chance(faults.p_cut) {
            Some(r.below(8 << 20) + 1)
        } else {
            None
        };
        (fate, delay, cut)
    };
    if let Some(d) = delay {
        stats.delays.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(d);
    }
    if fate != 0 {
        let (line, counter) = if fate == 503 {
            ("HTTP/1.1 503 Service Unavailable", &stats.s503)
        } else {
            ("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1", &stats.s429)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = client.write_all(format!("{line}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        let _ = client.shutdown(Shutdown::Write);
        // Drain what the client is still sending so it reads our answer, not a reset.
        let mut sink = [0u8; 64 * 1024];
        client.set_read_timeout(Some(Duration::from_millis(500)))?;
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
        return Ok(());
    }
    // Forward with Connection: close.
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
    let up_cut = if has_body { cut_at } else { None };
    let down_cut = if is_blob_get { cut_at } else { None };
    let cut_flag = Arc::new(AtomicBool::new(false));
    let cf = cut_flag.clone();
    let uploader = std::thread::spawn(move || {
        let r = pump(&mut c2, &mut u2, up_cut);
        if r {
            cf.store(true, Ordering::Relaxed);
            let _ = u2.shutdown(Shutdown::Both);
            let _ = c2.shutdown(Shutdown::Both);
        } else {
            let _ = u2.shutdown(Shutdown::Write);
        }
    });
    let cut_down = pump(&mut up, &mut client, down_cut);
    if cut_down {
        let _ = client.shutdown(Shutdown::Both);
        let _ = up.shutdown(Shutdown::Both);
        stats.cuts_down.fetch_add(1, Ordering::Relaxed);
        firsts.lock().unwrap()[2] = false;
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = up.shutdown(Shutdown::Both);
    }
    let _ = uploader.join();
    if cut_flag.load(Ordering::Relaxed) {
        stats.cuts_up.fetch_add(1, Ordering::Relaxed);
        firsts.lock().unwrap()[3] = false;
    }
    Ok(())
}

/// Copies until EOF, or until `cut` bytes have passed (then returns true).
fn pump(from: &mut TcpStream, to: &mut TcpStream, cut: Option<u64>) -> bool {
    let mut buf = vec![0u8; 256 * 1024];
    let mut passed = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut n = n as u64;
        if let Some(c) = cut
            && passed + n >= c
        {
            n = c - passed;
            let _ = to.write_all(&buf[..n as usize]);
            return true;
        }
        if to.write_all(&buf[..n as usize]).is_err() {
            return false;
        }
        passed += n;
    }
}

/// One uncompressed tar layer holding a single file of `size` random bytes from `rng`.
pub fn random_layer(name: &str, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    let mut out = Vec::with_capacity(size + 2048);
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8], off: usize, len: usize, v: u64| {
        let s = format!("{:0width$o}\0", v, width = len - 1);
        h[off..off + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Writes an image with one layer per entry of `layer_sizes` (random files) into the layout
/// at `dir`, tags it `name` there, and returns its manifest descriptor.
pub fn write_image(
    dir: &Path,
    name: Option<&str>,
    layer_sizes: &[usize],
    platform: &Platform,
    seed: u64,
) -> Descriptor {
    let store = Store::open(dir).unwrap();
    let mut rng = Rng::new(seed);
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let tar = random_layer(&format!("file{i}"), *size, &mut rng);
        let d = store.put_blob(&tar).unwrap();
        diff_ids.push(d.to_string());
        layers.push(Descriptor::new(media::OCI_LAYER_TAR, d, tar.len() as u64));
    }
    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "variant": platform.variant,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layer_sizes.iter().map(|_| serde_json::json!({"created_by": "kiln test"})).collect::<Vec<_>>(),
    });
    let mut config = config;
    if platform.variant.is_none() {
        config.as_object_mut().unwrap().remove("variant");
    }
    let cfg_bytes = canonical_json(&config);
    let cfg = store.put_blob(&cfg_bytes).unwrap();
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, cfg, cfg_bytes.len() as u64),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = canonical_json(&m);
    let md = store.put_blob(&bytes).unwrap();
    let desc = Descriptor::new(media::OCI_MANIFEST, md, bytes.len() as u64);
    if let Some(n) = name {
        store.tag(n, &desc).unwrap();
    }
    desc
}

/// Writes a two-platform (linux/amd64, linux/arm64/v8) image and its index into the layout
/// at `dir`, tagged `name`; returns (index, amd64 manifest, arm64 manifest).
pub fn write_multiarch(dir: &Path, name: &str) -> (Descriptor, Descriptor, Descriptor) {
    let amd = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let arm = Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: Some("v8".into()),
    };
    let mut a = write_image(dir, None, &[4096, 10_000], &amd, 1);
    let mut b = write_image(dir, None, &[5000, 20_000], &arm, 2);
    a.platform = Some(amd);
    b.platform = Some(arm);
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: vec![a.clone(), b.clone()],
        annotations: BTreeMap::new(),
    };
    let store = Store::open(dir).unwrap();
    let bytes = canonical_json(&index);
    let d = store.put_blob(&bytes).unwrap();
    let desc = Descriptor::new(media::OCI_INDEX, d, bytes.len() as u64);
    store.tag(name, &desc).unwrap();
    (desc, a, b)
}

/// `skopeo` with TLS verification off for the loopback registry.
pub fn skopeo(args: &[&str]) -> std::process::Output {
    run_ok(Command::new(require_tool("skopeo")).args(args))
}

/// Parses a digest printed on the last line of a command's stdout.
pub fn last_digest(out: &std::process::Output) -> Digest {
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().last().unwrap_or_default().trim().to_string();
    line.parse()
        .unwrap_or_else(|e| panic!("not a digest: {line:?}: {e}\n{s}"))
}

/// Standard base64 (with padding) or, with `url`, unpadded base64url.
pub fn base64(data: &[u8], url: bool) -> String {
    let table: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=c.len() {
            out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            for _ in c.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// A Docker token server (the `auth: token` protocol) for [`TestRegistry`]: it answers
/// `GET /token?service=…&scope=…` with a JWT signed by a throwaway RSA key (via the openssl
/// CLI) whose certificate the registry trusts. Anonymous callers get `pull` on
/// repositories under `public/`; `user:password` gets what it asks for; a wrong password
/// gets 401. It also answers OAuth2 `POST /token` with a `refresh_token` grant (an
/// identity token, see [`TokenServer::start_with_refresh`]) or a `password` grant. Every
/// scope asked for is recorded, and how each request authenticated.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The certificate the registry must trust (`rootcertbundle`).
    pub cert: PathBuf,
    /// Every `scope` parameter received, in order, with the user (or `-`).
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
    /// How each request authenticated: `anonymous`, `basic`, `refresh_token`, `password`
    /// (the OAuth2 grants), or `rejected`.
    pub grants: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    addr: String,
}

impl TokenServer {
    /// Starts it for one user.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        TokenServer::start_with_refresh(dir, user, password, "")
    }

    /// Starts it for one user who also holds the identity token `refresh` (none if empty).
    pub fn start_with_refresh(dir: &Path, user: &str, password: &str, refresh: &str) -> TokenServer {
        let openssl = require_tool("openssl");
        run_ok(Command::new(&openssl).current_dir(dir).args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kiln token",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
        ]));
        let der = run_ok(
            Command::new(&openssl)
                .current_dir(dir)
                .args(["x509", "-in", "token.crt", "-outform", "DER"]),
        )
        .stdout;
        let x5c = base64(&der, false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let grants = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, user, password) = (dir.to_path_buf(), user.to_string(), password.to_string());
        let refresh = refresh.to_string();
        let cert = dir.join("token.crt");
        {
            let (requests, grants, stop) = (requests.clone(), grants.clone(), stop.clone());
            std::thread::spawn(move || {
                let counter = AtomicU64::new(0);
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let who = Who {
                        user: &user,
                        password: &password,
                        refresh: &refresh,
                    };
                    let _ = serve_token(&mut conn, &dir, &openssl, &x5c, &who, &requests, &grants, n);
                }
            });
        }
        TokenServer {
            realm: format!("http://{addr}/token"),
            cert,
            requests,
            grants,
            stop,
            addr,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// The one account a [`TokenServer`] knows.
struct Who<'a> {
    user: &'a str,
    password: &'a str,
    refresh: &'a str,
}

/// Percent-decoding of a query string or form value (`+` is a space).
fn form_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(h.unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[allow(clippy::too_many_arguments)]
fn serve_token(
    conn: &mut TcpStream,
    dir: &Path,
    openssl: &Path,
    x5c: &str,
    account: &Who<'_>,
    requests: &Mutex<Vec<(String, String)>>,
    grants: &Mutex<Vec<String>>,
    n: u64,
) -> std::io::Result<()> {
    let (user, password) = (account.user, account.password);
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let target = text
        .lines()
        .next()
        .unwrap_or_default()
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let post = text.starts_with("POST ");
    let body = if post {
        let len: usize = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(1 << 16)];
        conn.read_exact(&mut body)?;
        String::from_utf8_lossy(&body).to_string()
    } else {
        String::new()
    };
    let query = if post {
        body.as_str()
    } else {
        target.split_once('?').map(|(_, q)| q).unwrap_or_default()
    };
    let mut service = String::new();
    let mut scopes = Vec::new();
    let mut form = BTreeMap::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("service", v)) => service = form_decode(v),
            // OAuth2 joins scopes with spaces in one field.
            Some(("scope", v)) => {
                scopes.extend(form_decode(v).split(' ').filter(|s| !s.is_empty()).map(str::to_string))
            }
            Some((k, v)) => {
                form.insert(k.to_string(), form_decode(v));
            }
            None => {}
        }
    }
    let given = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization: basic "))
        .map(|l| l[21..].trim().to_string());
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let (grant, ok) = match (post, field("grant_type"), given) {
        (true, "refresh_token", _) => (
            "refresh_token",
            !account.refresh.is_empty() && field("refresh_token") == account.refresh,
        ),
        (true, "password", _) => ("password", field("username") == user && field("password") == password),
        (true, _, _) => ("unsupported grant", false),
        (false, _, None) => ("anonymous", true),
        (false, _, Some(b)) => ("basic", b == base64(format!("{user}:{password}").as_bytes(), false)),
    };
    grants
        .lock()
        .unwrap()
        .push(if ok { grant.to_string() } else { "rejected".to_string() });
    if !ok {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let who = (grant != "anonymous").then(|| user.to_string());
    let mut access = Vec::new();
    for scope in &scopes {
        requests
            .lock()
            .unwrap()
            .push((scope.clone(), who.clone().unwrap_or_else(|| "-".into())));
        let parts: Vec<&str> = scope.split(':').collect();
        if parts.len() != 3 {
            continue;
        }
        let wanted: Vec<&str> = parts[2].split(',').collect();
        let granted: Vec<&str> = if who.is_some() {
            wanted
        } else if parts[1].starts_with("public/") {
            wanted.into_iter().filter(|a| *a == "pull").collect()
        } else {
            vec![]
        };
        access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": granted}));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "kiln-test-issuer", "sub": who.clone().unwrap_or_default(), "aud": service,
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("kiln-{n}"), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true)
    );
    let input_file = dir.join(format!("jwt-{n}"));
    std::fs::write(&input_file, &signing_input)?;
    let sig = Command::new(openssl)
        .current_dir(dir)
        .args(["dgst", "-sha256", "-sign", "token.key", "-binary"])
        .arg(&input_file)
        .output()?;
    let jwt = format!("{signing_input}.{}", base64(&sig.stdout, true));
    let body = serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 600}).to_string();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// What the policy and serve tests sign and push with: a store, a docker-registry on
/// loopback, an empty `DOCKER_CONFIG` (no host credentials) and a scratch directory holding
/// cosign key pairs (password empty).
pub struct SigningEnv {
    /// The kiln store.
    pub store: crate::KilnStore,
    /// `DOCKER_CONFIG` for every kiln command.
    pub docker: tempfile::TempDir,
    /// Scratch files: keys, contexts, policies.
    pub dir: tempfile::TempDir,
    /// The registry images are pushed to.
    pub reg: TestRegistry,
}

impl SigningEnv {
    /// A fresh environment with a key pair `DIR/NAME.key`/`.pub` for each of `keys`.
    pub fn new(keys: &[&str]) -> SigningEnv {
        let e = SigningEnv {
            store: crate::KilnStore::new(),
            docker: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
            reg: TestRegistry::start(),
        };
        for k in keys {
            run_ok(e.kiln(&["generate-key-pair", "--output-key-prefix"]).arg(e.path(k)));
        }
        e
    }

    /// `kiln ARGS` on this store, with this `DOCKER_CONFIG` and the keys' empty password.
    pub fn kiln(&self, args: &[&str]) -> Command {
        let mut c = self.store.cmd(args);
        c.env("DOCKER_CONFIG", self.docker.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env("COSIGN_PASSWORD", "");
        c
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The registry's `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.reg.port())
    }
}
