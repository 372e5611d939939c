//! What `kiln run` was asked to do, as plain data parsed from its flags.

use std::path::PathBuf;

use crate::error::RuntimeError;

/// The network a container gets (`--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Its own network namespace with loopback only; published ports (`-p`) are proxied in.
    #[default]
    Private,
    /// Its own network namespace with loopback only and nothing published.
    None,
    /// The host's network namespace.
    Host,
}

impl Network {
    /// Parses `private|none|host`.
    pub fn parse(s: &str) -> Result<Network, RuntimeError> {
        match s {
            "private" | "bridge" | "default" => Ok(Network::Private),
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ => Err(RuntimeError::input(
                format!("--network {s:?} is not a network mode"),
                "use --network private (the default), none or host",
            )),
        }
    }
}

/// What a published port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Connections (the default, as in docker).
    #[default]
    Tcp,
    /// Datagrams (`/udp`).
    Udp,
}

/// A published port: connections (or datagrams) to `host` on the host reach `container`
/// inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Publish {
    /// Host port.
    pub host: u16,
    /// Container port.
    pub container: u16,
    /// TCP or UDP (state written before UDP was published has none: TCP).
    #[serde(default)]
    pub proto: Proto,
}

impl Publish {
    /// Parses `HOST:CTR`, `CTR` (same port on the host), each optionally followed by `/tcp`
    /// or `/udp`, as docker's `-p`.
    pub fn parse(s: &str) -> Result<Publish, RuntimeError> {
        let bad = || {
            RuntimeError::input(
                format!("-p {s:?}: expected HOST:CONTAINER ports, e.g. -p 8080:8080 or -p 5353:53/udp"),
                "give two port numbers between 1 and 65535, optionally followed by /tcp or /udp",
            )
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, Proto::Tcp),
            Some((spec, "udp")) => (spec, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (s, Proto::Tcp),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        let (host, container) = match spec.split_once(':') {
            Some((h, c)) => (port(h)?, port(c)?),
            None => (port(spec)?, port(spec)?),
        };
        Ok(Publish { host, container, proto })
    }
}

impl std::fmt::Display for Publish {
    /// `8080->80` for TCP (as `kiln ps` always showed), `5353->53/udp` for UDP.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.host, self.container)?;
        if self.proto == Proto::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}

/// A bind mount from the host (`-v SRC:DST[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
}

impl Bind {
    /// Parses `SRC:DST[:ro|rw]`; SRC must exist.
    pub fn parse(s: &str) -> Result<Bind, RuntimeError> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, "rw"),
            [s, d, m] => (*s, *d, *m),
            _ => {
                return Err(RuntimeError::input(
                    format!("-v {s:?}: expected SRC:DST[:ro]"),
                    "e.g. -v ./data:/data:ro",
                ));
            }
        };
        if !matches!(mode, "ro" | "rw") || !dst.starts_with('/') {
            return Err(RuntimeError::input(
                format!("-v {s:?}: the target must be absolute and the mode ro or rw"),
                "e.g. -v ./data:/data:ro",
            ));
        }
        let source = std::fs::canonicalize(src)
            .map_err(|e| RuntimeError::input(format!("-v {s:?}: {src}: {e}"), "give an existing file or directory"))?;
        Ok(Bind {
            source,
            target: dst.to_string(),
            readonly: mode == "ro",
        })
    }
}

/// Everything `kiln run` takes besides the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Container name (`--name`); a generated id otherwise.
    pub name: Option<String>,
    /// Extra environment (`-e K=V`, or `-e K` to pass kiln's own value).
    pub env: Vec<String>,
    /// Bind mounts (`-v`).
    pub binds: Vec<Bind>,
    /// Extra tmpfs mounts (`--tmpfs PATH`).
    pub tmpfs: Vec<String>,
    /// Published ports (`-p`).
    pub publish: Vec<Publish>,
    /// Network mode.
    pub network: Network,
    /// `--user`; `None` runs as the image's USER.
    pub user: Option<String>,
    /// A writable rootfs (`--writable`): writes go to a throwaway upper dir.
    pub writable: bool,
    /// Run in the background (`-d`).
    pub detach: bool,
    /// `--entrypoint` override.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments after the image (replace CMD).
    pub args: Vec<String>,
    /// `--runtime`: runc, crun or a path.
    pub runtime: Option<String>,
    /// `--cap-add`: capabilities the process holds (`CAP_…` names), from Docker's default
    /// set only; none by default.
    pub cap_add: Vec<String>,
    /// `-w`/`--workdir`: the process's working directory instead of the image's WORKDIR.
    pub workdir: Option<String>,
}

/// The largest `--env-file` kiln reads.
const MAX_ENV_FILE: u64 = 1 << 20;

/// Reads an `--env-file` as docker does: one `KEY=VALUE` per line (the value kept as
/// written), or `KEY` alone to pass kiln's own value (skipped when kiln has none); blank
/// lines and lines starting with `#` are ignored. A key with whitespace is an error naming
/// `FILE:LINE`.
pub fn parse_env_file(path: &std::path::Path) -> Result<Vec<String>, RuntimeError> {
    let shown = path.display();
    let hint = "write one KEY=VALUE (or KEY) per line; # starts a comment";
    let size = std::fs::metadata(path)
        .map_err(|e| RuntimeError::input(format!("--env-file {shown}: {e}"), "give a readable file"))?
        .len();
    if size > MAX_ENV_FILE {
        return Err(RuntimeError::input(
            format!("--env-file {shown}: {size} bytes is more than the {MAX_ENV_FILE} kiln reads"),
            hint,
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| RuntimeError::input(format!("--env-file {shown}: {e}"), "give a readable file"))?;
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw)
            .map_err(|_| RuntimeError::input(format!("{shown}:{}: not UTF-8", i + 1), hint))?
            .trim_end_matches('\r')
            .trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(RuntimeError::input(
                format!(
                    "{shown}:{}: {key:?} is not a variable name (it is empty or has whitespace)",
                    i + 1
                ),
                hint,
            ));
        }
        match value {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Ok(v) = std::env::var(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Parses `--cap-add` values as docker does (`NET_BIND_SERVICE`, `cap_net_bind_service`,
/// `CAP_NET_BIND_SERVICE`) into `CAP_…` names, sorted and deduplicated. Only capabilities
/// of Docker's default set are granted: `kiln run` never runs a container with more than
/// `docker run` gives one by default (no `SYS_ADMIN`, no `ALL`).
pub fn parse_caps(values: &[String]) -> Result<Vec<String>, RuntimeError> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let upper = v.trim().to_ascii_uppercase();
        let name = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if !kiln_build::run::spec::DEFAULT_CAPS.contains(&name.as_str()) {
            return Err(RuntimeError::input(
                format!("--cap-add {v}: kiln run grants only capabilities of Docker's default set"),
                format!(
                    "one of {}",
                    kiln_build::run::spec::DEFAULT_CAPS
                        .iter()
                        .map(|c| c.trim_start_matches("CAP_"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        assert_eq!(
            Publish::parse("8080:80").unwrap(),
            Publish {
                host: 8080,
                container: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(Publish::parse("9000/tcp").unwrap().host, 9000);
        let udp = Publish::parse("5353:53/udp").unwrap();
        assert_eq!((udp.host, udp.container, udp.proto), (5353, 53, Proto::Udp));
        assert_eq!(udp.to_string(), "5353->53/udp");
        assert_eq!(Publish::parse("53/udp").unwrap().host, 53);
        assert!(Publish::parse("53/sctp").is_err());
        let old: Publish = serde_json::from_str(r#"{"host":1,"container":2}"#).unwrap();
        assert_eq!(old.proto, Proto::Tcp, "state from before UDP reads as TCP");
        assert!(Publish::parse("0:80").is_err());
        assert!(Publish::parse("a:b").is_err());
        assert!(Publish::parse("70000").is_err());
    }

    #[test]
    fn caps_as_docker_names_them_from_its_default_set_only() {
        let caps = |v: &[&str]| parse_caps(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            caps(&["net_bind_service", "CAP_CHOWN", "NET_BIND_SERVICE"]).unwrap(),
            ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
        );
        for refused in ["SYS_ADMIN", "ALL", "NET_ADMIN", "bogus"] {
            let e = caps(&[refused]).unwrap_err().to_string();
            assert!(
                e.contains("Docker's default set") && e.contains("NET_BIND_SERVICE"),
                "{e}"
            );
        }
    }

    #[test]
    fn network_modes() {
        assert_eq!(Network::parse("none").unwrap(), Network::None);
        assert!(Network::parse("bridge2").is_err());
    }
}
