//! One repository in a registry: manifests and blobs, down and up.
//!
//! Blobs are streamed straight into a store's blob writer, which hashes as it writes and
//! renames into place only when digest and size match, so an interrupted or corrupt
//! download never becomes visible. A download cut mid-stream resumes with a `Range`
//! request from the bytes already written. Uploads are monolithic up to the chunk size and
//! chunked (`PATCH` with `Content-Range`) above it; after a broken connection kiln asks the
//! registry for its offset and resumes there, or starts a new session if the registry has
//! dropped the upload.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use bytes::Bytes;
use kiln_oci::{Descriptor, Digest, Store, media};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};

use crate::client::{Idempotent, MAX_MANIFEST_BYTES, Registry, scope};
use crate::error::{RegistryError, Result};
use crate::stall::Progress;

/// Every manifest type kiln reads, for the `Accept` header.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A repository (`team/app`) in a registry.
#[derive(Clone)]
pub struct Repo {
    /// The registry.
    pub registry: Registry,
    /// Path inside the registry.
    pub path: String,
}

/// A manifest or index as the registry sent it: the exact bytes (their digest is the
/// image's identity, so they are never re-serialised).
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes.
    pub bytes: Bytes,
    /// Descriptor (media type, digest, size).
    pub descriptor: Descriptor,
}

/// What happened to one blob on push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it (HEAD said so).
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// The media type of a manifest body whose `Content-Type` is missing or generic.
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(mt.to_string());
    }
    if v.get("manifests").is_some() {
        Some(media::OCI_INDEX.to_string())
    } else if v.get("config").is_some() {
        Some(media::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

impl Repo {
    /// A repository handle.
    pub fn new(registry: Registry, path: impl Into<String>) -> Repo {
        Repo {
            registry,
            path: path.into(),
        }
    }

    fn pull_scope(&self) -> String {
        scope(&self.path, false)
    }

    fn push_scope(&self) -> String {
        scope(&self.path, true)
    }

    /// `NAME` as the user would write it, for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.registry.host(), self.path)
    }

    /// Fetches a manifest or index by tag or digest and checks it: a digest reference must
    /// match the content, schema1 is refused.
    pub async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        let what = format!("GET manifest {reference}");
        let url_path = format!("/v2/{}/manifests/{reference}", self.path);
        let progress = Progress::new();
        let resp = self
            .registry
            .send_with(
                &self.path,
                &what,
                &self.pull_scope(),
                Idempotent::Yes,
                &|c, base| c.get(format!("{base}{url_path}")).header(ACCEPT, MANIFEST_ACCEPT),
                &progress,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::Http {
                registry: self.registry.host().to_string(),
                repository: self.path.clone(),
                what,
                status: 404,
                detail: ": manifest unknown".into(),
                hint: "check the repository and tag; list what was pushed with `skopeo list-tags`".into(),
            });
        }
        if !resp.status().is_success() {
            return Err(self.registry.status_error(&self.path, &what, resp).await);
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = self
            .registry
            .read_body(&self.path, &what, resp, MAX_MANIFEST_BYTES, &progress)
            .await?;
        let media_type = match header_type {
            Some(t) if media::is_index(&t) || media::is_manifest(&t) => t,
            _ => sniff_media_type(&bytes).unwrap_or_default(),
        };
        if media_type.contains("distribution.manifest.v1") {
            return Err(RegistryError::Invalid {
                registry: self.registry.host().to_string(),
                repository: self.path.clone(),
                what,
                reason: "Docker schema1 manifests are not supported".into(),
                hint: "re-push the image with a current tool (schema2 or OCI)".into(),
            });
        }
        if !media::is_index(&media_type) && !media::is_manifest(&media_type) {
            return Err(self.registry.invalid(
                &self.path,
                &what,
                format!("unsupported manifest media type {media_type:?}"),
            ));
        }
        let digest = match reference.parse::<Digest>() {
            Ok(want) => {
                let mut h = kiln_oci::digest::Hasher::new(want.algorithm());
                h.update(&bytes);
                let got = h.finish();
                if got != want {
                    return Err(self.registry.invalid(
                        &self.path,
                        &what,
                        format!("content hashes to {got}, not the requested digest"),
                    ));
                }
                want
            }
            Err(_) => Digest::sha256_of(&bytes),
        };
        let descriptor = Descriptor::new(media_type, digest, bytes.len() as u64);
        Ok(RawManifest { bytes, descriptor })
    }

    /// Uploads a manifest or index under `reference` (a tag or its digest).
    pub async fn put_manifest(&self, reference: &str, bytes: &Bytes, media_type: &str) -> Result<()> {
        self.put_manifest_headers(reference, bytes, media_type)
            .await
            .map(|_| ())
    }

    /// Uploads an OCI manifest that names a `subject`; true if the registry indexed it for
    /// the referrers API (it answered with an `OCI-Subject` header), false if the caller
    /// must keep the `sha256-<hex>` tag schema up to date instead.
    pub async fn put_manifest_with_subject(&self, reference: &str, bytes: &Bytes) -> Result<bool> {
        let headers = self.put_manifest_headers(reference, bytes, media::OCI_MANIFEST).await?;
        Ok(headers.contains_key("oci-subject"))
    }

    async fn put_manifest_headers(
        &self,
        reference: &str,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<reqwest::header::HeaderMap> {
        let what = format!("PUT manifest {reference}");
        let url_path = format!("/v2/{}/manifests/{reference}", self.path);
        let mut attempt = 0;
        loop {
            let resp = self
                .registry
                .send(&self.path, &what, &self.push_scope(), Idempotent::Yes, &|c, base| {
                    c.put(format!("{base}{url_path}"))
                        .header(CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                })
                .await?;
            if resp.status().is_success() {
                return Ok(resp.headers().clone());
            }
            let err = self.registry.status_error(&self.path, &what, resp).await;
            // docker-registry rewrites a blob's link in place whenever anyone pushes that
            // blob again (another client sharing a base layer), and a manifest checked in
            // that moment reads an empty link. Every blob was confirmed before this PUT, so
            // a blob-unknown answer is given two more chances; a really missing blob fails
            // the same way again and is reported.
            let blob_unknown = matches!(&err, RegistryError::Http { status: 400, detail, .. }
                if detail.contains("MANIFEST_BLOB_UNKNOWN"));
            if attempt >= 2 || !blob_unknown {
                return Err(err);
            }
            attempt += 1;
            tracing::debug!("{what}: {err}; trying again");
            tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
        }
    }

    /// The referrers of `digest` from the registry's referrers API (filtered by
    /// `artifact_type` where given), or `None` when the registry has no such API
    /// (docker-registry 2.8 answers 404) and the `sha256-<hex>` tag schema is the place to look.
    pub async fn referrers(&self, digest: &Digest, artifact_type: Option<&str>) -> Result<Option<kiln_oci::Index>> {
        let what = format!("GET referrers {digest}");
        let url_path = format!("/v2/{}/referrers/{digest}", self.path);
        let resp = self
            .registry
            .send(&self.path, &what, &self.pull_scope(), Idempotent::Yes, &|c, base| {
                let rb = c.get(format!("{base}{url_path}")).header(ACCEPT, media::OCI_INDEX);
                match artifact_type {
                    Some(t) => rb.query(&[("artifactType", t)]),
                    None => rb,
                }
            })
            .await?;
        let is_index = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(media::OCI_INDEX));
        if resp.status().is_success() && is_index {
            let body = self
                .registry
                .read_body(&self.path, &what, resp, MAX_MANIFEST_BYTES, &Progress::new())
                .await?;
            let index = serde_json::from_slice(&body).map_err(|e| self.registry.invalid(&self.path, &what, e))?;
            Ok(Some(index))
        } else if matches!(resp.status().as_u16(), 200 | 400 | 404 | 405) {
            Ok(None)
        } else {
            Err(self.registry.status_error(&self.path, &what, resp).await)
        }
    }

    /// True if the registry has the blob.
    pub async fn has_blob(&self, digest: &Digest, scope: &str) -> Result<bool> {
        let what = format!("HEAD blob {digest}");
        let url_path = format!("/v2/{}/blobs/{digest}", self.path);
        let resp = self
            .registry
            .send(&self.path, &what, scope, Idempotent::Yes, &|c, base| {
                c.head(format!("{base}{url_path}"))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.registry.status_error(&self.path, &what, resp).await),
        }
    }

    /// Downloads a small blob (a config, a signature payload) into memory: refused when
    /// the descriptor says it is over `limit`, when the body grows past its size, or when it
    /// does not hash to its digest. Larger blobs go through [`Repo::fetch_blob`].
    pub async fn get_small_blob(&self, desc: &Descriptor, limit: u64) -> Result<Bytes> {
        let what = format!("GET blob {}", desc.digest);
        if desc.size > limit {
            return Err(self.registry.invalid(
                &self.path,
                &what,
                format!("{} bytes, over the {limit}-byte limit", desc.size),
            ));
        }
        let url_path = format!("/v2/{}/blobs/{}", self.path, desc.digest);
        let progress = Progress::new();
        let resp = self
            .registry
            .send_with(
                &self.path,
                &what,
                &self.pull_scope(),
                Idempotent::Yes,
                &|c, base| c.get(format!("{base}{url_path}")),
                &progress,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.registry.status_error(&self.path, &what, resp).await);
        }
        let body = self
            .registry
            .read_body(&self.path, &what, resp, desc.size, &progress)
            .await?;
        let mut h = kiln_oci::digest::Hasher::new(desc.digest.algorithm());
        h.update(&body);
        let got = h.finish();
        if got != desc.digest || body.len() as u64 != desc.size {
            return Err(self.registry.invalid(
                &self.path,
                &what,
                format!("content ({} bytes) hashes to {got}", body.len()),
            ));
        }
        Ok(body)
    }

    /// Downloads a blob into `store` unless it is there, verified before it is visible. A
    /// download cut short (here, or in an earlier kiln process that was killed) continues
    /// from the bytes already on disk with a `Range` request; a resumed file that turns out
    /// not to hash to the digest is thrown away and fetched again whole.
    pub async fn fetch_blob(&self, desc: &Descriptor, store: &Store) -> Result<bool> {
        if store.has_blob(&desc.digest) {
            return Ok(false);
        }
        let store_err = |source| RegistryError::Store {
            context: format!("{}@{}", self.display(), desc.digest),
            source,
        };
        let io_err = |e| {
            store_err(kiln_oci::StoreError::Io {
                path: store.tmp_dir(),
                source: e,
            })
        };
        let mut w = store.partial_blob_writer(&desc.digest).map_err(store_err)?;
        if w.written() >= desc.size {
            // Complete or oversized leftovers: nothing to continue from.
            w.restart().map_err(io_err)?;
        }
        let resumed = w.written() > 0;
        let meter = self.registry.meter(&desc.digest);
        meter.begin(desc.size, w.written(), false);
        self.download_into(desc, &mut w, store, &meter).await?;
        match w.commit(Some(&desc.digest)) {
            Err(kiln_oci::StoreError::Corrupt { .. }) if resumed => {
                tracing::debug!("{}: a resumed download did not verify; fetching it whole", desc.digest);
                let mut w = store.blob_writer().map_err(store_err)?;
                meter.begin(desc.size, 0, false);
                self.download_into(desc, &mut w, store, &meter).await?;
                w.commit(Some(&desc.digest)).map_err(store_err)?;
            }
            r => {
                r.map_err(store_err)?;
            }
        }
        meter.end(&format!("pulled {} ({})", desc.digest, human_size(desc.size)));
        Ok(true)
    }

    /// Fetches the rest of `desc` (from `w.written()`) into `w`, resuming after breaks, and
    /// giving up when nothing arrives for `--timeout`.
    async fn download_into(
        &self,
        desc: &Descriptor,
        w: &mut kiln_oci::store::BlobWriter,
        store: &Store,
        meter: &crate::transfer::Meter,
    ) -> Result<()> {
        let what = format!("GET blob {}", desc.digest);
        let url_path = format!("/v2/{}/blobs/{}", self.path, desc.digest);
        let io_err = |e| RegistryError::Store {
            context: format!("{}@{}", self.display(), desc.digest),
            source: kiln_oci::StoreError::Io {
                path: store.tmp_dir(),
                source: e,
            },
        };
        let retry = self.registry.options().retry.clone();
        let start = Instant::now();
        let progress = Progress::new();
        let mut breaks = 0u32;
        loop {
            let from = w.written();
            let resp = self
                .registry
                .send_with(
                    &self.path,
                    &what,
                    &self.pull_scope(),
                    Idempotent::Yes,
                    &|c, base| {
                        let rb = c.get(format!("{base}{url_path}"));
                        if from > 0 {
                            rb.header(RANGE, format!("bytes={from}-"))
                        } else {
                            rb
                        }
                    },
                    &progress,
                )
                .await?;
            match resp.status() {
                // The registry ignored the Range: it sends everything again.
                StatusCode::OK if from > 0 => {
                    w.restart().map_err(io_err)?;
                    meter.begin(desc.size, 0, false);
                }
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
                _ => return Err(self.registry.status_error(&self.path, &what, resp).await),
            }
            let mut resp = resp;
            let broke = loop {
                match self.registry.within(resp.chunk(), &progress, &self.path, &what).await? {
                    Ok(Some(chunk)) => {
                        progress.tick();
                        w.write_all(&chunk).map_err(io_err)?;
                        meter.moved(chunk.len() as u64);
                        if w.written() > desc.size {
                            return Err(self.registry.invalid(
                                &self.path,
                                &what,
                                format!(
                                    "the registry sent more than the {} bytes the manifest declares",
                                    desc.size
                                ),
                            ));
                        }
                    }
                    Ok(None) if w.written() < desc.size => {
                        break format!("body ended at {} of {} bytes", w.written(), desc.size);
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => break crate::client::error_chain(&e),
                }
            };
            breaks += 1;
            if breaks >= retry.attempts {
                return Err(self.registry.unreachable(&self.path, &what, broke, breaks, start));
            }
            tracing::debug!("{what}: {broke}; resuming at {}", w.written());
            tokio::time::sleep(retry.backoff(breaks - 1)).await;
        }
    }

    /// Sends a blob of `src` to this repository: skipped if present, mounted from
    /// `mount_from` (another repository of the same registry) if it has it, else uploaded.
    /// One push of a blob into a repository runs at a time in a session: see
    /// [`crate::client::BlobPushLock`].
    pub async fn push_blob(&self, desc: &Descriptor, src: &Store, mount_from: Option<&str>) -> Result<BlobOutcome> {
        let lock = self.registry.blob_push_lock(&self.path, &desc.digest);
        let outcome = {
            let _one_at_a_time = lock.lock().await;
            self.push_blob_alone(desc, src, mount_from).await
        };
        self.registry.release_blob_push_lock(&self.path, &desc.digest, lock);
        outcome
    }

    async fn push_blob_alone(&self, desc: &Descriptor, src: &Store, mount_from: Option<&str>) -> Result<BlobOutcome> {
        let scope_all = match mount_from {
            Some(from) if from != self.path => format!("{} {}", self.push_scope(), scope(from, false)),
            _ => self.push_scope(),
        };
        if self.has_blob(&desc.digest, &scope_all).await? {
            return Ok(BlobOutcome::Present);
        }
        let retry = self.registry.options().retry.clone();
        let start = Instant::now();
        let mut sessions = 0u32;
        let mut mount = mount_from.filter(|f| *f != self.path);
        loop {
            let location = match self.start_upload(desc, mount, &scope_all).await? {
                Started::Mounted => {
                    self.registry.meter(&desc.digest).end(&format!(
                        "mounted {} from {}",
                        desc.digest,
                        mount.unwrap_or_default()
                    ));
                    return Ok(BlobOutcome::Mounted);
                }
                Started::Session(l) => l,
            };
            if !src.has_blob(&desc.digest)
                && let Some(from) = mount_from
            {
                // Copying within a registry: the mount was refused, so the bytes must come
                // through here after all.
                Repo::new(self.registry.clone(), from).fetch_blob(desc, src).await?;
            }
            mount = None;
            match self.upload(desc, src, location, &scope_all).await? {
                Some(()) => {
                    self.registry.meter(&desc.digest).end(&format!(
                        "pushed {} ({})",
                        desc.digest,
                        human_size(desc.size)
                    ));
                    return Ok(BlobOutcome::Uploaded);
                }
                None => {
                    // The registry dropped the session (or refused to resume it): start over.
                    sessions += 1;
                    if sessions >= retry.attempts * 2 {
                        return Err(self.registry.unreachable(
                            &self.path,
                            &format!("upload blob {}", desc.digest),
                            "the upload kept failing".into(),
                            sessions,
                            start,
                        ));
                    }
                    tokio::time::sleep(retry.backoff(sessions.min(4) - 1)).await;
                }
            }
        }
    }

    async fn start_upload(&self, desc: &Descriptor, mount: Option<&str>, scope: &str) -> Result<Started> {
        let what = format!("start upload of {}", desc.digest);
        let url_path = format!("/v2/{}/blobs/uploads/", self.path);
        let resp = self
            .registry
            .send(&self.path, &what, scope, Idempotent::Yes, &|c, base| {
                let rb = c.post(format!("{base}{url_path}")).header(CONTENT_LENGTH, "0");
                match mount {
                    Some(from) => rb.query(&[("mount", desc.digest.to_string().as_str()), ("from", from)]),
                    None => rb,
                }
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(Started::Mounted),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| self.registry.invalid(&self.path, &what, "no Location header"))?
                    .to_string();
                Ok(Started::Session(self.registry.absolute(&loc).await?))
            }
            _ => Err(self.registry.status_error(&self.path, &what, resp).await),
        }
    }

    /// Runs one upload session. `Ok(None)` means the session is gone and must be restarted.
    async fn upload(&self, desc: &Descriptor, src: &Store, mut location: String, scope: &str) -> Result<Option<()>> {
        let what = format!("upload blob {}", desc.digest);
        let path = src.blob_path(&desc.digest);
        let file = std::fs::File::open(&path).map_err(|e| RegistryError::Store {
            context: self.display(),
            source: kiln_oci::StoreError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let file = std::sync::Arc::new(file);
        let chunk = self.registry.options().chunk_size.max(1 << 20);
        let retry = self.registry.options().retry.clone();
        let start = Instant::now();
        // Each piece of the body read moves this clock, so a slow upload is never cut.
        let progress = Progress::new();
        let meter = self.registry.meter(&desc.digest);
        meter.begin(desc.size, 0, true);
        let digest_q = desc.digest.to_string();
        if desc.size <= chunk {
            let resp = self
                .registry
                .send_url(
                    &self.path,
                    &what,
                    scope,
                    Idempotent::No,
                    (Method::PUT, &location, &progress),
                    &|rb| {
                        rb.query(&[("digest", digest_q.as_str())])
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, desc.size.to_string())
                            .body(file_body(file.clone(), 0, desc.size, (&progress, &meter)))
                    },
                )
                .await;
            return match resp {
                Ok(r) if r.status() == StatusCode::CREATED => Ok(Some(())),
                Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => Ok(None),
                Ok(r) if r.status() == StatusCode::NOT_FOUND => Ok(None),
                Ok(r) => Err(self.registry.status_error(&self.path, &what, r).await),
                Err(RegistryError::Unreachable { .. }) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < desc.size {
            let len = chunk.min(desc.size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let resp = self
                .registry
                .send_url(
                    &self.path,
                    &what,
                    scope,
                    Idempotent::No,
                    (Method::PATCH, &location, &progress),
                    &|rb| {
                        rb.header(CONTENT_TYPE, "application/octet-stream")
                            .header("Content-Range", range.as_str())
                            .header(CONTENT_LENGTH, len.to_string())
                            .body(file_body(file.clone(), offset, len, (&progress, &meter)))
                    },
                )
                .await;
            match resp {
                Ok(r) if r.status() == StatusCode::ACCEPTED || r.status() == StatusCode::NO_CONTENT => {
                    if let Some(l) = r.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                        location = self.registry.absolute(l).await?;
                    }
                    offset = range_end(&r).unwrap_or(offset + len);
                    failures = 0;
                    continue;
                }
                Ok(r) if matches!(r.status().as_u16(), 404 | 416) => return Ok(None),
                Ok(r) if r.status().is_client_error() && r.status() != StatusCode::TOO_MANY_REQUESTS => {
                    // e.g. BLOB_UPLOAD_INVALID after the registry refused to resume.
                    if r.status() == StatusCode::BAD_REQUEST {
                        return Ok(None);
                    }
                    return Err(self.registry.status_error(&self.path, &what, r).await);
                }
                Ok(_) | Err(RegistryError::Unreachable { .. }) => {}
                Err(e) => return Err(e),
            }
            // A broken or refused chunk: ask the registry where it is and go on from there.
            failures += 1;
            if failures >= retry.attempts {
                return Err(self.registry.unreachable(
                    &self.path,
                    &what,
                    "chunk upload kept failing".into(),
                    failures,
                    start,
                ));
            }
            tokio::time::sleep(retry.backoff(failures - 1)).await;
            match self.upload_status(&location, scope, &what).await? {
                Some((loc, off)) => {
                    location = loc;
                    offset = off;
                    meter.begin(desc.size, off, true);
                }
                None => return Ok(None),
            }
        }
        let resp = self
            .registry
            .send_url(
                &self.path,
                &what,
                scope,
                Idempotent::No,
                (Method::PUT, &location, &progress),
                &|rb| rb.query(&[("digest", digest_q.as_str())]).header(CONTENT_LENGTH, "0"),
            )
            .await;
        match resp {
            Ok(r) if r.status() == StatusCode::CREATED => Ok(Some(())),
            Ok(r)
                if r.status().is_client_error()
                    && r.status() != StatusCode::NOT_FOUND
                    && r.status() != StatusCode::BAD_REQUEST =>
            {
                Err(self.registry.status_error(&self.path, &what, r).await)
            }
            Ok(_) | Err(RegistryError::Unreachable { .. }) => {
                // The PUT may have landed before the connection broke.
                if self.has_blob(&desc.digest, scope).await? {
                    Ok(Some(()))
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Asks an upload session for its offset: `Some((location, next offset))`, or `None` if
    /// the session is gone or the registry will not resume it.
    async fn upload_status(&self, location: &str, scope: &str, what: &str) -> Result<Option<(String, u64)>> {
        let progress = Progress::new();
        let resp = self
            .registry
            .send_url(
                &self.path,
                what,
                scope,
                Idempotent::Yes,
                (Method::GET, location, &progress),
                &|rb| rb,
            )
            .await?;
        if resp.status() != StatusCode::NO_CONTENT && !resp.status().is_success() {
            return Ok(None);
        }
        let loc = match resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
            Some(l) => self.registry.absolute(l).await?,
            None => location.to_string(),
        };
        Ok(Some((loc, range_end(&resp).unwrap_or(0))))
    }

    /// Lists the tags of the repository.
    pub async fn tags(&self) -> Result<Vec<String>> {
        let what = "GET tags".to_string();
        let url_path = format!("/v2/{}/tags/list", self.path);
        let resp = self
            .registry
            .send(&self.path, &what, &self.pull_scope(), Idempotent::Yes, &|c, base| {
                c.get(format!("{base}{url_path}"))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(vec![]);
        }
        if !resp.status().is_success() {
            return Err(self.registry.status_error(&self.path, &what, resp).await);
        }
        let body = self
            .registry
            .read_body(&self.path, &what, resp, MAX_MANIFEST_BYTES, &Progress::new())
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.registry.invalid(&self.path, &what, e))?;
        Ok(v.get("tags")
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }
}

/// A request body that streams `len` bytes of `file` from `offset`, 1 MiB at a time: an
/// upload never holds a whole chunk in memory, and a retry simply makes a new body.
fn file_body(
    file: std::sync::Arc<std::fs::File>,
    offset: u64,
    len: u64,
    (progress, meter): (&Progress, &crate::transfer::Meter),
) -> reqwest::Body {
    const PIECE: u64 = 1 << 20;
    if len <= PIECE {
        let mut buf = vec![0u8; len as usize];
        return match file.read_exact_at(&mut buf, offset) {
            Ok(()) => {
                meter.moved(len);
                reqwest::Body::from(Bytes::from(buf))
            }
            Err(e) => reqwest::Body::wrap_stream(futures_util::stream::once(async move { Err::<Bytes, _>(e) })),
        };
    }
    // Each piece taken by the connection moves the upload's progress clock.
    let (progress, meter) = (progress.clone(), meter.clone());
    let stream = futures_util::stream::unfold((file, offset, offset + len), move |(f, pos, end)| {
        progress.tick();
        let meter = meter.clone();
        async move {
            if pos >= end {
                return None;
            }
            let n = (end - pos).min(PIECE) as usize;
            let mut buf = vec![0u8; n];
            match f.read_exact_at(&mut buf, pos) {
                Ok(()) => {
                    meter.moved(n as u64);
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (f, pos + n as u64, end)))
                }
                Err(e) => Some((Err(e), (f, end, end))),
            }
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// `12.3 MiB`, or bytes below 1 MiB.
pub fn human_size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{n} bytes")
    }
}

enum Started {
    Mounted,
    Session(String),
}

/// The next offset from a `Range: 0-N` header (N + 1), if the header is there and sane.
fn range_end(resp: &reqwest::Response) -> Option<u64> {
    range_end_of(resp.headers())
}

fn range_end_of(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let r = headers.get(RANGE)?.to_str().ok()?;
    let r = r.strip_prefix("bytes=").unwrap_or(r);
    let (_, end) = r.split_once('-')?;
    if end.starts_with('-') {
        return Some(0);
    }
    end.parse::<u64>().ok().map(|e| e + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn upload_offsets_from_range_headers() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RANGE, HeaderValue::from_str(v).unwrap());
            range_end_of(&h)
        };
        assert_eq!(with("0-1023"), Some(1024));
        assert_eq!(with("bytes=0-9"), Some(10));
        assert_eq!(with("0--1"), Some(0));
        assert_eq!(with("garbage"), None);
        assert_eq!(range_end_of(&HeaderMap::new()), None);
    }

    #[test]
    fn media_types_from_bodies() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(media::OCI_INDEX)
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        assert_eq!(
            sniff_media_type(br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#).as_deref(),
            Some(media::DOCKER_MANIFEST)
        );
        assert_eq!(sniff_media_type(b"not json"), None);
    }
}
