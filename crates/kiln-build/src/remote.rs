//! `ADD` sources outside the context: files downloaded over HTTP(S) and git repositories,
//! pinned before any step runs (DESIGN.md, "Data flow": every input is resolved to content
//! first) and recorded in `Dockerfile.lock`.
//!
//! A URL is pinned by its sha256: the `--checksum`, else the lock's pin, else what it served
//! when fetched (only outside `--locked`). Its content goes into the store as a blob, so a
//! pinned URL whose blob is there is not fetched again, and the step's cache key is the
//! digest. A git ref is pinned to a commit (`git ls-remote`, or the lock); the checkout is
//! made with the `git` CLI when the step runs, on a cache miss only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_oci::{Digest, Store};
use kiln_plan::lock::Lock;
use kiln_plan::plan::CopyFrom;
use kiln_registry::{Options, Session};
use sha2::{Digest as _, Sha256};

use crate::error::StepError;
use crate::frontend::{RemotePin, RemoteSource};
use crate::pins::Locked;

/// Pins remote `ADD` sources for one build and remembers them for the lock.
pub struct RemoteInputs<'a> {
    store: &'a Store,
    registry: Options,
    locked: Option<Locked>,
    session: Mutex<Option<Session>>,
    urls: Mutex<BTreeMap<String, Digest>>,
    gits: Mutex<BTreeMap<String, String>>,
    unpinned: Mutex<Vec<String>>,
    environment_failed: AtomicBool,
}

/// What the store keeps beside a downloaded blob: where it came from and its mtime.
#[derive(serde::Serialize, serde::Deserialize)]
struct UrlMeta {
    url: String,
    last_modified: Option<i64>,
}

/// What the store remembers of the last download of a URL nothing pins: the ETag the
/// server gave and the content it named. The next build sends the tag as `If-None-Match`,
/// and a `304 Not Modified` reuses that content instead of fetching it again (BuildKit
/// does the same). A pinned URL needs none of this: its checksum finds the blob.
#[derive(serde::Serialize, serde::Deserialize)]
struct UrlValidator {
    url: String,
    etag: String,
    digest: Digest,
}

impl<'a> RemoteInputs<'a> {
    /// A resolver downloading into `store` with `registry`'s client settings (timeout,
    /// certificates), checking every source against `locked` when given.
    pub fn new(store: &'a Store, registry: Options, locked: Option<Locked>) -> RemoteInputs<'a> {
        RemoteInputs {
            store,
            registry,
            locked,
            session: Mutex::new(None),
            urls: Mutex::new(BTreeMap::new()),
            gits: Mutex::new(BTreeMap::new()),
            unpinned: Mutex::new(Vec::new()),
            environment_failed: AtomicBool::new(false),
        }
    }

    /// True when a failure came from the network or the disk rather than the Dockerfile.
    pub fn environment_failed(&self) -> bool {
        self.environment_failed.load(Ordering::Relaxed)
    }

    /// Sources resolved with nothing pinning them (no `--checksum`, no lock entry, a git
    /// ref that is not a commit): what a hermetic build refuses.
    pub fn unpinned(&self) -> Vec<String> {
        self.unpinned.lock().expect("unpinned lock").clone()
    }

    /// Adds every source resolved so far to `lock`.
    pub fn add_to_lock(&self, lock: &mut Lock) {
        for (url, d) in self.urls.lock().expect("urls lock").iter() {
            lock.pin_url(url, d.clone());
        }
        for (src, commit) in self.gits.lock().expect("gits lock").iter() {
            lock.pin_git(src, commit);
        }
    }

    /// The resolver handed to the frontend.
    pub fn resolve(&self, src: &RemoteSource<'_>) -> Result<RemotePin, String> {
        match src {
            RemoteSource::Url {
                url,
                checksum,
                hermetic,
            } => self.resolve_url(url, *checksum, *hermetic),
            RemoteSource::Git {
                source,
                url,
                reference,
                hermetic,
            } => self.resolve_git(source, url, reference, *hermetic),
        }
    }

    fn lock_name(&self) -> String {
        self.locked
            .as_ref()
            .map(|l| l.path.display().to_string())
            .unwrap_or_else(|| "Dockerfile.lock".into())
    }

    fn resolve_url(&self, url: &str, checksum: Option<&Digest>, hermetic: bool) -> Result<RemotePin, String> {
        let pinned = self.locked.as_ref().and_then(|l| l.lock.url(url));
        if let (Some(c), Some(p)) = (checksum, pinned)
            && c != p
        {
            return Err(format!(
                "--checksum {c} differs from the {p} that {} pins (hint: run `kiln lock` to record the new checksum)",
                self.lock_name()
            ));
        }
        let expected = checksum.or(pinned).cloned();
        if expected.is_none() && hermetic {
            return Err(format!(
                "--hermetic: the URL is not pinned (no --checksum=sha256:…, and {} does not pin it) (hint: pin it with --checksum=sha256:<digest>, or run `kiln lock` to pin what it serves now)",
                self.lock_name()
            ));
        }
        if expected.is_none() && self.locked.is_some() {
            return Err(format!(
                "the URL has no --checksum and {} does not pin it, so --locked cannot know its content (hint: add --checksum=sha256:… to the ADD, or run `kiln lock` to pin what it serves now)",
                self.lock_name()
            ));
        }
        if let Some(d) = &expected
            && let Some(meta) = self.cached(url, d)
        {
            self.urls.lock().expect("urls lock").insert(url.to_string(), d.clone());
            return Ok(RemotePin::Url {
                digest: d.clone(),
                mtime: meta.last_modified,
            });
        }
        if url.starts_with("http://")
            && expected.is_none()
            && !kiln_registry::download::host_of(url).is_some_and(|h| kiln_registry::client::is_loopback(&h))
        {
            return Err(
                "plain http:// without --checksum: anyone on the way could change the file (hint: use https://, or add --checksum=sha256:…)"
                    .into(),
            );
        }
        let known = if expected.is_none() { self.validator(url) } else { None };
        let (digest, last_modified) = self.download(url, expected.as_ref(), known)?;
        if expected.is_none() {
            self.unpinned.lock().expect("unpinned lock").push(url.to_string());
        }
        self.urls
            .lock()
            .expect("urls lock")
            .insert(url.to_string(), digest.clone());
        Ok(RemotePin::Url {
            digest,
            mtime: last_modified,
        })
    }

    fn meta_path(&self, url: &str, d: &Digest) -> std::path::PathBuf {
        let key = hex::encode(Sha256::digest(format!("{url}\0{d}").as_bytes()));
        self.store.meta_dir().join("remote").join(format!("{key}.json"))
    }

    /// The record of an earlier download of `url` with this content, if its blob is still there.
    fn cached(&self, url: &str, d: &Digest) -> Option<UrlMeta> {
        if !self.store.has_blob(d) {
            return None;
        }
        serde_json::from_slice(&std::fs::read(self.meta_path(url, d)).ok()?).ok()
    }

    fn validator_path(&self, url: &str) -> std::path::PathBuf {
        let key = hex::encode(Sha256::digest(format!("etag\0{url}").as_bytes()));
        self.store.meta_dir().join("remote").join(format!("etag-{key}.json"))
    }

    /// The ETag of the last download of `url` and what it named, if that blob is still there.
    fn validator(&self, url: &str) -> Option<UrlValidator> {
        let path = self.validator_path(url);
        if std::fs::metadata(&path).ok()?.len() > 4096 {
            return None;
        }
        let v: UrlValidator = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (v.url == url && self.store.has_blob(&v.digest)).then_some(v)
    }

    /// Writes the files that remember a download of `url`: its mtime beside the blob, and
    /// its ETag (when it has one) for the next conditional GET.
    fn remember(&self, url: &str, digest: &Digest, got: &kiln_registry::download::Downloaded) -> std::io::Result<()> {
        let meta = UrlMeta {
            url: url.to_string(),
            last_modified: got.last_modified,
        };
        let path = self.meta_path(url, digest);
        let dir = path.parent().expect("meta path has a parent");
        std::fs::create_dir_all(dir)?;
        let write = |path: &Path, bytes: Vec<u8>| {
            kiln_oci::store::atomic_write(&self.store.tmp_dir(), path, &bytes).map_err(std::io::Error::other)
        };
        write(&path, serde_json::to_vec(&meta).expect("meta serialises"))?;
        let validator = self.validator_path(url);
        match &got.etag {
            Some(etag) => write(
                &validator,
                serde_json::to_vec(&UrlValidator {
                    url: url.to_string(),
                    etag: etag.clone(),
                    digest: digest.clone(),
                })
                .expect("validators serialise"),
            ),
            // No tag now: an older one must not vouch for this content.
            None => match std::fs::remove_file(&validator) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Fetches `url` into the store (checking it against `expected`), or, when the server
    /// says the copy `known` names is current, reuses that copy.
    fn download(
        &self,
        url: &str,
        expected: Option<&Digest>,
        known: Option<UrlValidator>,
    ) -> Result<(Digest, Option<i64>), String> {
        let env_fail = |m: String| {
            self.environment_failed.store(true, Ordering::Relaxed);
            m
        };
        let mut guard = self.session.lock().expect("session lock");
        if guard.is_none() {
            *guard = Some(Session::new(self.registry.clone()).map_err(|e| env_fail(e.to_string()))?);
        }
        let session = guard.as_ref().expect("just set");
        let writer = self.store.blob_writer().map_err(|e| env_fail(e.to_string()))?;
        let mut tee = Tee {
            inner: writer,
            hash: Sha256::new(),
        };
        let d = kiln_registry::download::Download {
            url,
            limit: kiln_registry::download::DEFAULT_LIMIT,
            if_none_match: known.as_ref().map(|v| v.etag.as_str()),
        };
        let got = session.download(&d, &mut tee).map_err(|e| {
            if !e.input {
                self.environment_failed.store(true, Ordering::Relaxed);
            }
            // The URL is already in the message's prefix (ADD URL: …).
            format!("{} (hint: {})", e.reason, e.hint)
        })?;
        if got.not_modified
            && let Some(v) = known
        {
            let mtime = self.cached(url, &v.digest).and_then(|m| m.last_modified);
            return Ok((v.digest, mtime.or(got.last_modified)));
        }
        tee.inner.flush().map_err(|e| env_fail(e.to_string()))?;
        let digest: Digest = format!("sha256:{}", hex::encode(tee.hash.finalize()))
            .parse()
            .expect("a sha256 digest");
        if let Some(want) = expected
            && want != &digest
        {
            return Err(format!(
                "checksum mismatch: expected {want}, got {digest} ({} bytes) (hint: the file at the URL changed or the checksum is wrong; check it, then fix --checksum or run `kiln lock`)",
                got.size
            ));
        }
        tee.inner.commit(Some(&digest)).map_err(|e| env_fail(e.to_string()))?;
        self.remember(url, &digest, &got)
            .map_err(|e| env_fail(format!("{}: {e}", self.store.meta_dir().join("remote").display())))?;
        Ok((digest, got.last_modified))
    }

    fn resolve_git(&self, source: &str, url: &str, reference: &str, hermetic: bool) -> Result<RemotePin, String> {
        let is_commit = |r: &str| (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit());
        let pinned = self
            .locked
            .as_ref()
            .and_then(|l| l.lock.git(source))
            .map(str::to_string);
        let commit = if is_commit(reference) {
            reference.to_ascii_lowercase()
        } else if let Some(c) = pinned {
            c
        } else if hermetic {
            return Err(format!(
                "--hermetic: the git ref is not pinned (not a commit id, and {} does not pin it) (hint: name a full commit id after #, or run `kiln lock` to pin it)",
                self.lock_name()
            ));
        } else if self.locked.is_some() {
            return Err(format!(
                "{} does not pin this git ref, so --locked cannot know its commit (hint: run `kiln lock` to pin it, or name a full commit id after #)",
                self.lock_name()
            ));
        } else {
            self.unpinned.lock().expect("unpinned lock").push(source.to_string());
            ls_remote(url, reference).inspect_err(|_| self.environment_failed.store(true, Ordering::Relaxed))?
        };
        self.gits
            .lock()
            .expect("gits lock")
            .insert(source.to_string(), commit.clone());
        Ok(RemotePin::Git { commit })
    }
}

/// Hashes what it writes, so a download is checked before its blob is committed.
struct Tee {
    inner: kiln_oci::store::BlobWriter,
    hash: Sha256,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `git` with prompts off and the user's configuration left out (no hooks, no aliases).
fn git() -> Command {
    let mut c = Command::new("git");
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::null());
    c
}

fn run_git(c: &mut Command, what: &str) -> Result<String, String> {
    let out = c
        .output()
        .map_err(|e| format!("{what}: cannot run git: {e} (hint: install git)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(format!(
            "{what}: git failed: {last} (hint: check the repository URL and ref, and that git can reach it)"
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit a ref names in a repository, asked with `git ls-remote`: a branch, then a tag
/// (peeled), then a full ref name; the empty ref is HEAD.
pub fn ls_remote(url: &str, reference: &str) -> Result<String, String> {
    let out = run_git(git().args(["ls-remote", "--", url]), "git ls-remote")?;
    let refs: BTreeMap<&str, &str> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (name.trim(), sha.trim()))
        .collect();
    let r = if reference.is_empty() { "HEAD" } else { reference };
    let candidates = [
        format!("refs/heads/{r}"),
        format!("refs/tags/{r}^{{}}"),
        format!("refs/tags/{r}"),
        r.to_string(),
    ];
    candidates
        .iter()
        .find_map(|c| refs.get(c.as_str()).map(|s| s.to_string()))
        .ok_or_else(|| {
            format!(
                "ref {r:?} is not a branch or tag of the repository (hint: name a branch, a tag or a full commit id after #)"
            )
        })
}

/// Checks `commit` of `url` out into `dir` (which must not exist), `.git` removed unless
/// `keep_git_dir`.
pub fn git_checkout(url: &str, commit: &str, keep_git_dir: bool, dir: &Path) -> Result<(), String> {
    let d = dir.to_str().ok_or("temp dir is not UTF-8")?;
    run_git(git().args(["init", "-q", d]), "git init")?;
    let shallow = run_git(
        git().args(["-C", d, "fetch", "-q", "--depth=1", "--", url, commit]),
        "git fetch",
    );
    if shallow.is_err() {
        // Servers that refuse to serve a commit by id: fetch every ref, then pick it.
        run_git(
            git().args(["-C", d, "fetch", "-q", "--", url, "+refs/*:refs/kiln/*"]),
            "git fetch",
        )?;
    }
    run_git(
        git().args(["-C", d, "-c", "advice.detachedHead=false", "checkout", "-q", commit]),
        "git checkout",
    )?;
    if !keep_git_dir {
        std::fs::remove_dir_all(dir.join(".git")).map_err(|e| format!("removing .git: {e}"))?;
    }
    Ok(())
}

/// The tree a COPY of a remote source reads, made in a fresh directory under `tmp`: the URL's
/// blob as `file_name` (mode 0600, as BuildKit writes it), or the git checkout.
pub fn source_tree(store: &Store, from: &CopyFrom) -> Result<(tempfile::TempDir, std::path::PathBuf), StepError> {
    let tmp = store.tmp_dir();
    let dir = tempfile::Builder::new()
        .prefix("remote-")
        .tempdir_in(&tmp)
        .map_err(|e| StepError::new(format!("{}: {e}", tmp.display()), "check the disk"))?;
    match from {
        CopyFrom::Url {
            url, digest, file_name, ..
        } => {
            let src = store.blob_path(digest);
            let dst = dir.path().join(file_name);
            std::fs::copy(&src, &dst).map_err(|e| {
                StepError::new(
                    format!("{url}: its download {digest} is gone from the store: {e}"),
                    "build again (kiln fetches it anew)",
                )
            })?;
            std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| StepError::new(format!("{}: {e}", dst.display()), "check the disk"))?;
        }
        CopyFrom::Git {
            url,
            commit,
            keep_git_dir,
            ..
        } => {
            let co = dir.path().join("checkout");
            git_checkout(url, commit, *keep_git_dir, &co).map_err(|e| {
                StepError::new(
                    format!("ADD {url}: {e}"),
                    "check that the repository still has the commit",
                )
            })?;
        }
        _ => unreachable!("only remote sources have a tree here"),
    }
    let root = match from {
        CopyFrom::Git { .. } => dir.path().join("checkout"),
        _ => dir.path().to_path_buf(),
    };
    Ok((dir, root))
}
