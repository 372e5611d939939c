//! `RUN --mount=…` parsing, with BuildKit's option names and defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a bind or cache mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountFrom {
    /// The build context (the default for bind mounts).
    Context,
    /// A stage, by name or index, or an image, as written (the frontend resolves it).
    Named {
        /// As written after `from=`.
        name: String,
    },
    /// An earlier stage's filesystem.
    Stage {
        /// Stage index.
        index: usize,
    },
    /// An image, pinned by digest.
    Image {
        /// Name as written.
        reference: String,
        /// Manifest digest.
        digest: kiln_oci::Digest,
    },
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// Shared by all writers.
    Shared,
    /// A fresh copy when in use.
    Private,
    /// One writer at a time.
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunMount {
    /// `type=bind`.
    Bind {
        /// Mount point.
        target: String,
        /// Path in the source.
        source: String,
        /// Source.
        from: MountFrom,
        /// Writable (changes are discarded).
        rw: bool,
    },
    /// `type=cache`.
    Cache {
        /// Mount point.
        target: String,
        /// Cache id (default: the target).
        id: String,
        /// Sharing mode.
        sharing: Sharing,
        /// Seed content source, if any.
        from: Option<MountFrom>,
        /// Path in the seed source.
        source: String,
        /// Directory mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Read-only.
        readonly: bool,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Mount point.
        target: String,
        /// Size limit in bytes (0 = default).
        size: u64,
    },
    /// `type=secret`.
    Secret {
        /// Secret id.
        id: String,
        /// File target (default /run/secrets/ID) unless only `env` is given.
        target: Option<String>,
        /// Environment variable to expose the value in.
        env: Option<String>,
        /// Fail when the secret is not provided.
        required: bool,
        /// File mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// `type=ssh`.
    Ssh {
        /// Agent id.
        id: String,
        /// Socket path in the step.
        target: String,
        /// Fail when no agent is provided.
        required: bool,
        /// Socket mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// A parse failure, with the option at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--mount={spec}: {message}")]
pub struct MountError {
    /// The mount value as written.
    pub spec: String,
    /// What is wrong (and how to fix it).
    pub message: String,
}

fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        _ => None,
    }
}

/// Parses one `--mount` value (already variable-expanded).
pub fn parse(spec: &str) -> Result<RunMount, MountError> {
    let err = |m: String| MountError {
        spec: spec.to_string(),
        message: m,
    };
    let mut kv: BTreeMap<String, Option<String>> = BTreeMap::new();
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let k = match k.as_str() {
            "dst" | "destination" => "target".to_string(),
            "src" => "source".to_string(),
            "ro" | "readonly" => "readonly".to_string(),
            _ => k,
        };
        kv.insert(k, v);
    }
    let kind = kv.remove("type").flatten().unwrap_or_else(|| "bind".into());
    let get = |kv: &mut BTreeMap<String, Option<String>>, k: &str| kv.remove(k).flatten();
    let num = |v: Option<String>, k: &str, radix: u32, default: u32| -> Result<u32, MountError> {
        match v {
            None => Ok(default),
            Some(s) => u32::from_str_radix(&s, radix).map_err(|_| err(format!("{k}={s} is not a number"))),
        }
    };
    let target = get(&mut kv, "target");
    let need_target = |t: Option<String>| {
        t.filter(|t| !t.is_empty())
            .ok_or_else(|| err(format!("type={kind} needs target=PATH")))
    };
    let mount = match kind.as_str() {
        "bind" => {
            let from = get(&mut kv, "from");
            let rw = match kv.remove("rw") {
                Some(v) => parse_bool(v.as_deref()).ok_or_else(|| err("rw takes true or false".into()))?,
                None => kv.remove("readwrite").is_some(),
            };
            kv.remove("readonly");
            RunMount::Bind {
                target: need_target(target)?,
                source: get(&mut kv, "source").unwrap_or_else(|| "/".into()),
                from: from.map(|name| MountFrom::Named { name }).unwrap_or(MountFrom::Context),
                rw,
            }
        }
        "cache" => {
            let target = need_target(target)?;
            let sharing = match get(&mut kv, "sharing").as_deref() {
                None | Some("shared") => Sharing::Shared,
                Some("private") => Sharing::Private,
                Some("locked") => Sharing::Locked,
                Some(o) => return Err(err(format!("sharing={o}: use shared, private or locked"))),
            };
            let readonly = match kv.remove("readonly") {
                Some(v) => parse_bool(v.as_deref()).unwrap_or(true),
                None => false,
            };
            RunMount::Cache {
                id: get(&mut kv, "id").unwrap_or_else(|| target.clone()),
                target,
                sharing,
                from: get(&mut kv, "from").map(|name| MountFrom::Named { name }),
                source: get(&mut kv, "source").unwrap_or_else(|| "/".into()),
                mode: num(get(&mut kv, "mode"), "mode", 8, 0o755)?,
                uid: num(get(&mut kv, "uid"), "uid", 10, 0)?,
                gid: num(get(&mut kv, "gid"), "gid", 10, 0)?,
                readonly,
            }
        }
        "tmpfs" => {
            let size = match get(&mut kv, "size") {
                None => 0,
                Some(s) => parse_size(&s).ok_or_else(|| err(format!("size={s}: use bytes or a k/m/g suffix")))?,
            };
            RunMount::Tmpfs {
                target: need_target(target)?,
                size,
            }
        }
        "secret" => {
            let id = get(&mut kv, "id");
            let env = get(&mut kv, "env");
            let target_default = env.is_none();
            let id = match (id, &target) {
                (Some(id), _) => id,
                (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_string(),
                (None, None) => return Err(err("type=secret needs id=ID (or a target to derive it from)".into())),
            };
            let required = match kv.remove("required") {
                Some(v) => parse_bool(v.as_deref()).ok_or_else(|| err("required takes true or false".into()))?,
                None => false,
            };
            RunMount::Secret {
                target: target.or_else(|| target_default.then(|| format!("/run/secrets/{id}"))),
                id,
                env,
                required,
                mode: num(get(&mut kv, "mode"), "mode", 8, 0o400)?,
                uid: num(get(&mut kv, "uid"), "uid", 10, 0)?,
                gid: num(get(&mut kv, "gid"), "gid", 10, 0)?,
            }
        }
        "ssh" => {
            let id = get(&mut kv, "id").unwrap_or_else(|| "default".into());
            let required = match kv.remove("required") {
                Some(v) => parse_bool(v.as_deref()).ok_or_else(|| err("required takes true or false".into()))?,
                None => false,
            };
            RunMount::Ssh {
                target: target.unwrap_or_else(|| "/run/buildkit/ssh_agent.0".into()),
                id,
                required,
                mode: num(get(&mut kv, "mode"), "mode", 8, 0o600)?,
                uid: num(get(&mut kv, "uid"), "uid", 10, 0)?,
                gid: num(get(&mut kv, "gid"), "gid", 10, 0)?,
            }
        }
        other => {
            return Err(err(format!(
                "unknown mount type {other:?}: use bind, cache, tmpfs, secret or ssh"
            )));
        }
    };
    if let Some(k) = kv.keys().next() {
        return Err(err(format!("unknown option {k:?} for type={kind}")));
    }
    Ok(mount)
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        'b' => (&s[..s.len() - 1], 1),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

impl RunMount {
    /// Where the mount appears in the step.
    pub fn target(&self) -> Option<&str> {
        match self {
            RunMount::Bind { target, .. } | RunMount::Cache { target, .. } | RunMount::Tmpfs { target, .. } => {
                Some(target)
            }
            RunMount::Ssh { target, .. } => Some(target),
            RunMount::Secret { target, .. } => target.as_deref(),
        }
    }

    /// The `from=` source of bind and cache mounts, for resolution.
    pub fn from_mut(&mut self) -> Option<&mut MountFrom> {
        match self {
            RunMount::Bind { from, .. } => Some(from),
            RunMount::Cache { from: Some(from), .. } => Some(from),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_options() {
        assert_eq!(
            parse("type=secret,id=tok,env=TOKEN,required").unwrap(),
            RunMount::Secret {
                id: "tok".into(),
                target: None,
                env: Some("TOKEN".into()),
                required: true,
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        );
        match parse("type=secret,id=tok").unwrap() {
            RunMount::Secret { target, .. } => assert_eq!(target.as_deref(), Some("/run/secrets/tok")),
            _ => unreachable!(),
        }
        match parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=10").unwrap() {
            RunMount::Cache {
                id, sharing, mode, uid, ..
            } => {
                assert_eq!(
                    (id.as_str(), sharing, mode, uid),
                    ("/root/.cache", Sharing::Locked, 0o700, 10)
                )
            }
            _ => unreachable!(),
        }
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap(),
            RunMount::Tmpfs {
                target: "/t".into(),
                size: 64 << 20
            }
        );
        match parse("target=/src,from=build,source=/out,rw").unwrap() {
            RunMount::Bind { from, rw, .. } => assert!(rw && from == MountFrom::Named { name: "build".into() }),
            _ => unreachable!(),
        }
    }

    #[test]
    fn rejects_bad_options() {
        assert!(
            parse("type=nfs,target=/x")
                .unwrap_err()
                .message
                .contains("unknown mount type")
        );
        assert!(
            parse("type=cache,target=/x,colour=red")
                .unwrap_err()
                .message
                .contains("unknown option")
        );
        assert!(parse("type=cache").unwrap_err().message.contains("needs target"));
        assert!(parse("type=cache,target=/x,sharing=maybe").is_err());
        assert!(parse("type=tmpfs,target=/x,size=lots").is_err());
    }
}
