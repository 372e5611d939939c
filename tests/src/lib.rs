//! Shared harness for kiln's integration tests: locating the kiln binary, temporary stores,
//! checks for the peer tools the tests compare against (skopeo, umoci, buildah), reading OCI
//! layouts, and recording an unpacked root filesystem so two images can be compared.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod golden;
pub mod proxy;
pub mod registry;

/// The `kiln` binary the tests drive: `$KILN_BIN`, or `debug/kiln` in the target directory
/// this test executable was built into.
///
/// # Panics
/// If it does not exist, with a message saying how to build it.
pub fn kiln_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash> → target/debug/kiln
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("kiln"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/kiln"));
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the kiln binary was not found next to {} (hint: run `cargo build -p kiln` first, or set KILN_BIN)",
            exe.display()
        )
    })
}

/// The last line of a command's standard output (where `kiln build -q`, `push` and `copy`
/// print the digest).
///
/// # Panics
/// If the command printed nothing.
pub fn last_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .lines()
        .last()
        .expect("the command printed a line")
        .to_string()
}

/// The path of a peer tool the tests need.
///
/// # Panics
/// If it is not installed: tests never pass silently without their peers.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed, and this test needs it (hint: run scripts/setup, which installs the peer tools)"
    );
}

/// Runs a command and returns its output, panicking with both streams if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(out.status.success(), "{}", describe_failure(cmd, &out));
    out
}

/// Runs a command to its end and returns its output with its peak resident memory in KiB,
/// so a test can bound the memory a command needs without sampling it. GNU time starts the
/// command and reports its `ru_maxrss`: a child spawned straight from the test process
/// would be charged the test process's own peak (`exec` carries the high-water mark of the
/// memory it replaces, and Rust spawns with `CLONE_VM`), which is how an earlier version of
/// this function read 100 MiB for a command that used 11.
pub fn run_measured(cmd: &mut Command) -> (Output, u64) {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = Command::new(require_tool("time"));
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let out = timed.output().unwrap_or_else(|e| panic!("cannot start {timed:?}: {e}"));
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" before the number.
    let kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    let kib = kib.unwrap_or_else(|| panic!("{}\n--- time\n{text}", describe_failure(cmd, &out)));
    (out, kib)
}

/// Runs a command; `Err` carries a readable description (command, status, stdout, stderr).
pub fn run_checked(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(describe_failure(cmd, &out))
    }
}

/// A one-paragraph description of a failed command.
pub fn describe_failure(cmd: &Command, out: &Output) -> String {
    format!(
        "{} {} failed ({})\n--- stdout\n{}--- stderr\n{}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(OsStr::to_string_lossy).collect::<Vec<_>>().join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A kiln store in a temporary directory.
pub struct KilnStore {
    dir: tempfile::TempDir,
    /// The umask kiln processes start with (`KILN_TEST_UMASK` by default; `None`: the
    /// test's own).
    pub umask: Option<u32>,
}

impl Default for KilnStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KilnStore {
    /// A new empty store.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            umask: test_umask(),
        }
    }

    /// A new empty store in a temp dir under `parent` (e.g. `/dev/shm`, for tests that
    /// unpack and delete many files: a disk mounted with `discard` makes that slow).
    pub fn new_in(parent: &Path) -> Self {
        Self {
            dir: tempfile::tempdir_in(parent).expect("tempdir"),
            umask: test_umask(),
        }
    }

    /// Its directory (`$KILN_HOME`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kiln ARGS…` with `KILN_HOME` pointing at this store.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(kiln_bin());
        c.env("KILN_HOME", self.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .args(args);
        if let Some(mask) = self.umask {
            with_umask(&mut c, mask);
        }
        c
    }

    /// The store's `index.json`, parsed.
    pub fn index(&self) -> Value {
        read_json(&self.path().join("index.json")).unwrap_or(Value::Null)
    }
}

/// `KILN_TEST_UMASK` (octal, e.g. `077`): the umask every kiln process the harness starts
/// runs under. Contexts and fixtures are prepared under the test's own umask, so only kiln's
/// umask changes: image digests must not depend on it.
pub fn test_umask() -> Option<u32> {
    let v = std::env::var("KILN_TEST_UMASK").ok()?;
    Some(u32::from_str_radix(v.trim(), 8).unwrap_or_else(|_| panic!("KILN_TEST_UMASK={v:?} is not octal")))
}

/// Makes `cmd` start with umask `mask` (the parent's own umask is left alone).
pub fn with_umask(cmd: &mut Command, mask: u32) {
    use std::os::unix::process::CommandExt;
    let mode = rustix::fs::Mode::from_raw_mode(mask);
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::umask(mode);
            Ok(())
        });
    }
}

/// A buildah with its own storage in a temporary directory (vfs driver, so it works in any
/// container without nested overlayfs). Everything it creates goes when this is dropped.
pub struct Buildah {
    dir: tempfile::TempDir,
}

impl Default for Buildah {
    fn default() -> Self {
        Self::new()
    }
}

impl Buildah {
    /// A new buildah storage.
    pub fn new() -> Self {
        require_tool("buildah");
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn runroot(&self) -> PathBuf {
        self.dir.path().join("runroot")
    }

    /// `buildah --root … --runroot … --storage-driver vfs ARGS…`.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.runroot())
            .args(["--storage-driver", "vfs"])
            .args(args);
        c
    }

    /// The skopeo transport string naming `name` in this storage.
    pub fn storage_ref(&self, name: &str) -> String {
        format!(
            "containers-storage:[vfs@{}+{}]{name}",
            self.root().display(),
            self.runroot().display()
        )
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // vfs layers are plain directories; unmount anything buildah left behind first.
        let _ = self.cmd(["rm", "--all"]).output();
        let _ = self.cmd(["rmi", "--all", "--force"]).output();
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a blob of an OCI layout by digest (`sha256:…`).
pub fn layout_blob(layout: &Path, digest: &str) -> Result<Value, String> {
    let (alg, hex) = digest.split_once(':').ok_or_else(|| format!("bad digest {digest}"))?;
    read_json(&layout.join("blobs").join(alg).join(hex))
}

/// The `org.opencontainers.image.ref.name`s in a layout's index.json, in order.
pub fn layout_refs(layout: &Path) -> Result<Vec<String>, String> {
    let index = read_json(&layout.join("index.json"))?;
    Ok(index["manifests"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    m["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The manifest and image config of `reference` (a ref name, or the only manifest when
/// `None`) in an OCI layout.
pub fn layout_image(layout: &Path, reference: Option<&str>) -> Result<(Value, Value), String> {
    let index = read_json(&layout.join("index.json"))?;
    let ms = index["manifests"].as_array().cloned().unwrap_or_default();
    let desc = match reference {
        Some(r) => ms
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(r))
            .ok_or_else(|| format!("{}: no manifest named {r:?}", layout.display()))?,
        None if ms.len() == 1 => &ms[0],
        None => return Err(format!("{}: {} manifests, expected one", layout.display(), ms.len())),
    };
    let manifest = layout_blob(layout, desc["digest"].as_str().unwrap_or_default())?;
    let config = layout_blob(layout, manifest["config"]["digest"].as_str().unwrap_or_default())?;
    Ok((manifest, config))
}

/// `umoci unpack --image LAYOUT:REF BUNDLE` (run as root so ownership is kept); returns the
/// bundle's rootfs.
/// The file `path` of the `arch` image under the store's `tag` (an index of several
/// platforms), as skopeo picks the platform and umoci unpacks it: tools we did not write.
pub fn platform_file(store: &KilnStore, tag: &str, arch: &str, path: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    run_ok(Command::new(require_tool("skopeo")).args([
        "copy",
        "-q",
        "--override-arch",
        arch,
        &format!("oci:{}:{tag}", store.path().display()),
        &format!("oci:{}:img", layout.display()),
    ]));
    let rootfs = umoci_unpack(&layout, "img", &tmp.path().join("bundle")).unwrap();
    std::fs::read_to_string(rootfs.join(path.trim_start_matches('/'))).unwrap()
}

pub fn umoci_unpack(layout: &Path, reference: &str, bundle: &Path) -> Result<PathBuf, String> {
    let mut c = Command::new(require_tool("umoci"));
    c.arg("unpack")
        .arg("--image")
        .arg(format!("{}:{reference}", layout.display()))
        .arg(bundle);
    run_checked(&mut c)?;
    Ok(bundle.join("rootfs"))
}

/// What is recorded of one filesystem entry: everything but times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// `f` file, `d` directory, `l` symlink, `p` fifo, `c`/`b` devices, `s` socket.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits including setuid, setgid and sticky, as octal text (`0755`).
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// sha256 of a regular file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// For a regular file with other hard links in the tree: the first path (in sorted
    /// order) of its group. `None` for that first path itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<String>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}:{}", self.kind, self.mode, self.uid, self.gid)?;
        if let Some(h) = &self.sha256 {
            write!(f, " sha256:{}", &h[..h.len().min(12)])?;
        }
        if let Some(l) = &self.link {
            write!(f, " -> {l}")?;
        }
        if let Some(h) = &self.hardlink {
            write!(f, " (hardlink of {h})")?;
        }
        Ok(())
    }
}

/// A root filesystem: absolute path (`/` for the root) → entry.
pub type Tree = BTreeMap<String, Entry>;

/// sha256 (hex) of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = kiln_oci::Digest::sha256_of(data).to_string();
    d.trim_start_matches("sha256:").to_string()
}

/// Records every entry under `root` (not following symlinks).
pub fn walk_tree(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut todo = vec![(root.to_path_buf(), "/".to_string())];
    while let Some((p, name)) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "d"
        } else if ft.is_file() {
            "f"
        } else if ft.is_symlink() {
            "l"
        } else if ft.is_fifo() {
            "p"
        } else if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            "s"
        };
        let mut e = Entry {
            kind: kind.into(),
            mode: format!("{:04o}", md.mode() & 0o7777),
            uid: md.uid(),
            gid: md.gid(),
            sha256: None,
            link: None,
            hardlink: None,
        };
        if ft.is_file() {
            let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            e.sha256 = Some(sha256_hex(&data));
            if md.nlink() > 1 {
                inodes.entry((md.dev(), md.ino())).or_default().push(name.clone());
            }
        } else if ft.is_symlink() {
            // A symlink's own permission bits mean nothing on Linux and differ by unpacker.
            e.mode = "0777".into();
            e.link = Some(
                std::fs::read_link(&p)
                    .map_err(|e| format!("{}: {e}", p.display()))?
                    .to_string_lossy()
                    .into_owned(),
            );
        } else if ft.is_dir() {
            for child in std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))? {
                let child = child.map_err(|e| format!("{}: {e}", p.display()))?;
                let cname = child.file_name().to_string_lossy().into_owned();
                let full = if name == "/" {
                    format!("/{cname}")
                } else {
                    format!("{name}/{cname}")
                };
                todo.push((child.path(), full));
            }
        }
        tree.insert(name, e);
    }
    for mut group in inodes.into_values() {
        if group.len() < 2 {
            continue;
        }
        group.sort();
        for other in &group[1..] {
            if let Some(e) = tree.get_mut(other) {
                e.hardlink = Some(group[0].clone());
            }
        }
    }
    Ok(tree)
}

/// Human-readable differences between two trees (empty when equal).
pub fn diff_trees(left_name: &str, left: &Tree, right_name: &str, right: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (p, l) in left {
        match right.get(p) {
            None => out.push(format!("  only in {left_name}: {p}  [{l}]")),
            Some(r) if r != l => out.push(format!("  {p}\n      {left_name}: {l}\n      {right_name}: {r}")),
            Some(_) => {}
        }
    }
    for (p, r) in right {
        if !left.contains_key(p) {
            out.push(format!("  only in {right_name}: {p}  [{r}]"));
        }
    }
    out
}

/// Copies a directory tree (files, dirs, symlinks; modes kept) from `src` to `dst`, skipping
/// top-level names in `skip`.
pub fn copy_tree(src: &Path, dst: &Path, skip: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| OsStr::new(s) == name) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&from, &to, &[])?;
            std::fs::set_permissions(&to, std::fs::metadata(&from)?.permissions())?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Builds the conformance base image (`tests/conformance/base`: busybox with /bin/sh) into
/// `store` as `localhost/busybox:test`, working in `scratch`; returns its manifest digest.
/// RUN tests need a base with a shell.
pub fn build_busybox_base(store: &KilnStore, scratch: &Path) -> String {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing (hint: run scripts/setup, which installs busybox-static)"
    );
    let ctx = scratch.join("busybox-base");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/base");
    copy_tree(&base, &ctx, &["setup.sh"]).expect("copying the base context");
    run_ok(
        Command::new("sh")
            .arg("-eu")
            .arg(base.join("setup.sh"))
            .current_dir(&ctx),
    );
    let iid = scratch.join("busybox-base.iid");
    let mut c = store.cmd([
        "build",
        "--progress",
        "quiet",
        "-t",
        "localhost/busybox:test",
        "--iidfile",
    ]);
    c.arg(&iid).arg(&ctx);
    run_ok(&mut c);
    std::fs::read_to_string(&iid).expect("iidfile").trim().to_string()
}

/// A peer tool from the repository's `.venv` (scripts/setup installs it there), else from PATH.
///
/// # Panics
/// If neither has it: tests never pass without their peers.
pub fn venv_tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin").join(name);
    if p.is_file() {
        return p;
    }
    require_tool(name)
}

/// A TCP port that was free a moment ago on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// `GET path` over plain HTTP/1.0 from `127.0.0.1:port`; the whole response.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Validates a SARIF file against the official 2.1.0 schema (tests/schemas) with the venv's
/// jsonschema.
///
/// # Panics
/// With the first schema errors when it is not valid.
pub fn validate_sarif_file(doc: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = "import json, sys\nimport jsonschema\nschema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\ncls = jsonschema.validators.validator_for(schema)\nerrors = sorted(cls(schema).iter_errors(doc), key=str)\nfor e in errors[:5]: print(e.message, list(e.path))\nsys.exit(1 if errors else 0)";
    run_ok(
        Command::new(venv_tool("python3"))
            .arg("-c")
            .arg(script)
            .arg(repo.join("tests/schemas/sarif-schema-2.1.0.json"))
            .arg(doc),
    );
}

/// The unprivileged user that rootless tests run kiln as.
pub const ROOTLESS_USER: &str = "kiln-rootless";

/// Creates [`ROOTLESS_USER`] (with a subordinate id range) if it does not exist; returns
/// its uid and gid.
pub fn rootless_user() -> (u32, u32) {
    const USER: &str = ROOTLESS_USER;
    if run_checked(Command::new("id").arg("-u").arg(USER)).is_err() {
        run_ok(Command::new(require_tool("useradd")).args(["-m", "-s", "/bin/sh", USER]));
    }
    let has_range = |f: &str| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{USER}:")))
    };
    if !has_range("/etc/subuid") || !has_range("/etc/subgid") {
        run_ok(Command::new(require_tool("usermod")).args([
            "--add-subuids",
            "300000-365535",
            "--add-subgids",
            "300000-365535",
            USER,
        ]));
    }
    let id = |flag: &str| -> u32 {
        let o = run_ok(Command::new("id").arg(flag).arg(USER));
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Writes `dockerfile` as `dir/Dockerfile`, creating `dir`: a one-file build context.
pub fn write_context(dir: &Path, dockerfile: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
}

/// The output lines of a build's steps (`--progress plain` prints them as BuildKit does,
/// `#N SECONDS line`), without that prefix and trailing blanks.
pub fn step_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(step_output)
        .collect()
}

/// The output text of one `--progress plain` line `#N SECONDS text`, if it is one (not a
/// header `#N [stage i/n] …`, nor `#N DONE 1.0s`, nor `#N CACHED`).
pub fn step_output(line: &str) -> Option<String> {
    let rest = line.strip_prefix('#')?;
    let (n, rest) = rest.split_once(' ')?;
    let (secs, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let is_secs = secs
        .split_once('.')
        .is_some_and(|(a, b)| !a.is_empty() && b.len() == 3 && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()));
    (n.bytes().all(|c| c.is_ascii_digit()) && is_secs).then(|| text.trim_end().to_string())
}

/// A fresh store holding the conformance base (`localhost/busybox:test`), with the scratch
/// directory it was built in (keep it alive while the store is used).
pub fn busybox_store() -> (tempfile::TempDir, KilnStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    (tmp, store)
}
