//! Registry credentials in Docker's `config.json`: the file docker, podman, skopeo, buildah
//! and crane all read, so a `kiln login` works for them and theirs work for kiln.
//!
//! Lookup order for a host, as the docker CLI resolves it: `credHelpers[host]`, else
//! `credsStore`, else `auths[host]`. A configured helper is authoritative: when it has
//! nothing for the host the pull is anonymous, even if `auths` has an entry (docker keeps
//! only placeholders there once a store is set). Helpers speak the `docker-credential-*`
//! protocol: the server name on stdin to `get`, JSON with `Username` and `Secret` back.
//!
//! Identity tokens (the refresh tokens an OAuth2 login leaves) come from
//! `auths[host].identitytoken`, or from a helper answering with the user name `<token>`;
//! they are sent to the token server as an OAuth2 refresh grant (see [`crate::token`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::error::{RegistryError, Result};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or personal access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, even in debug logs.
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// The user name that marks an identity token, in credential helpers' answers and here.
pub const TOKEN_USERNAME: &str = "<token>";

impl Credentials {
    /// An identity token, as docker's credential helpers return one: user name `<token>`,
    /// the token as the secret.
    pub fn from_identity_token(token: &str) -> Credentials {
        Credentials {
            username: TOKEN_USERNAME.to_string(),
            password: token.to_string(),
        }
    }

    /// The identity token, when these credentials are one.
    pub fn identity_token(&self) -> Option<&str> {
        (self.username == TOKEN_USERNAME && !self.password.is_empty()).then_some(self.password.as_str())
    }

    /// Parses `USER:PASSWORD` as given to `--creds`.
    pub fn parse(s: &str) -> Option<Credentials> {
        let (u, p) = s.split_once(':')?;
        Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

/// The credentials file in use: `explicit` (`--authfile`), else `$REGISTRY_AUTH_FILE`, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn auth_file_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/".into());
    home.join(".docker/config.json")
}

fn config_err(path: &Path, reason: impl Into<String>, hint: &str) -> RegistryError {
    RegistryError::Config {
        path: path.to_path_buf(),
        reason: reason.into(),
        hint: hint.to_string(),
    }
}

fn read_config(path: &Path) -> Result<Map<String, Value>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(config_err(path, e.to_string(), "check the file's permissions")),
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(config_err(path, "not a JSON object", "fix or remove the file")),
        Err(e) => Err(config_err(
            path,
            format!("malformed JSON: {e}"),
            "fix or remove the file",
        )),
    }
}

/// The key spellings a host may have in `auths`: `host`, `https://host`, `http://host`,
/// with or without a path (docker writes `https://index.docker.io/v1/` for Docker Hub).
fn key_matches(key: &str, host: &str) -> bool {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    k == host || (host == "docker.io" && matches!(k, "index.docker.io" | "registry-1.docker.io"))
}

/// Finds credentials for `host` in the file at `path` (see the module docs for the order).
/// `Ok(None)` means anonymous.
pub fn lookup(path: &Path, host: &str) -> Result<Option<Credentials>> {
    let cfg = read_config(path)?;
    if let Some(Value::Object(helpers)) = cfg.get("credHelpers")
        && let Some((_, Value::String(h))) = helpers.iter().find(|(k, _)| key_matches(k, host))
    {
        return helper_get(h, host);
    }
    if let Some(Value::String(h)) = cfg.get("credsStore").filter(|h| h.as_str() != Some("")) {
        return helper_get(h, host);
    }
    match cfg.get("auths") {
        Some(Value::Object(auths)) => match auths.iter().find(|(k, _)| key_matches(k, host)) {
            Some((_, Value::Object(entry))) => auths_entry(path, host, entry),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Credentials from one `auths` entry: its identity token if it has one (docker keeps the
/// user name beside it, but the token server needs only the token), else `auth`
/// (base64 `USER:PASSWORD`), else `username` and `password`.
fn auths_entry(path: &Path, host: &str, entry: &Map<String, Value>) -> Result<Option<Credentials>> {
    if let Some(Value::String(t)) = entry.get("identitytoken").filter(|t| t.as_str() != Some("")) {
        return Ok(Some(Credentials::from_identity_token(t)));
    }
    if let Some(Value::String(a)) = entry.get("auth").filter(|a| a.as_str() != Some("")) {
        let raw = B64.decode(a.trim()).map_err(|e| {
            config_err(
                path,
                format!("auths[{host:?}].auth is not base64: {e}"),
                "run `kiln login` again",
            )
        })?;
        let text = String::from_utf8_lossy(&raw);
        let creds = Credentials::parse(&text).ok_or_else(|| {
            config_err(
                path,
                format!("auths[{host:?}].auth is not USER:PASSWORD"),
                "run `kiln login` again",
            )
        })?;
        return Ok(Some(creds));
    }
    if let (Some(Value::String(u)), Some(Value::String(p))) = (entry.get("username"), entry.get("password")) {
        return Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    Ok(None)
}

/// True for a helper name docker would accept as the suffix of `docker-credential-`: it is
/// looked up on PATH, so a `/` (or anything but `[A-Za-z0-9._-]`) could make a config file
/// run a program of its choosing.
pub fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Runs `docker-credential-NAME get` for `host`.
pub fn helper_get(name: &str, host: &str) -> Result<Option<Credentials>> {
    if !valid_helper_name(name) {
        return Err(config_err(
            Path::new(&format!("docker-credential-{}", name.escape_default())),
            format!("credential helper name {name:?} may only contain letters, digits, '.', '_' and '-'"),
            "name a docker-credential-NAME program on PATH in credHelpers/credsStore, never a path",
        ));
    }
    let program = format!("docker-credential-{name}");
    let path = PathBuf::from(&program);
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            config_err(
                &path,
                format!("cannot run the credential helper: {e}"),
                "install it on PATH, or remove it from credHelpers/credsStore in config.json",
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| config_err(&path, e.to_string(), "check the helper"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The protocol's "not found" answer: anonymous, not an error.
        if stdout.contains("credentials not found") || String::from_utf8_lossy(&out.stderr).contains("not found") {
            return Ok(None);
        }
        return Err(config_err(
            &path,
            format!("`get {host}` failed ({}): {}", out.status, stdout.trim()),
            "run the helper by hand to see why",
        ));
    }
    let v: Value = serde_json::from_str(&stdout).map_err(|e| {
        config_err(
            &path,
            format!("`get {host}` printed malformed JSON: {e}"),
            "the helper must print {\"Username\":…,\"Secret\":…}",
        )
    })?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (username, password) = (field("Username"), field("Secret"));
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

/// Writes `creds` for `host` into `auths` (as docker does without a credential store),
/// keeping everything else in the file. The file is created with mode 0600.
pub fn store(path: &Path, host: &str, creds: &Credentials) -> Result<()> {
    let mut cfg = read_config(path)?;
    let auths = cfg.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(config_err(path, "`auths` is not an object", "fix or remove the file"));
    };
    auths.retain(|k, _| !key_matches(k, host));
    let token = B64.encode(format!("{}:{}", creds.username, creds.password));
    auths.insert(host.to_string(), serde_json::json!({ "auth": token }));
    write_config(path, &cfg)
}

/// Removes `host` from `auths`; returns false if it was not there.
pub fn remove(path: &Path, host: &str) -> Result<bool> {
    let mut cfg = read_config(path)?;
    let Some(Value::Object(auths)) = cfg.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| !key_matches(k, host));
    if auths.len() == before {
        return Ok(false);
    }
    write_config(path, &cfg)?;
    Ok(true)
}

fn write_config(path: &Path, cfg: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| config_err(path, e.to_string(), "check that the directory is writable");
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config-")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    let mut data = serde_json::to_vec_pretty(&Value::Object(cfg.clone())).expect("JSON values serialise");
    data.push(b'\n');
    tmp.write_all(&data).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_logout_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"auths":{"https://other.io/v1/":{"auth":"eDp5"}},"psFormat":"x"}"#,
        )
        .unwrap();
        let c = Credentials::parse("me:pa:ss").unwrap();
        store(&p, "127.0.0.1:5000", &c).unwrap();
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), Some(c));
        assert_eq!(lookup(&p, "other.io").unwrap().unwrap().username, "x");
        assert!(std::fs::read_to_string(&p).unwrap().contains("psFormat"));
        assert!(remove(&p, "127.0.0.1:5000").unwrap());
        assert!(!remove(&p, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"credHelpers":{"h.io":"kiln-test-absent"}}"#).unwrap();
        let e = lookup(&p, "h.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-kiln-test-absent") && e.contains("hint"),
            "{e}"
        );
    }

    #[test]
    fn identity_tokens_come_from_auths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        // As docker writes it after an OAuth2 login: the user name in `auth`, no password.
        std::fs::write(
            &p,
            r#"{"auths":{"reg.io":{"auth":"bWU6","identitytoken":"refresh-xyz"},"plain.io":{"auth":"bWU6cHc="}}}"#,
        )
        .unwrap();
        let c = lookup(&p, "reg.io").unwrap().unwrap();
        assert_eq!(c.identity_token(), Some("refresh-xyz"));
        assert_eq!(lookup(&p, "plain.io").unwrap().unwrap().identity_token(), None);
    }

    #[test]
    fn helper_names_are_never_paths() {
        for ok in ["pass", "ecr-login", "osxkeychain", "gcloud", "a.b_c-1"] {
            assert!(valid_helper_name(ok), "{ok}");
        }
        for bad in ["", "../../tmp/evil", "x/../evil", "/bin/sh", "a b", "a;b", "a\nb", "é"] {
            assert!(!valid_helper_name(bad), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"credsStore":"../../tmp/evil"}"#).unwrap();
        let e = lookup(&p, "h.io").unwrap_err().to_string();
        assert!(e.contains("may only contain") && e.contains("hint"), "{e}");
    }
}
