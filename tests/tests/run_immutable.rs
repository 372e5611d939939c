//! `kiln run` (issue 15): immutable defaults with runc — read-only rootfs, the image's USER,
//! no capabilities, no-new-privileges, tmpfs at /tmp and VOLUMEs, exit codes and signals
//! passed through, root refused unless `--user 0`, `-d` with published ports, `ps`, `logs`,
//! `stop`; `--discover-writes` and `kiln harden` validated by kubernetes-validate and
//! docker-compose; `kiln attest --type kiln-runtime`; the README's Quick start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kiln_tests::{KilnStore, build_busybox_base, busybox_store, free_port, http_get, require_tool, run_ok, venv_tool};

fn image(store: &KilnStore, dir: &Path, tag: &str, dockerfile: &str) {
    let ctx = dir.join(tag.replace([':', '/'], "-"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    if dockerfile.contains("COPY www") {
        std::fs::create_dir_all(ctx.join("www")).unwrap();
        std::fs::write(ctx.join("www/index.html"), "<p>served by kiln run</p>\n").unwrap();
    }
    run_ok(store.cmd(["build", "--progress", "quiet", "-t", tag]).arg(&ctx));
}

/// `docker-compose config` of `yaml` (written as docker-compose.yml in `dir`): it fails on
/// a file Compose does not accept, and prints the file in its normal form.
fn compose_config(dir: &Path, yaml: &[u8]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), yaml).unwrap();
    let checked = run_ok(
        Command::new(require_tool("docker-compose"))
            .arg("config")
            .current_dir(dir),
    );
    text(&checked).0
}

const APP_USER: &str = "RUN echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app /var/log && chown 1000:1000 /home/app /var/log\n";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn run_is_read_only_non_root_capless_and_passes_the_exit_code() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    image(
        &store,
        tmp.path(),
        "localhost/app:1",
        &format!("FROM localhost/busybox:test\n{APP_USER}USER app\nVOLUME /data\n"),
    );
    let script = "echo tmp-ok > /tmp/f && cat /tmp/f; echo vol-ok > /data/f && cat /data/f; \
                  echo x > /etc/x || echo etc-failed; echo uid=$(id -u); \
                  grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; \
                  unshare -U true 2>/dev/null && echo unshare-worked || echo unshare-refused; exit 7";
    let out = store
        .cmd(["run", "localhost/app:1", "sh", "-c", script])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "exit code passes through: {stdout}{stderr}");
    // Docker's default seccomp profile (filter mode 2) refuses namespace creation to a
    // process without CAP_SYS_ADMIN, which the kernel alone would allow here.
    for want in [
        "tmp-ok",
        "vol-ok",
        "etc-failed",
        "uid=1000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "unshare-refused",
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "{want:?} missing from:\n{stdout}\n{stderr}"
        );
    }
    assert!(stderr.contains("Read-only file system"), "/etc is EROFS: {stderr}");
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    assert!(stdout.contains("CapPrm:\t0000000000000000"), "{stdout}");
    // Nothing is left behind: the container's directory is removed.
    let left = std::fs::read_dir(store.path().join("kiln/containers")).unwrap().count();
    assert_eq!(left, 0, "foreground containers are removed when they exit");
    // --writable gives a writable rootfs, still as the image's user.
    let out = store
        .cmd([
            "run",
            "--writable",
            "localhost/app:1",
            "sh",
            "-c",
            "echo ok > /home/app/f && cat /home/app/f",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out).0.trim(), "ok", "{:?}", text(&out));
    // As with Docker and Podman, a non-root server may listen below 1024 in the container's
    // own network namespace without any capability (the namespaced sysctl
    // net.ipv4.ip_unprivileged_port_start is 0 there, not on the host).
    let bind80 = "httpd -p 80 && echo bound; cat /proc/sys/net/ipv4/ip_unprivileged_port_start";
    let out = store
        .cmd(["run", "localhost/app:1", "sh", "-c", bind80])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["bound", "0"], "{stdout}{stderr}");
    // --cap-add grants a capability (ambient, so the non-root program keeps it), and only
    // that one: CHOWN lets uid 1000 give a file to root, which it cannot without.
    let give = "touch /tmp/f && chown 0 /tmp/f && echo given; grep -E '^CapEff:' /proc/self/status";
    let out = store
        .cmd(["run", "localhost/app:1", "sh", "-c", give])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        !stdout.contains("given") && stderr.contains("Operation not permitted"),
        "{stdout}{stderr}"
    );
    let out = store
        .cmd(["run", "--cap-add", "chown", "localhost/app:1", "sh", "-c", give])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(stdout.lines().any(|l| l == "given"), "{stdout}{stderr}");
    assert!(stdout.contains("CapEff:\t0000000000000001"), "CHOWN alone: {stdout}");
    let out = store
        .cmd(["run", "--cap-add", "SYS_ADMIN", "localhost/app:1", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("Docker's default set"), "{:?}", text(&out));
}

#[test]
fn run_refuses_root_unless_user_0_is_given() {
    require_tool("runc");
    let (_tmp, store) = busybox_store();
    let out = store
        .cmd(["run", "localhost/busybox:test", "sh", "-c", "id -u"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("would run as root") && stderr.contains("--user 0"),
        "a clear refusal with a hint: {stderr}"
    );
    let out = run_ok(&mut store.cmd(["run", "--user", "0", "localhost/busybox:test", "sh", "-c", "id -u"]));
    assert_eq!(text(&out).0.trim(), "0");
    // A missing command is bad input, not a crash.
    let out = store
        .cmd(["run", "--user", "0", "localhost/busybox:test", "/nope"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn run_forwards_signals_to_the_container() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    image(
        &store,
        tmp.path(),
        "localhost/app:1",
        &format!("FROM localhost/busybox:test\n{APP_USER}USER app\n"),
    );
    let mut child = store
        .cmd([
            "run",
            "localhost/app:1",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(42), "the trap's exit code is kiln's");
}

#[test]
fn run_detached_publishes_a_port_and_ps_logs_stop_manage_it() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    image(
        &store,
        tmp.path(),
        "localhost/web:1",
        "FROM localhost/busybox:test\nCOPY www /srv/www\nUSER 65532:65532\nEXPOSE 8080\n\
         ENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]\n",
    );
    let port = free_port();
    let out = run_ok(&mut store.cmd([
        "run",
        "-d",
        "-p",
        &format!("{port}:8080"),
        "--name",
        "web",
        "localhost/web:1",
    ]));
    assert_eq!(text(&out).0.trim(), "web");
    let page = http_get(port, "/index.html").unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.contains("served by kiln run"),
        "{page}"
    );
    let ps = text(&run_ok(&mut store.cmd(["ps"]))).0;
    assert!(
        ps.lines()
            .any(|l| l.starts_with("web ") && l.contains("running") && l.contains(&format!("{port}->8080"))),
        "{ps}"
    );
    // A second container cannot take the same name.
    let dup = store
        .cmd(["run", "-d", "--name", "web", "localhost/web:1"])
        .output()
        .unwrap();
    assert_eq!(dup.status.code(), Some(2), "{:?}", text(&dup));
    let logs = text(&run_ok(&mut store.cmd(["logs", "web"]))).0;
    assert!(logs.contains("response:200"), "httpd's request log: {logs}");
    run_ok(&mut store.cmd(["stop", "web"]));
    let ps = text(&run_ok(&mut store.cmd(["ps"]))).0;
    assert_eq!(ps.lines().count(), 1, "only the header is left: {ps}");
    assert!(
        http_get(port, "/").is_err() || http_get(port, "/").unwrap().is_empty(),
        "the port is closed"
    );
    let out = store.cmd(["logs", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn writer(store: &KilnStore, dir: &Path) {
    build_busybox_base(store, dir);
    image(
        store,
        dir,
        "localhost/writer:1",
        &format!(
            "FROM localhost/busybox:test\n{APP_USER}USER app\n\
             CMD [\"sh\", \"-c\", \"echo started >> /var/log/app.log && mkdir -p /home/app/.cache && echo x > /home/app/.cache/x && echo done\"]\n"
        ),
    );
}

#[test]
fn discover_writes_lists_the_paths_and_harden_settings_make_it_run_read_only() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    writer(&store, tmp.path());
    let plain = store.cmd(["run", "localhost/writer:1"]).output().unwrap();
    assert_eq!(plain.status.code(), Some(1), "read-only rootfs: the program fails");
    assert!(text(&plain).1.contains("Read-only file system"));

    let writes = tmp.path().join("writes.txt");
    let flag = format!("--discover-writes={}", writes.display());
    let out = run_ok(&mut store.cmd(["run", flag.as_str(), "localhost/writer:1"]));
    assert_eq!(text(&out).0.trim(), "done");
    let list = std::fs::read_to_string(&writes).unwrap();
    for p in ["/var/log/app.log", "/home/app/.cache/x"] {
        assert!(
            list.lines().any(|l| l.trim_start_matches('#').trim() == p),
            "{p} listed:\n{list}"
        );
    }
    let dirs: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(dirs, ["/home/app/.cache", "/var/log"]);

    // The same run with those tmpfs mounts succeeds under a read-only rootfs.
    let out = run_ok(&mut store.cmd(["run", "--writes", writes.to_str().unwrap(), "localhost/writer:1"]));
    assert_eq!(text(&out).0.trim(), "done");

    // kiln harden with --writes: valid Kubernetes and Compose with each path writable.
    let k8s = tmp.path().join("deployment.yaml");
    let out = run_ok(&mut store.cmd(["harden", "--writes", writes.to_str().unwrap(), "localhost/writer:1"]));
    std::fs::write(&k8s, &out.stdout).unwrap();
    let yaml = text(&out).0;
    for want in [
        "mountPath: \"/var/log\"",
        "mountPath: \"/home/app/.cache\"",
        "mountPath: \"/tmp\"",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "runAsNonRoot: true",
        "runAsUser: 1000",
        "runAsGroup: 1000",
        "type: \"RuntimeDefault\"",
        "- \"ALL\"",
        "image: \"localhost/writer:1@sha256:",
    ] {
        assert!(yaml.contains(want), "{want:?} in:\n{yaml}");
    }
    run_ok(Command::new(venv_tool("kubernetes-validate")).arg("--strict").arg(&k8s));

    let out = run_ok(&mut store.cmd([
        "harden",
        "--format",
        "compose",
        "--writes",
        writes.to_str().unwrap(),
        "localhost/writer:1",
    ]));
    let normal = compose_config(&tmp.path().join("compose"), &out.stdout);
    for want in [
        "read_only: true",
        "- ALL",
        "no-new-privileges:true",
        "user: 1000:1000",
        "- /var/log",
        "- /home/app/.cache",
    ] {
        assert!(normal.contains(want), "{want:?} in docker-compose config:\n{normal}");
    }
}

#[test]
fn harden_warns_about_root_images_and_exposes_low_ports_with_net_bind_service() {
    let (tmp, store) = busybox_store();
    image(
        &store,
        tmp.path(),
        "localhost/low:1",
        "FROM localhost/busybox:test\nEXPOSE 80\nEXPOSE 5353/udp\nVOLUME /cache\n",
    );
    let out = run_ok(&mut store.cmd(["harden", "--format", "json", "localhost/low:1"]));
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("warning: image localhost/low:1 runs as root"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["runsAsRoot"], true);
    assert_eq!(v["capAdd"], serde_json::json!(["NET_BIND_SERVICE"]));
    assert_eq!(v["writablePaths"], serde_json::json!(["/cache", "/tmp"]));
    assert_eq!(
        (&v["ports"], &v["udpPorts"]),
        (&serde_json::json!([80]), &serde_json::json!([5353]))
    );
    let k8s = run_ok(&mut store.cmd(["harden", "localhost/low:1"]));
    let yaml = text(&k8s).0;
    assert!(!yaml.contains("runAsUser"), "never runAsUser 0: {yaml}");
    assert!(yaml.contains("- \"NET_BIND_SERVICE\""), "{yaml}");
    assert!(yaml.contains("protocol: \"UDP\""), "the UDP port is declared: {yaml}");
    assert!(
        yaml.contains("name: \"net.ipv4.ip_unprivileged_port_start\""),
        "the safe sysctl that lets a non-root program listen on port 80: {yaml}"
    );
    let f = tmp.path().join("low.yaml");
    std::fs::write(&f, &k8s.stdout).unwrap();
    run_ok(Command::new(venv_tool("kubernetes-validate")).arg("--strict").arg(&f));
    // Compose takes both ports, the UDP one as HOST:CTR/udp, as docker-compose reads it.
    let out = run_ok(&mut store.cmd(["harden", "--format", "compose", "localhost/low:1"]));
    let normal = compose_config(&tmp.path().join("low-compose"), &out.stdout);
    assert!(
        normal.contains("- protocol: udp\n      published: 5353\n      target: 5353")
            && normal.contains("- published: 80\n      target: 80"),
        "{normal}"
    );
}

#[test]
fn harden_output_is_signed_as_a_kiln_runtime_attestation() {
    let (tmp, store) = busybox_store();
    image(
        &store,
        tmp.path(),
        "web:1",
        "FROM localhost/busybox:test\nUSER 65532:65532\n",
    );
    let pred = tmp.path().join("runtime.json");
    let out = run_ok(&mut store.cmd(["harden", "--format", "json", "web:1"]));
    std::fs::write(&pred, &out.stdout).unwrap();
    let key = tmp.path().join("cosign");
    run_ok(
        store
            .cmd(["generate-key-pair", "--output-key-prefix"])
            .arg(&key)
            .env("COSIGN_PASSWORD", "pw"),
    );
    run_ok(
        store
            .cmd(["attest", "--type", "kiln-runtime", "--key"])
            .arg(key.with_extension("key"))
            .arg("--predicate")
            .arg(&pred)
            .arg("web:1")
            .env("COSIGN_PASSWORD", "pw"),
    );
    let out = run_ok(
        store
            .cmd(["verify-attestation", "--type", "kiln-runtime", "--key"])
            .arg(key.with_extension("pub"))
            .arg("web:1"),
    );
    let statements: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let st = &statements[0];
    assert_eq!(st["predicateType"], "https://kiln.dev/attestation/runtime/v1");
    assert_eq!(st["predicate"]["runAsUser"], 65532);
    assert_eq!(st["predicate"]["readOnlyRootFilesystem"], true);
}

#[test]
fn run_works_rootless_with_the_same_defaults() {
    require_tool("runc");
    let user = kiln_tests::ROOTLESS_USER;
    let (uid, gid) = kiln_tests::rootless_user();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root_store = KilnStore::new();
    build_busybox_base(&root_store, tmp.path());
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:test\nUSER 1000:1000\n\
         CMD [\"sh\", \"-c\", \"echo uid=$(id -u); echo ok > /tmp/x && cat /tmp/x; touch /etc/x || echo erofs; grep NoNewPrivs /proc/self/status; exit 5\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(&home).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(tmp.path().join("busybox-base"))
            .arg(&home),
    );
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(&home)
            .arg(&ctx),
    );
    run_ok(Command::new("chmod").arg("0755").arg(tmp.path()));
    let as_user = |args: &[&str]| {
        let mut c = Command::new(require_tool("runuser"));
        c.args(["-u", user, "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("KILN_HOME={}", home.join("store").display()))
            .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
            .arg(format!("USER={user}"))
            .arg(kiln_tests::kiln_bin())
            .args(args);
        c
    };
    let base = home.join("busybox-base").display().to_string();
    run_ok(&mut as_user(&["build", "-q", "-t", "localhost/busybox:test", &base]));
    run_ok(&mut as_user(&["build", "-q", "-t", "rl:1", ctx.to_str().unwrap()]));
    let out = as_user(&["run", "rl:1"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    for want in ["uid=1000", "ok", "erofs", "NoNewPrivs:\t1"] {
        assert!(stdout.lines().any(|l| l == want), "{want:?} in {stdout}{stderr}");
    }
}

/// The README's first Quick start command, run as written (with this build of kiln, a
/// private store and a free port), builds examples/hello, starts it and fetches its page.
#[test]
#[ignore]
fn network_quick_start_runs_as_the_readme_says() {
    require_tool("runc");
    require_tool("curl");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quick = &readme[readme.find("## Quick start").expect("a Quick start section")..];
    let block = &quick[quick.find("```sh\n").unwrap() + 6..];
    let first = block.lines().next().unwrap();
    let setup = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take_while(|l| !l.starts_with("```"))
        .count();
    assert_eq!(setup, 2, "exactly two set-up commands: {block}");
    let cmd = first
        .strip_prefix("scripts/setup && ")
        .expect("the first command starts with scripts/setup");
    let port = free_port();
    let cmd = cmd
        .replace("target/release/kiln", &kiln_tests::kiln_bin().display().to_string())
        .replace("-p 8080:8080", &format!("-p {port}:8080"))
        .replace("localhost:8080", &format!("localhost:{port}"));
    let store = KilnStore::new();
    let out = Command::new("sh")
        .args(["-ec", &cmd])
        .current_dir(&root)
        .env("KILN_HOME", store.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let _ = store.cmd(["stop", "hello"]).output();
    assert!(out.status.success(), "{cmd}\n{stdout}\n{stderr}");
    assert!(stdout.contains("hello from kiln"), "curl shows the page: {stdout}");
}

/// A static UDP echo server (Go, so nothing else is needed in the image): answers each
/// datagram on 127.0.0.1:PORT with `echo:` and the datagram.
fn udp_echo_binary(work: &Path) -> std::path::PathBuf {
    let go = require_tool("go");
    let src = work.join("udpecho");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("main.go"),
        "package main\n\nimport (\n\t\"net\"\n\t\"os\"\n)\n\nfunc main() {\n\
         \tc, err := net.ListenPacket(\"udp\", \"127.0.0.1:\"+os.Args[1])\n\tif err != nil {\n\t\tpanic(err)\n\t}\n\
         \tbuf := make([]byte, 65536)\n\tfor {\n\t\tn, a, err := c.ReadFrom(buf)\n\t\tif err != nil {\n\t\t\tpanic(err)\n\t\t}\n\
         \t\tc.WriteTo(append([]byte(\"echo:\"), buf[:n]...), a)\n\t}\n}\n",
    )
    .unwrap();
    let out = work.join("ctx-udp/udpecho");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    run_ok(
        Command::new(go)
            .args(["build", "-trimpath", "-o"])
            .arg(&out)
            .arg("main.go")
            .current_dir(&src)
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", work.join("go-cache"))
            .env("GOPATH", work.join("gopath"))
            .env("GOPROXY", "off")
            .env("GO111MODULE", "off"),
    );
    out
}

/// Sends `msg` from `sock` to the host port until the echo comes back (the server may still
/// be starting), for at most 20 s.
fn udp_exchange(sock: &std::net::UdpSocket, port: u16, msg: &str) -> String {
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..40 {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    panic!("no answer to {msg:?} on UDP port {port}");
}

#[test]
fn run_detached_publishes_a_udp_port() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let bin = udp_echo_binary(tmp.path());
    let ctx = bin.parent().unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY udpecho /udpecho\nUSER 65532:65532\nENTRYPOINT [\"/udpecho\"]\nCMD [\"9999\"]\n",
    )
    .unwrap();
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/udpecho:1"])
            .arg(ctx),
    );
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    run_ok(&mut store.cmd([
        "run",
        "-d",
        "-p",
        &format!("{port}:9999/udp"),
        "--name",
        "udpecho",
        "localhost/udpecho:1",
    ]));
    // Two clients, two flows inside: each gets its own answers.
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(udp_exchange(&a, port, "ping"), "echo:ping");
    assert_eq!(udp_exchange(&b, port, "pong"), "echo:pong");
    assert_eq!(udp_exchange(&a, port, "again"), "echo:again");
    let ps = text(&run_ok(&mut store.cmd(["ps"]))).0;
    assert!(ps.contains(&format!("{port}->9999/udp")), "{ps}");
    run_ok(&mut store.cmd(["stop", "-t", "1", "udpecho"]));
    // The port is free again once the helper is gone.
    let start = std::time::Instant::now();
    while std::net::UdpSocket::bind(("0.0.0.0", port)).is_err() {
        assert!(start.elapsed().as_secs() < 10, "UDP port {port} still held after stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn run_reads_env_files_and_takes_a_workdir() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    image(
        &store,
        tmp.path(),
        "localhost/envapp:1",
        "FROM localhost/busybox:test\nENV A=image\nWORKDIR /\nUSER 1000\n",
    );
    // As docker reads it: comments and blank lines skipped, a bare KEY takes kiln's own
    // value, values kept as written, and -e wins over the file.
    let env_file = tmp.path().join("app.env");
    std::fs::write(&env_file, "# settings\n\nA=file\nB\n  C=from file\nD=\nE\n").unwrap();
    let script = "echo \"A=$A\"; echo \"B=$B\"; echo \"C=$C\"; echo \"D=[$D]\"; echo \"E=${E-unset}\"; pwd";
    let out = run_ok(
        store
            .cmd(["run", "--env-file"])
            .arg(&env_file)
            .args(["-e", "C=flag", "-w", "/tmp", "localhost/envapp:1", "sh", "-c", script])
            .env("B", "from-kiln")
            .env_remove("E"),
    );
    assert_eq!(
        text(&out).0.lines().collect::<Vec<_>>(),
        ["A=file", "B=from-kiln", "C=flag", "D=[]", "E=unset", "/tmp"],
        "{:?}",
        text(&out)
    );
    // A line that is not a variable is one located error; a relative -w is refused.
    std::fs::write(&env_file, "OK=1\nBAD KEY=1\n").unwrap();
    let out = store
        .cmd(["run", "--env-file"])
        .arg(&env_file)
        .args(["localhost/envapp:1", "true"])
        .output()
        .unwrap();
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:2:", env_file.display())) && err.contains("hint:"),
        "{err}"
    );
    let out = store
        .cmd(["run", "-w", "app", "localhost/envapp:1", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("must be absolute"), "{:?}", text(&out));
}
