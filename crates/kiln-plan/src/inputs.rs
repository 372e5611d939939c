//! What a build was made from, besides its steps: the file the user wrote and its digest,
//! the lock that pinned it, the context's commit, the build arguments. Provenance (kiln-sign)
//! is made from these and the plan alone, never by reading the user's files again.

use std::collections::BTreeMap;

use kiln_oci::{Digest, Platform};
use serde::{Deserialize, Serialize};

/// Which frontend made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Frontend {
    /// A Dockerfile and its context.
    Dockerfile,
    /// A kiln.toml and its kiln.lock.
    KilnToml,
}

/// A file the build read, by path (as the user named it) and content digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    /// Path as given on the command line (or found in the context).
    pub path: String,
    /// sha256 of the bytes the frontend read.
    pub digest: Digest,
}

/// The git commit the build's directory was at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    /// The directory (the context, or the kiln.toml's directory).
    pub dir: String,
    /// HEAD's commit.
    pub commit: String,
    /// `remote.origin.url`, with any credentials removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// Everything outside the steps that decided what was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// The frontend.
    pub frontend: Frontend,
    /// The Dockerfile or kiln.toml.
    pub source: FileInput,
    /// The lock the build read (kiln.lock; Dockerfile.lock under `--locked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<FileInput>,
    /// The directory's git commit, when it is in a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// `--build-arg`s (the last value of each name), a credential-looking value replaced by
    /// `<redacted>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// `--target` as the user wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The platform of the machine that built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_platform: Option<Platform>,
    /// kiln.toml: the lock's hash of the spec's resolution inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
}

/// `url` without `user:password@`: a remote or a download URL as it may be shown or kept
/// (image labels, provenance), never with the credentials a user wrote into it.
pub fn without_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}
