//! `RUN --mount=type=cache` sharing modes and seeding (issue 16, "Cache mounts"):
//! `sharing=private` gives each of two concurrent builds its own directory, `sharing=locked`
//! lets one step at a time in, and `from=STAGE_OR_IMAGE,source=PATH` seeds a new cache.

use std::path::Path;
use std::process::{Child, Output, Stdio};

use kiln_tests::{KilnStore, busybox_store, require_tool, run_ok, step_lines, write_context};

/// Waits (in the step) until every marker in `names` exists in the shared dir /s, for at
/// most a minute: a rendezvous that makes two steps of two builds run at the same time.
fn rendezvous(names: &[&str]) -> String {
    let test = names
        .iter()
        .map(|n| format!("[ -e /s/{n} ]"))
        .collect::<Vec<_>>()
        .join(" && ");
    format!("i=0; until {test}; do i=$((i+1)); [ $i -gt 600 ] && echo rendezvous-timeout && break; sleep 0.1; done")
}

fn spawn_build(store: &KilnStore, ctx: &Path, tag: &str) -> Child {
    store
        .cmd(["build", "--progress", "plain", "-t", tag])
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The text after `prefix` on the step output line that starts with it.
fn line_after(out: &Output, prefix: &str) -> String {
    let lines = step_lines(out);
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
}

/// Two builds of one store, each with a RUN step that writes its name into a cache mount,
/// meet at a rendezvous, then list the mount.
fn two_concurrent_builds(store: &KilnStore, dir: &Path, sharing: &str) -> (Output, Output) {
    let mut children = Vec::new();
    for name in ["a", "b"] {
        let ctx = dir.join(format!("{sharing}-{name}"));
        let wait = rendezvous(&[&format!("{sharing}-a"), &format!("{sharing}-b")]);
        write_context(
            &ctx,
            &format!(
                "FROM localhost/busybox:test\nRUN --mount=type=cache,id=kiln-test-{sharing},target=/p,sharing={sharing} \
                 --mount=type=cache,id=kiln-test-rendezvous-{sharing},target=/s,sharing=shared \
                 sh -c 'echo {name} > /p/{name}; touch /s/{sharing}-{name}; {wait}; echo \"seen: $(ls /p | tr \"\\n\" \" \")\"'\n"
            ),
        );
        children.push(spawn_build(
            store,
            &ctx,
            &format!("localhost/cache-{sharing}-{name}:test"),
        ));
    }
    let b = finished(children.pop().unwrap());
    let a = finished(children.pop().unwrap());
    (a, b)
}

#[test]
fn private_cache_mounts_are_not_shared_by_concurrent_steps() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    let (a, b) = two_concurrent_builds(&store, tmp.path(), "private");
    for out in [&a, &b] {
        assert!(
            !step_lines(out).iter().any(|l| l.contains("rendezvous-timeout")),
            "the two steps ran at the same time: {:?}",
            step_lines(out)
        );
    }
    assert_eq!(line_after(&a, "seen:"), "a", "build a saw only its own private cache");
    assert_eq!(line_after(&b, "seen:"), "b", "build b saw only its own private cache");
    // Both directories stay, under the one id.
    let ls = run_ok(&mut store.cmd(["cache", "ls", "--format", "json"]));
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let n = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == "kiln-test-private")
        .count();
    assert_eq!(n, 2, "{listed}");
    run_ok(&mut store.cmd(["cache", "rm", "kiln-test-private"]));
    let ls = run_ok(&mut store.cmd(["cache", "ls", "--format", "json"]));
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("kiln-test-private\""));

    // The same steps with sharing=shared see each other's files (the rendezvous guarantees
    // both wrote before either lists).
    let (a, b) = two_concurrent_builds(&store, tmp.path(), "shared");
    assert_eq!(line_after(&a, "seen:"), "a b");
    assert_eq!(line_after(&b, "seen:"), "a b");
}

#[test]
fn locked_cache_mounts_let_one_step_in_at_a_time() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    let mut children = Vec::new();
    for name in ["a", "b"] {
        let ctx = tmp.path().join(format!("locked-{name}"));
        // Whoever holds the cache finds no one else inside, then leaves.
        write_context(
            &ctx,
            &format!(
                "FROM localhost/busybox:test\nRUN --mount=type=cache,id=kiln-test-locked,target=/l,sharing=locked \
                 sh -c 'if [ -e /l/inside ]; then echo overlap: yes; else echo overlap: no; fi; echo {name} > /l/inside; sleep 1; \
                 echo \"others: $(cat /l/visited 2>/dev/null)\"; echo {name} >> /l/visited; rm /l/inside'\n"
            ),
        );
        children.push(spawn_build(
            &store,
            &ctx,
            &format!("localhost/cache-locked-{name}:test"),
        ));
    }
    let b = finished(children.pop().unwrap());
    let a = finished(children.pop().unwrap());
    assert_eq!(line_after(&a, "overlap:"), "no");
    assert_eq!(line_after(&b, "overlap:"), "no");
    // One of them went second and saw the first's visit.
    let others = [line_after(&a, "others:"), line_after(&b, "others:")];
    assert!(
        others.contains(&String::new()) && others.iter().any(|o| o == "a" || o == "b"),
        "{others:?}"
    );
}

#[test]
fn from_seeds_a_cache_mount_from_a_stage_or_an_image() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("from");
    write_context(
        &ctx,
        "FROM localhost/busybox:test AS seed
RUN mkdir -p /seeddir && echo seeded > /seeddir/s.txt
FROM localhost/busybox:test
RUN --mount=type=cache,id=kiln-test-seeded,target=/c,from=seed,source=/seeddir echo \"first: $(cat /c/s.txt)\" && echo mine > /c/added
RUN --mount=type=cache,id=kiln-test-seeded,target=/c,from=seed,source=/seeddir echo \"second: $(ls /c | tr '\\n' ' ')\"
RUN --mount=type=cache,id=kiln-test-seeded,target=/c echo \"unseeded: $(ls /c | wc -l)\"
RUN --mount=type=cache,target=/img,from=localhost/busybox:test,source=/bin echo \"image: $(ls /img/busybox)\"
",
    );
    let out = run_ok(
        store
            .cmd(["build", "--progress", "plain", "-t", "localhost/seeded:test"])
            .arg(&ctx),
    );
    assert_eq!(
        line_after(&out, "first:"),
        "seeded",
        "the cache starts as the stage's /seeddir"
    );
    assert_eq!(line_after(&out, "second:"), "added s.txt", "and keeps what steps add");
    assert_eq!(
        line_after(&out, "unseeded:"),
        "0",
        "the same id without from= is another cache, as in BuildKit"
    );
    assert_eq!(line_after(&out, "image:"), "/img/busybox", "an image seeds it too");
}

/// Whether a file named `name` is anywhere below `dir`.
fn exists_below(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        e.file_name() == name || (e.file_type().is_ok_and(|t| t.is_dir()) && exists_below(&p, name))
    })
}

/// Two kiln processes building the same Dockerfile into one store at once run each step
/// once: the second waits for the first's step (a file lock per cache key) and takes its
/// record, as BuildKit's daemon merges equal steps. The step counts its runs in a shared
/// cache mount (not part of the key); the second build starts once the first's step is
/// running (its count file appeared in the store) and reaches the step well within the
/// 5 s the step takes, so without the lock both would run it.
#[test]
fn concurrent_builds_of_one_step_run_it_once() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("once");
    write_context(
        &ctx,
        "FROM localhost/busybox:test\nRUN --mount=type=cache,id=kiln-test-once,target=/c,sharing=shared \
         sh -c 'echo run >> /c/runs; sleep 5; echo done > /made'\n",
    );
    let first = spawn_build(&store, &ctx, "localhost/once-a:test");
    let mounts = store.path().join("kiln/cache-mounts");
    let start = std::time::Instant::now();
    while !exists_below(&mounts, "runs") {
        assert!(start.elapsed().as_secs() < 60, "the first build's step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let children = [first, spawn_build(&store, &ctx, "localhost/once-b:test")];
    let outs: Vec<Output> = children.into_iter().map(finished).collect();
    let waited = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("another kiln process is making the same step"))
        .count();
    assert_eq!(waited, 1, "one build says it waits for the other");
    let count = tmp.path().join("count");
    write_context(
        &count,
        "FROM localhost/busybox:test\nRUN --mount=type=cache,id=kiln-test-once,target=/c,sharing=shared \
         echo \"runs: $(wc -l < /c/runs)\"\n",
    );
    let out = run_ok(
        store
            .cmd([
                "build",
                "--progress",
                "plain",
                "--no-cache",
                "-t",
                "localhost/once-count:test",
            ])
            .arg(&count),
    );
    assert_eq!(line_after(&out, "runs:"), "1", "the step ran once for both builds");
    let inspect = |tag: &str| -> serde_json::Value {
        serde_json::from_slice(&run_ok(&mut store.cmd(["inspect", tag])).stdout).unwrap()
    };
    assert_eq!(
        inspect("localhost/once-a:test")["manifest"],
        inspect("localhost/once-b:test")["manifest"],
        "one layer, one image"
    );
}
