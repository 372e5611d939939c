//! What kiln remembers about a detached container (`$KILN_HOME/kiln/containers/NAME/state.json`)
//! and what the runtime says about it now.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_oci::Store;
use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io};
use crate::options::Publish;

/// A container's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Its name (`--name`, or the first 12 characters of its id).
    pub name: String,
    /// The runtime's container id.
    pub id: String,
    /// The image as named.
    pub image: String,
    /// The image's manifest digest.
    pub digest: String,
    /// Seconds since the epoch when it started.
    pub created: u64,
    /// The container process's pid (host pid namespace).
    pub pid: u32,
    /// The port proxy's pid, when ports are published.
    #[serde(default)]
    pub proxy_pid: Option<u32>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<Publish>,
    /// The argv it runs.
    pub command: Vec<String>,
    /// The runtime binary.
    pub runtime: PathBuf,
}

/// Where containers live.
pub fn containers_dir(store: &Store) -> PathBuf {
    store.meta_dir().join("containers")
}

/// The runtime's `--root` (shared with RUN steps; ids never collide).
pub fn runtime_root(store: &Store) -> PathBuf {
    store.meta_dir().join("runtime-state")
}

/// The directory of container `name`.
pub fn container_dir(store: &Store, name: &str) -> PathBuf {
    containers_dir(store).join(name)
}

impl State {
    /// Writes state.json into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), RuntimeError> {
        let path = dir.join("state.json");
        std::fs::write(&path, serde_json::to_vec_pretty(self).expect("state serialises")).map_err(io(path.display()))
    }

    /// Reads the state of container `name`.
    pub fn load(store: &Store, name: &str) -> Result<State, RuntimeError> {
        let path = container_dir(store, name).join("state.json");
        let data = std::fs::read(&path).map_err(|_| {
            RuntimeError::input(
                format!("no container named {name:?}"),
                "list running containers with `kiln ps`",
            )
        })?;
        serde_json::from_slice(&data)
            .map_err(|e| RuntimeError::env(format!("{}: {e}", path.display()), "remove the directory by hand"))
    }
}

/// The runtime's view of a container: `running`, `stopped`, `created`, or `gone` when it
/// does not know it.
pub fn status(runtime: &Path, root: &Path, id: &str) -> (String, Option<u32>) {
    let out = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return ("gone".into(), None);
    };
    if !out.status.success() {
        return ("gone".into(), None);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let pid = v["pid"].as_u64().filter(|p| *p > 0).map(|p| p as u32);
    (v["status"].as_str().unwrap_or("unknown").to_string(), pid)
}

/// Every container kiln started in this store, sorted by name.
pub fn list(store: &Store) -> Vec<State> {
    let mut out: Vec<State> = std::fs::read_dir(containers_dir(store))
        .map(|d| {
            d.flatten()
                .filter_map(|e| State::load(store, &e.file_name().to_string_lossy()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
