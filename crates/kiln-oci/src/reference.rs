//! Image names and transports: where an image named on the command line lives.
//!
//! A plain name (`app:1`, `localhost/base:1`, `sha256:…`) is the local store; `oci:`,
//! `oci-archive:` and `docker-archive:` name files, as in skopeo and buildah; `docker://NAME`
//! is a registry. A plain name whose first component is a host (`127.0.0.1:5000/app:1`,
//! `registry.example.com/team/app`) is both: it names an image in the store, and
//! [`Name::registry_host`] tells the commands that talk to registries (`push`, `pull`, `copy`,
//! `build --push`, `FROM`) which registry holds it, as docker and buildah do.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

/// Why an image name could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {input:?}: {reason} (hint: {hint})")]
pub struct ReferenceError {
    /// What the user typed.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
    /// How to write it instead.
    pub hint: &'static str,
}

fn err(input: &str, reason: impl Into<String>, hint: &'static str) -> ReferenceError {
    ReferenceError {
        input: input.to_string(),
        reason: reason.into(),
        hint,
    }
}

/// A repository name with a tag and/or a digest, normalised so the store has one spelling
/// per image: a missing tag means `latest` unless a digest is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// Repository, e.g. `localhost/base` or `127.0.0.1:5000/team/app`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest pin, if any.
    pub digest: Option<Digest>,
}

impl Name {
    /// Parses and normalises a name, rejecting what docker would reject.
    pub fn parse(input: &str) -> Result<Name, ReferenceError> {
        const HINT: &str = "names look like app:1, localhost/base:1 or registry:5000/team/app@sha256:<hex>";
        if input.is_empty() {
            return Err(err(input, "empty name", HINT));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| err(input, e.to_string(), HINT))?),
            ),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(err(input, format!("bad tag {t:?}"), HINT));
            }
        }
        validate_repository(input, repository)?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Name {
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The string stored as `org.opencontainers.image.ref.name` in the store's index.json.
    pub fn store_key(&self) -> String {
        self.to_string()
    }

    /// The registry host named by the first component (`localhost`, `host:port`, or a
    /// dotted name), if there is one. Names without it (`app:1`, `team/app`) live only in
    /// the store unless written `docker://…`, which means Docker Hub.
    pub fn registry_host(&self) -> Option<&str> {
        let (first, _) = self.repository.split_once('/')?;
        (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
    }

    /// The repository path inside its registry (`team/app` for `host:5000/team/app`).
    pub fn path_in_registry(&self) -> &str {
        match self.registry_host() {
            Some(h) => &self.repository[h.len() + 1..],
            None => &self.repository,
        }
    }
}

fn validate_repository(input: &str, repo: &str) -> Result<(), ReferenceError> {
    const HINT: &str = "repository names are lowercase letters, digits and . _ - separated by /";
    if repo.is_empty() {
        return Err(err(input, "empty repository", HINT));
    }
    let mut parts = repo.split('/').peekable();
    let first = parts.next().unwrap_or_default();
    // The first component may be a registry host with a port; it may contain ':' and uppercase.
    let first_is_host = repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let check_component = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
            && c.chars().next().is_some_and(|ch| ch.is_ascii_alphanumeric())
            && c.chars().last().is_some_and(|ch| ch.is_ascii_alphanumeric())
    };
    if first_is_host {
        if !first
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(err(input, format!("bad registry host {first:?}"), HINT));
        }
    } else if !check_component(first) {
        return Err(err(input, format!("bad repository component {first:?}"), HINT));
    }
    for c in parts {
        if !check_component(c) {
            return Err(err(input, format!("bad repository component {c:?}"), HINT));
        }
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Where an image is, as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A name in the local store.
    Store(Name),
    /// A manifest digest in the local store (`sha256:…`).
    StoreDigest(Digest),
    /// An OCI layout directory, optionally with a `ref.name`.
    OciDir {
        /// Layout directory.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name` to select, if any.
        reference: Option<String>,
    },
    /// A tar of an OCI layout.
    OciArchive {
        /// Archive file.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name` to select, if any.
        reference: Option<String>,
    },
    /// A `docker save` tar.
    DockerArchive {
        /// Archive file.
        path: PathBuf,
        /// A `RepoTags` entry to select, if any.
        reference: Option<String>,
    },
    /// An image in a registry, written `docker://NAME` (the kiln-registry crate reads and
    /// writes these; plain host-qualified names are [`ImageRef::Store`]).
    Registry(Name),
}

impl ImageRef {
    /// Parses a transport-qualified or plain image name.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
                Some((p, _)) => (PathBuf::from(p), None),
                None => (PathBuf::from(rest), None),
            }
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            let (path, reference) = split(rest);
            return Ok(ImageRef::OciDir { path, reference });
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (path, reference) = split(rest);
            return Ok(ImageRef::OciArchive { path, reference });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            let (path, reference) = split(rest);
            return Ok(ImageRef::DockerArchive { path, reference });
        }
        if let Some(rest) = input.strip_prefix("docker://") {
            return Ok(ImageRef::Registry(Name::parse(rest)?));
        }
        if input.starts_with("containers-storage:") || input.starts_with("dir:") {
            return Err(err(
                input,
                "this transport is not supported yet",
                "use a local store name, docker://HOST/REPO:TAG, oci:DIR, oci-archive:FILE or docker-archive:FILE",
            ));
        }
        if input.starts_with("sha256:") || input.starts_with("sha512:") {
            let d = input
                .parse::<Digest>()
                .map_err(|e| err(input, e.to_string(), "give the full manifest digest"))?;
            return Ok(ImageRef::StoreDigest(d));
        }
        Ok(ImageRef::Store(Name::parse(input)?))
    }

    /// The registry image this reference names, if any: `docker://NAME`, or a plain name
    /// whose first component is a host. This is the one place kiln decides "is this image
    /// remote?"; whether a command then reads the registry or the store's copy is
    /// `transport::Remote`'s business.
    pub fn registry_name(&self) -> Option<&Name> {
        match self {
            ImageRef::Registry(n) => Some(n),
            ImageRef::Store(n) if n.registry_host().is_some() => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, r: &Option<String>| match r {
            Some(r) => write!(f, "{t}:{}:{r}", p.display()),
            None => write!(f, "{t}:{}", p.display()),
        };
        match self {
            ImageRef::Store(n) => write!(f, "{n}"),
            ImageRef::StoreDigest(d) => write!(f, "{d}"),
            ImageRef::OciDir { path, reference } => with(f, "oci", path, reference),
            ImageRef::OciArchive { path, reference } => with(f, "oci-archive", path, reference),
            ImageRef::DockerArchive { path, reference } => with(f, "docker-archive", path, reference),
            ImageRef::Registry(n) => write!(f, "docker://{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_docker_urls_and_host_qualified_names() {
        let name = |s: &str| ImageRef::parse(s).unwrap().registry_name().map(|n| n.to_string());
        assert_eq!(name("docker://app").as_deref(), Some("app:latest"));
        assert_eq!(name("127.0.0.1:5000/app:1").as_deref(), Some("127.0.0.1:5000/app:1"));
        assert_eq!(name("localhost/base").as_deref(), Some("localhost/base:latest"));
        assert_eq!(name("team/app:1"), None);
        assert_eq!(name("oci:/x:127.0.0.1:5000/app:1"), None);
    }

    #[test]
    fn normalises_names() {
        assert_eq!(Name::parse("app").unwrap().to_string(), "app:latest");
        assert_eq!(Name::parse("localhost/base:1").unwrap().to_string(), "localhost/base:1");
        let n = Name::parse("127.0.0.1:5000/team/app:v1.2").unwrap();
        assert_eq!(
            (n.repository.as_str(), n.tag.as_deref()),
            ("127.0.0.1:5000/team/app", Some("v1.2"))
        );
        let d = format!("app@sha256:{}", "a".repeat(64));
        assert_eq!(Name::parse(&d).unwrap().tag, None);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "App:1", "app:", "app:-x", "a//b", "app@md5:x", "-app"] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_transports() {
        assert_eq!(
            ImageRef::parse("oci:/tmp/x:app:1").unwrap(),
            ImageRef::OciDir {
                path: "/tmp/x".into(),
                reference: Some("app:1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:/a.tar").unwrap().to_string(),
            "docker-archive:/a.tar"
        );
        assert!(matches!(ImageRef::parse("app:1").unwrap(), ImageRef::Store(_)));
        assert_eq!(
            ImageRef::parse("docker://127.0.0.1:5000/a/b:1").unwrap().to_string(),
            "docker://127.0.0.1:5000/a/b:1"
        );
        assert!(ImageRef::parse("containers-storage:x").is_err());
        let n = Name::parse("127.0.0.1:5000/team/app:1").unwrap();
        assert_eq!(
            (n.registry_host(), n.path_in_registry()),
            (Some("127.0.0.1:5000"), "team/app")
        );
        let n = Name::parse("team/app").unwrap();
        assert_eq!((n.registry_host(), n.path_in_registry()), (None, "team/app"));
    }
}
