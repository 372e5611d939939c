//! Docs that run: every shell example in docs/*.md and README.md is run, so a page that stops
//! working fails CI (issue 17, points 15-17). New pages are picked up by themselves.
//!
//! What runs:
//! - a ```` ```console ```` block is a terminal session: each `$ COMMAND` line runs in one
//!   shell (so `cd`, variables and `$?` carry over), and the lines after it are patterns its
//!   output must contain, in order (`…` matches anything). A command that fails fails the
//!   example, unless the next command is `echo $?`, which shows the failure on purpose.
//! - a ```` ```sh ````, ```` ```bash ```` or ```` ```shell ```` block is a script, run with
//!   `bash -e -o pipefail`. Usage synopses are not examples: write them in ```` ```text ````.
//!
//! Each example runs in a fresh `KILN_HOME` and a fresh working directory, where `examples/`
//! is the repository's, `target/release/kiln` (and `kiln` on PATH) is the kiln under test,
//! `sudo` runs its arguments (the tests run as root), `$PASSWORD` and `$COSIGN_PASSWORD` are
//! set, and `127.0.0.1:5000`, `localhost:5000` and `registry.example.com` name the test
//! registry (tests/src/registry.rs). Containers an example leaves running are stopped.
//!
//! An HTML comment right before a fence (blank lines between are fine) says more:
//! - `<!-- doc-test: setup: COMMANDS -->` runs COMMANDS first (e.g. builds the `app:1` the
//!   example takes for granted);
//! - `<!-- doc-test: file: NAME -->` before any fence saves its text as NAME in the working
//!   directory of every later example on the page (the Dockerfile a lint example checks);
//! - `<!-- doc-test: network -->`: it needs the Debian mirror, so it runs only in
//!   `network_docs_examples_run` (ignored by default, run in CI with the network tests);
//! - `<!-- doc-test: skip: REASON -->`: not run. Keep these rare: the reason is required and
//!   printed, and at most a tenth of the examples may be skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_tests::kiln_bin;
use kiln_tests::registry::TestRegistry;

/// How an example is run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Run,
    Network,
    Skip(String),
}

/// What kind of fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Console,
    Script,
}

/// One shell example.
#[derive(Debug, Clone)]
struct Example {
    /// `docs/x.md:LINE` of the fence.
    at: String,
    kind: Kind,
    body: Vec<String>,
    mode: Mode,
    setup: Vec<String>,
    /// Files saved by `file:` directives earlier on the page: (name, content).
    files: Vec<(String, String)>,
}

/// A fence with its language, first line (1-based), body and the directives above it.
struct Fence {
    lang: String,
    line: usize,
    body: Vec<String>,
    directives: Vec<String>,
}

fn fences(markdown: &str) -> Vec<Fence> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = lines[i].len() - trimmed.len();
        let mut directives = Vec::new();
        let mut j = i;
        while j > 0 {
            let above = lines[j - 1].trim();
            if let Some(d) = above.strip_prefix("<!-- doc-test:").and_then(|d| d.strip_suffix("-->")) {
                directives.insert(0, d.trim().to_string());
            } else if !above.is_empty() {
                break;
            }
            j -= 1;
        }
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim() != "```" {
            end += 1;
        }
        let body = lines[start..end]
            .iter()
            .map(|l| {
                l.get(indent.min(l.len() - l.trim_start().len())..)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        out.push(Fence {
            lang: lang.trim().to_string(),
            line: i + 1,
            body,
            directives,
        });
        i = end + 1;
    }
    out
}

/// The shell examples of one page, or why its markers are wrong.
fn examples(file: &str, markdown: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for f in fences(markdown) {
        let at = format!("{file}:{}", f.line);
        let kind = match f.lang.as_str() {
            "console" => Some(Kind::Console),
            "sh" | "bash" | "shell" => Some(Kind::Script),
            _ => None,
        };
        let (mut mode, mut setup) = (Mode::Run, Vec::new());
        for d in &f.directives {
            if d == "network" {
                mode = Mode::Network;
            } else if let Some(reason) = d.strip_prefix("skip:") {
                if reason.split_whitespace().count() < 3 {
                    return Err(format!("{at}: `doc-test: skip:` needs a reason of a few words"));
                }
                mode = Mode::Skip(reason.trim().to_string());
            } else if let Some(cmd) = d.strip_prefix("setup:") {
                setup.push(cmd.trim().to_string());
            } else if let Some(name) = d.strip_prefix("file:") {
                files.push((name.trim().to_string(), f.body.join("\n") + "\n"));
            } else {
                return Err(format!(
                    "{at}: unknown marker `<!-- doc-test: {d} -->` (known: setup:, file:, network, skip: REASON)"
                ));
            }
        }
        let Some(kind) = kind else { continue };
        if kind == Kind::Script
            && let Some(l) = f.body.iter().find(|l| l.starts_with("$ "))
        {
            return Err(format!(
                "{at}: `{l}` in a ```{} block: a terminal session with output is a ```console block",
                f.lang
            ));
        }
        out.push(Example {
            at,
            kind,
            body: f.body,
            mode,
            setup,
            files: files.clone(),
        });
    }
    Ok(out)
}

/// True when `pattern` (with `…` wildcards) matches `line`.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let mut rest = line;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match rest.find(part) {
            Some(pos) if i > 0 || pos == 0 => rest = &rest[pos + part.len()..],
            _ => return false,
        }
    }
    parts.last().is_none_or(|l| l.is_empty() || rest.is_empty())
}

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// docs/*.md and README.md, as (name shown in messages, path).
fn pages() -> Vec<(String, PathBuf)> {
    let mut pages: Vec<(String, PathBuf)> = fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| (format!("docs/{}", p.file_name().unwrap().to_string_lossy()), p))
        .collect();
    pages.sort();
    pages.push(("README.md".into(), repo().join("README.md")));
    pages
}

fn all_examples() -> Vec<Example> {
    let mut all = Vec::new();
    let mut wrong = Vec::new();
    for (name, path) in pages() {
        match examples(&name, &fs::read_to_string(&path).unwrap()) {
            Ok(e) => all.extend(e),
            Err(e) => wrong.push(e),
        }
    }
    assert!(wrong.is_empty(), "doc-test markers:\n{}", wrong.join("\n"));
    all
}

/// Where examples run: one registry for all of them, a shim dir for PATH.
struct Env {
    registry: TestRegistry,
    shims: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let shims = tempfile::tempdir().unwrap();
        let sudo = shims.path().join("sudo");
        fs::write(&sudo, "#!/bin/sh\nexec \"$@\"\n").unwrap();
        fs::set_permissions(&sudo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(kiln_bin(), shims.path().join("kiln")).unwrap();
        Env {
            registry: TestRegistry::start(),
            shims,
        }
    }

    /// The documented registry names, pointed at the test registry.
    fn substitute(&self, text: &str) -> String {
        ["127.0.0.1:5000", "localhost:5000", "registry.example.com"]
            .iter()
            .fold(text.to_string(), |t, name| t.replace(name, &self.registry.addr))
    }

    /// A shell command in the example's directories, with the documented environment.
    fn shell(&self, work: &Path, home: &Path, script: &str) -> Command {
        let venv = repo().join(".venv/bin");
        let path = format!(
            "{}:{}:{}",
            self.shims.path().display(),
            venv.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("timeout");
        c.args(["600", "bash", "-o", "pipefail", "-c"])
            .arg(self.substitute(script))
            .current_dir(work)
            .env("PATH", path)
            .env("HOME", work)
            .env("KILN_HOME", home)
            .env("PASSWORD", "doc-test-password")
            .env("COSIGN_PASSWORD", "doc-test")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .stdin(Stdio::null());
        c
    }

    /// Runs one example; `Err` says what went wrong.
    fn run(&self, ex: &Example) -> Result<(), String> {
        let work = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(repo().join("examples"), work.path().join("examples")).unwrap();
        for dir in ["target/release", "target/debug"] {
            fs::create_dir_all(work.path().join(dir)).unwrap();
            std::os::unix::fs::symlink(kiln_bin(), work.path().join(dir).join("kiln")).unwrap();
        }
        for (name, text) in &ex.files {
            let p = work.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        let result = (|| {
            for s in &ex.setup {
                let out = self
                    .shell(work.path(), home.path(), &format!("set -e\n{s}"))
                    .output()
                    .unwrap();
                if !out.status.success() {
                    return Err(format!("setup `{s}` failed:\n{}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            match ex.kind {
                Kind::Script => self.run_script(work.path(), home.path(), ex),
                Kind::Console => self.run_console(work.path(), home.path(), ex),
            }
        })();
        self.stop_containers(work.path(), home.path());
        result
    }

    fn run_script(&self, work: &Path, home: &Path, ex: &Example) -> Result<(), String> {
        let out = self
            .shell(work, home, &format!("set -e\n{}", ex.body.join("\n")))
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "the script failed ({}):\n--- stdout\n{}--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A console block as one shell session: a marker after each command carries its exit
    /// status and splits the output per command.
    fn run_console(&self, work: &Path, home: &Path, ex: &Example) -> Result<(), String> {
        let mut commands: Vec<(String, Vec<String>)> = Vec::new();
        for line in &ex.body {
            if let Some(cmd) = line.strip_prefix("$ ") {
                commands.push((cmd.to_string(), vec![]));
            } else if let Some((_, expected)) = commands.last_mut() {
                expected.push(self.substitute(line));
            } else if !line.trim().is_empty() {
                return Err(format!("output {line:?} before any `$ ` command"));
            }
        }
        let mut script = String::new();
        for (i, (cmd, _)) in commands.iter().enumerate() {
            script.push_str(&format!(
                "{cmd}\n__s=$?; printf '\\n@@doc-test {i} %d\\n' $__s; echo '@@doc-test {i}' >&2; (exit $__s)\n"
            ));
        }
        let out = self.shell(work, home, &script).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let mut outputs: Vec<(Vec<String>, i32)> = Vec::new();
        let mut current = Vec::new();
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("@@doc-test ") {
                let status = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                outputs.push((std::mem::take(&mut current), status));
            } else {
                current.push(line.to_string());
            }
        }
        let errs: Vec<&str> = stderr.split_inclusive("@@doc-test ").collect();
        for (i, (cmd, expected)) in commands.iter().enumerate() {
            let Some((lines, status)) = outputs.get(i) else {
                return Err(format!(
                    "`{cmd}` did not finish (the session ended: {}):\n{stderr}",
                    out.status
                ));
            };
            let err = errs.get(i).copied().unwrap_or_default();
            let shown = commands.get(i + 1).is_some_and(|(next, _)| next.trim() == "echo $?");
            if *status != 0 && !shown {
                return Err(format!(
                    "`{cmd}` exited {status}:\n--- stdout\n{}\n--- stderr\n{err}",
                    lines.join("\n")
                ));
            }
            let mut at = 0;
            for pat in expected {
                let found = lines[at..]
                    .iter()
                    .position(|l| matches(pat, l) || matches(pat.trim_start_matches('…'), l.trim_start()));
                match found {
                    Some(k) => at += k + 1,
                    // What a command prints on stderr (an error, a warning) may be shown too.
                    None if err.lines().any(|l| matches(pat, l)) => {}
                    None => {
                        return Err(format!(
                            "`{cmd}`: no output line matches {pat:?}\n--- stdout\n{}\n--- stderr\n{err}",
                            lines.join("\n")
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops what `kiln run -d` left running in this example's store.
    fn stop_containers(&self, work: &Path, home: &Path) {
        let Ok(out) = self.shell(work, home, "kiln ps --format json").output() else {
            return;
        };
        let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return;
        };
        let names: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        if !names.is_empty() {
            let _ = self
                .shell(work, home, &format!("kiln stop -t 1 {}", names.join(" ")))
                .output();
        }
    }
}

/// Runs the examples in `mode`; panics listing every one that failed.
fn run_all(mode: Mode) -> usize {
    let all = all_examples();
    let env = Env::new();
    let chosen: Vec<&Example> = all.iter().filter(|e| e.mode == mode).collect();
    let mut failed = Vec::new();
    for ex in &chosen {
        if let Err(e) = env.run(ex) {
            failed.push(format!("{}: {e}", ex.at));
        }
    }
    eprintln!(
        "{} doc examples ran: {}",
        chosen.len(),
        chosen.iter().map(|e| e.at.as_str()).collect::<Vec<_>>().join(", ")
    );
    assert!(
        failed.is_empty(),
        "{} of {} doc examples failed:\n\n{}",
        failed.len(),
        chosen.len(),
        failed.join("\n\n")
    );
    chosen.len()
}

#[test]
fn docs_examples_run() {
    let ran = run_all(Mode::Run);
    assert!(ran >= 25, "only {ran} examples ran");
}

#[test]
#[ignore = "network: the examples that need the Debian mirror"]
fn network_docs_examples_run() {
    let ran = run_all(Mode::Network);
    assert!(ran >= 3, "only {ran} network examples ran");
}

/// Skipped examples are few, and each says why.
#[test]
fn skipped_examples_are_rare_and_say_why() {
    let all = all_examples();
    let skipped: Vec<String> = all
        .iter()
        .filter_map(|e| match &e.mode {
            Mode::Skip(r) => Some(format!("{}: {r}", e.at)),
            _ => None,
        })
        .collect();
    eprintln!(
        "{} of {} examples skipped:\n{}",
        skipped.len(),
        all.len(),
        skipped.join("\n")
    );
    assert!(
        skipped.len() * 10 <= all.len(),
        "{} of {} examples are skipped; make them run (setup:, file:, network)",
        skipped.len(),
        all.len()
    );
}

/// Point 15: the README links every page in docs/, and promises nothing that does not exist.
#[test]
fn readme_links_every_docs_page_and_claims_only_what_exists() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let missing: Vec<String> = pages()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| {
            n.starts_with("docs/") && !readme.contains(&format!("]({n})")) && !readme.contains(&format!("]({n}#"))
        })
        .collect();
    assert!(missing.is_empty(), "README.md does not link {missing:?}");
    assert!(
        !readme.contains("being built next"),
        "README.md still says things are being built next"
    );
    // "policy denied" belongs in the exit-code table once there is a policy command.
    let has_policy = Command::new(kiln_bin())
        .args(["policy", "--help"])
        .output()
        .unwrap()
        .status
        .success();
    let table = &readme[readme.find("## Exit codes").expect("an exit-code section")..];
    assert_eq!(
        table.contains("policy"),
        has_policy,
        "the exit-code table and `kiln policy` disagree"
    );
}

#[test]
fn markers_are_understood() {
    let md = "text\n\n<!-- doc-test: file: Dockerfile -->\n```dockerfile\nFROM scratch\n```\n\n\
              <!-- doc-test: setup: kiln build -q -t app:1 . -->\n\n```sh\nkiln images\n```\n\
              <!-- doc-test: network -->\n```console\n$ kiln lock x\n```\n\
              <!-- doc-test: skip: it installs packages system-wide -->\n```bash\nscripts/setup\n```\n\
              ```text\nkiln build [-t NAME]\n```\n  ```console\n  $ kiln images\n  REPOSITORY…\n  ```\n";
    let ex = examples("x.md", md).unwrap();
    assert_eq!(ex.len(), 4);
    assert_eq!((ex[0].kind, &ex[0].mode), (Kind::Script, &Mode::Run));
    assert_eq!(ex[0].setup, ["kiln build -q -t app:1 ."]);
    assert_eq!(ex[0].files, [("Dockerfile".to_string(), "FROM scratch\n".to_string())]);
    assert_eq!(ex[1].mode, Mode::Network);
    assert_eq!(ex[2].mode, Mode::Skip("it installs packages system-wide".into()));
    assert_eq!(ex[3].body, ["$ kiln images", "REPOSITORY…"]);
    assert_eq!(ex[0].at, "x.md:10");
    for bad in [
        "<!-- doc-test: skip -->\n```sh\nx\n```\n",
        "<!-- doc-test: skip: no -->\n```sh\nx\n```\n",
        "<!-- doc-test: frobnicate -->\n```sh\nx\n```\n",
        "```sh\n$ kiln images\n```\n",
    ] {
        assert!(examples("x.md", bad).is_err(), "{bad}");
    }
}

#[test]
fn wildcard_matching() {
    assert!(matches("sha256:…", "sha256:abc"));
    assert!(!matches("sha256:…", "xsha256:abc"));
    assert!(matches("…\"target\": 1…", "  \"target\": 1,"));
    assert!(matches(
        "Deleted … blobs, reclaimed …",
        "Deleted 3 blobs, reclaimed 1.2kB"
    ));
    assert!(!matches("a…b", "a c"));
}
