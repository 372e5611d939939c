//! Crashes and concurrent use never produce a wrong image (issue 18): kill -9 of
//! `prune --cache` at random moments, builds racing `prune --cache` on one store, and kill
//! -9 during a RUN step (no container, process or mount may outlive kiln).
//!
//! Every loop is bounded in count and time. Stores live on /dev/shm: the disk here deletes
//! many small files slowly (mounted with `discard`), which would only make the loops long.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::registry::Rng;
use kiln_tests::{KilnStore, build_busybox_base, run_ok};

fn shm() -> &'static Path {
    Path::new("/dev/shm")
}

/// A store with the busybox base and `localhost/many:1` on top of it: `dirs` × 500 small
/// files under /data, so unpacking and deleting its snapshot takes a moment.
fn store_with_many(scratch: &Path, dirs: usize) -> KilnStore {
    let kiln = KilnStore::new_in(shm());
    build_busybox_base(&kiln, tempfile::tempdir_in(scratch).unwrap().path());
    let ctx = scratch.join("many");
    if !ctx.exists() {
        for d in 0..dirs {
            let dir = ctx.join(format!("data/d{d:03}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..500 {
                std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
            }
        }
        std::fs::write(ctx.join("Dockerfile"), "FROM localhost/busybox:test\nCOPY data /data\n").unwrap();
    }
    run_ok(
        kiln.cmd(["build", "--progress", "quiet", "-t", "localhost/many:1"])
            .arg(&ctx),
    );
    kiln
}

/// An app context whose RUN step counts what it sees of the base: a snapshot that lost
/// files gives another layer, so another digest.
fn app(scratch: &Path, name: &str) -> PathBuf {
    let ctx = scratch.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM localhost/many:1\nRUN find /data | wc -l > /count-{name} && ls -lR /bin | wc -l >> /count-{name}\n"
        ),
    )
    .unwrap();
    ctx
}

/// `kiln build` of `ctx`, tagged `tag`; the image digest on success.
fn build(kiln: &KilnStore, ctx: &Path, tag: &str) -> Result<String, String> {
    let iid = ctx.with_extension(format!("{}.iid", std::process::id()));
    let out = kiln
        .cmd(["build", "--progress", "plain", "-t", tag, "--iidfile"])
        .arg(&iid)
        .arg(ctx)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(std::fs::read_to_string(&iid).unwrap().trim().to_string())
    } else {
        Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn spawn(kiln: &KilnStore, args: &[&str]) -> Child {
    kiln.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every tag in index.json names a manifest whose config and layers are all present.
fn tags_are_whole(kiln: &KilnStore) -> Result<(), String> {
    let blob = |d: &str| kiln.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    for m in kiln.index()["manifests"].as_array().cloned().unwrap_or_default() {
        let name = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or("(untagged)");
        let d = m["digest"].as_str().unwrap_or_default();
        let manifest = kiln_tests::read_json(&blob(d)).map_err(|e| format!("tag {name}: manifest {d}: {e}"))?;
        let mut parts = vec![manifest["config"]["digest"].as_str().unwrap_or_default().to_string()];
        for l in manifest["layers"].as_array().cloned().unwrap_or_default() {
            parts.push(l["digest"].as_str().unwrap_or_default().to_string());
        }
        for p in parts {
            if !blob(&p).is_file() {
                return Err(format!("tag {name} ({d}) refers to missing blob {p}"));
            }
        }
    }
    Ok(())
}

/// kill -9 `prune --cache` at 10 random moments of its run; every build after it gives the
/// serial digest.
#[test]
fn kill_during_prune_cache() {
    kiln_tests::require_tool("runc");
    let scratch = tempfile::tempdir_in(shm()).unwrap();
    let serial = store_with_many(scratch.path(), 10);
    let ctx = app(scratch.path(), "app");
    let want = build(&serial, &ctx, "localhost/app:1").unwrap();
    drop(serial);

    let kiln = store_with_many(scratch.path(), 10);
    assert_eq!(build(&kiln, &ctx, "localhost/app:1").unwrap(), want);
    // How long an uninterrupted prune --cache takes here: the range of kill points.
    let t = Instant::now();
    run_ok(&mut kiln.cmd(["prune", "--cache"]));
    let span = t.elapsed().as_micros().max(2000) as u64;
    let mut rng = Rng::new(18);
    let mut cut_short = 0;
    for round in 0..10 {
        assert_eq!(
            build(&kiln, &ctx, "localhost/app:1").unwrap(),
            want,
            "round {round}: before"
        );
        let at = Duration::from_micros(rng.below(span));
        let mut p = spawn(&kiln, &["prune", "--cache"]);
        std::thread::sleep(at);
        if p.try_wait().unwrap().is_none() {
            cut_short += 1;
        }
        let _ = p.kill();
        let _ = p.wait();
        let got = build(&kiln, &ctx, "localhost/app:1").unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            got, want,
            "round {round}: a build after prune --cache was killed at {at:?} gave another image"
        );
    }
    assert!(
        cut_short >= 3,
        "only {cut_short} of 10 prunes were killed before they ended"
    );
}

/// 20 rounds of two builds and a `prune --cache` started together on one store: every build
/// that succeeds has the serial digest, a build that fails says why, and no tag is left
/// pointing at a missing blob.
#[test]
fn concurrent_builds_and_prune() {
    kiln_tests::require_tool("runc");
    let scratch = tempfile::tempdir_in(shm()).unwrap();
    let serial = store_with_many(scratch.path(), 4);
    let (c1, c2) = (app(scratch.path(), "one"), app(scratch.path(), "two"));
    let want1 = build(&serial, &c1, "localhost/one:1").unwrap();
    let want2 = build(&serial, &c2, "localhost/two:1").unwrap();
    drop(serial);

    let kiln = store_with_many(scratch.path(), 4);
    let mut rng = Rng::new(35);
    let (mut ok, mut failed) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(150);
    for round in 0..20 {
        assert!(Instant::now() < deadline, "round {round}: the loop ran out of time");
        let stagger = Duration::from_millis(rng.below(200));
        let results = std::thread::scope(|s| {
            let b1 = s.spawn(|| build(&kiln, &c1, "localhost/one:1"));
            let b2 = s.spawn(|| build(&kiln, &c2, "localhost/two:1"));
            std::thread::sleep(stagger);
            let p = kiln.cmd(["prune", "--cache"]).output().unwrap();
            assert!(
                p.status.success(),
                "round {round}: prune --cache failed: {}",
                String::from_utf8_lossy(&p.stderr)
            );
            [(b1.join().unwrap(), &want1), (b2.join().unwrap(), &want2)]
        });
        for (r, want) in results {
            match r {
                Ok(d) => {
                    assert_eq!(
                        &d, want,
                        "round {round}: a build racing prune --cache gave another image"
                    );
                    ok += 1;
                }
                Err(e) => {
                    // Losing a race is allowed only with a located, readable error.
                    assert!(e.contains("error:"), "round {round}: unclear failure: {e}");
                    failed.push(format!("round {round}: {e}"));
                }
            }
        }
        tags_are_whole(&kiln).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(
        failed.is_empty(),
        "{ok} builds succeeded, but some failed:\n{}",
        failed.join("\n")
    );
}

/// True if process `pid` is alive (a zombie is not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && alive(&pid) {
            out.push(format!("{pid} {cmdline}"));
        }
    }
    out
}

/// Mount points under `dir` in this (the host's) mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// kill -9 kiln during `RUN sleep 30`: within 5 s no runtime process and no process of the
/// step is alive, and no mount under $KILN_HOME is in the host's mount table; the next
/// build and `prune --cache` succeed.
#[test]
fn kill_during_run() {
    kiln_tests::require_tool("runc");
    let scratch = tempfile::tempdir_in(shm()).unwrap();
    let kiln = KilnStore::new_in(shm());
    build_busybox_base(&kiln, scratch.path());
    let mark = format!("kiln-crash-{}", std::process::id());
    let ctx = scratch.path().join("sleep");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM localhost/busybox:test\nRUN sleep 30; echo {mark}\n"),
    )
    .unwrap();
    let home = kiln.path().to_string_lossy().into_owned();
    let mut child = spawn(
        &kiln,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "localhost/sleep:1",
            ctx.to_str().unwrap(),
        ],
    );
    kill_once_running(&mut child, &format!("sleep 30; echo {mark}"));
    let killed = Instant::now();
    let leftovers = || {
        let mut l = processes_with(&mark);
        l.extend(processes_with(&home));
        l.extend(mounts_under(kiln.path()).into_iter().map(|m| format!("mount {m}")));
        l
    };
    while !leftovers().is_empty() && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = leftovers();
    assert!(
        left.is_empty(),
        "5 s after kill -9 these outlived kiln:\n{}",
        left.join("\n")
    );

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:test\nRUN echo done > /done\n",
    )
    .unwrap();
    run_ok(
        kiln.cmd(["build", "--progress", "plain", "-t", "localhost/sleep:1"])
            .arg(&ctx),
    );
    run_ok(&mut kiln.cmd(["prune", "--cache"]));
    let state = kiln.path().join("kiln/runtime-state");
    let states: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(states.is_empty(), "runtime state left: {states:?}");
}

/// kill -9 of a build during its second RUN step: the first step's cache record (written
/// without a directory fsync of its own, its content fsynced before it is named) is whole
/// and used by the next build, whose digest is that of the same build in a fresh store.
#[test]
fn kill_after_a_step_keeps_its_record() {
    let scratch = tempfile::tempdir_in(shm()).unwrap();
    let kiln = KilnStore::new_in(shm());
    build_busybox_base(&kiln, scratch.path());
    let mark = format!("kiln-crash-step-{}", std::process::id());
    let ctx = scratch.path().join("steps");
    std::fs::create_dir_all(&ctx).unwrap();
    let first = "FROM localhost/busybox:test\nRUN echo one > /one\n";
    std::fs::write(ctx.join("Dockerfile"), format!("{first}RUN sleep 30; echo {mark}\n")).unwrap();
    let mut child = spawn(&kiln, &["build", "--progress", "plain", ctx.to_str().unwrap()]);
    kill_once_running(&mut child, &format!("sleep 30; echo {mark}"));

    std::fs::write(ctx.join("Dockerfile"), format!("{first}RUN echo two > /two\n")).unwrap();
    let out = run_ok(
        kiln.cmd(["build", "--progress", "plain", "-t", "localhost/steps:1"])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let cached = err
        .lines()
        .filter(|l| l.starts_with('#') && l.ends_with(" CACHED"))
        .count();
    assert_eq!(cached, 1, "the killed build's first step is reused:\n{err}");
    let digest = kiln_tests::last_line(&out);

    let fresh = KilnStore::new_in(shm());
    build_busybox_base(&fresh, tempfile::tempdir_in(shm()).unwrap().path());
    let out = run_ok(
        fresh
            .cmd(["build", "--progress", "plain", "-t", "localhost/steps:1"])
            .arg(&ctx),
    );
    assert_eq!(kiln_tests::last_line(&out), digest);
    tags_are_whole(&kiln).unwrap();
}

/// kill -9 of a build once a process whose command line holds `step` runs (its RUN step
/// has started), waiting at most 60 s; the build must not end before.
fn kill_once_running(child: &mut std::process::Child, step: &str) {
    let start = Instant::now();
    while processes_with(step).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before its step ran"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "the step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
