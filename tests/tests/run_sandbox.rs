//! The RUN sandbox (issue 12.10): each step in its own network namespace with outbound
//! access through the build's user-mode network (slirp4netns), the host's loopback out of
//! reach; the host's network only with `--allow network.host`; no_new_privileges, Docker's
//! default seccomp profile and runc's masked /proc paths.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_tests::{
    KilnStore, busybox_store, describe_failure, require_tool, run_ok, step_lines, write_context as context,
};

fn build(store: &KilnStore, ctx: &Path, flags: &[&str]) -> Output {
    let mut c = store.cmd(["build", "--progress", "plain", "--no-cache"]);
    c.args(flags).arg(ctx);
    run_ok(&mut c)
}

/// An HTTP server on `addr` that answers every request with `body` and counts connections.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    fn start(addr: &str, body: &'static str) -> Listener {
        let l = TcpListener::bind(addr).unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Listener { port, connections }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The host's address on its default route (no packet is sent: connecting a UDP socket only
/// picks the source address).
fn host_address() -> String {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9")
        .or_else(|_| s.connect("10.255.255.255:9"))
        .expect("this test needs a non-loopback IPv4 address on the host (a default route)");
    let ip = s.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "no non-loopback address: {ip}"
    );
    ip.to_string()
}

/// A RUN line that prints `reached URL: BODY` or `blocked URL` for each URL (busybox 1.35's
/// `wget -T` crashes, so `timeout` bounds it).
fn probe(urls: &[String]) -> String {
    urls.iter()
        .map(|u| format!("(b=$(timeout 10 wget -q -O - {u}) && echo \"reached {u}: $b\" || echo \"blocked {u}\")"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn run_default_network_reaches_out_but_not_the_hosts_loopback() {
    require_tool("runc");
    require_tool("slirp4netns");
    let (tmp, store) = busybox_store();
    let loopback = Listener::start("127.0.0.1:0", "kiln-loopback-only");
    let everywhere = Listener::start("0.0.0.0:0", "kiln-every-address");
    let host = host_address();
    let (lp, ep) = (loopback.port, everywhere.port);
    let outside = format!("http://{host}:{ep}/");
    let unreachable = [
        format!("http://127.0.0.1:{lp}/"),
        format!("http://10.0.2.2:{lp}/"),
        format!("http://127.0.0.1:{ep}/"),
        format!("http://10.0.2.2:{ep}/"),
    ];
    let mut urls = vec![outside.clone()];
    urls.extend(unreachable.iter().cloned());
    let ctx = tmp.path().join("default");
    context(
        &ctx,
        &format!(
            "FROM localhost/busybox:test\nRUN ls /sys/class/net | tr '\\n' ' '; echo; {}\n",
            probe(&urls)
        ),
    );
    let lines = step_lines(&build(&store, &ctx, &[]));
    // Outbound connections work: the host's own address is reached like any other host.
    assert!(
        lines.contains(&format!("reached {outside}: kiln-every-address")),
        "the step could not reach {outside} through the user-mode network: {lines:?}"
    );
    for u in &unreachable {
        assert!(
            lines.contains(&format!("blocked {u}")),
            "a default RUN step reached the host's loopback at {u}: {lines:?}"
        );
    }
    assert_eq!(loopback.count(), 0, "the loopback-only listener saw a connection");
    assert!(
        lines.iter().any(|l| l == "lo tap0"),
        "the step's own namespace has loopback and the user-mode interface only: {lines:?}"
    );

    // The host's network, granted: the same listener is reached, from the flag and from RUN.
    let url = format!("http://127.0.0.1:{lp}/");
    for (name, run_flag, flags) in [
        ("host", "", &["--allow", "network.host", "--network=host"][..]),
        ("run-host", "--network=host ", &["--allow", "network.host"][..]),
    ] {
        let ctx = tmp.path().join(name);
        let probe = probe(std::slice::from_ref(&url));
        context(&ctx, &format!("FROM localhost/busybox:test\nRUN {run_flag}{probe}\n"));
        let lines = step_lines(&build(&store, &ctx, flags));
        assert!(
            lines.contains(&format!("reached {url}: kiln-loopback-only")),
            "RUN {run_flag}with {flags:?} did not reach the host's loopback: {lines:?}"
        );
    }
    assert_eq!(loopback.count(), 2, "each host-network step connects once");
}

#[test]
fn run_host_network_needs_the_network_host_entitlement() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    context(
        &ctx,
        "FROM localhost/busybox:test\nRUN echo ok\nRUN --network=host echo host\n",
    );
    let refused = |flags: &[&str], expect: &str| {
        let mut c = store.cmd(["build", "--progress", "plain"]);
        c.args(flags).arg(&ctx);
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}", describe_failure(&c, &out));
        assert!(stderr.contains(expect), "{expect:?} not in: {stderr}");
        assert!(
            !step_lines(&out).iter().any(|l| l == "ok"),
            "nothing may run before the refusal: {stderr}"
        );
    };
    refused(
        &[],
        "Dockerfile:3: RUN --network=host needs the network.host entitlement (hint: pass --allow network.host",
    );
    refused(
        &["--network=host"],
        "--network=host needs the network.host entitlement (hint: add --allow network.host",
    );
    refused(
        &["--allow", "security.insecure"],
        "--allow security.insecure is not supported",
    );
    refused(&["--allow", "network.hots"], "is not an entitlement");
    // A stage the build does not need is not checked (as BuildKit solves only what it builds).
    let unused = tmp.path().join("unused");
    context(
        &unused,
        "FROM localhost/busybox:test AS unused\nRUN --network=host true\nFROM localhost/busybox:test\nRUN echo ok\n",
    );
    build(&store, &unused, &[]);
}

#[test]
fn run_steps_have_no_new_privileges_seccomp_and_masked_proc_paths() {
    require_tool("runc");
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    context(
        &ctx,
        "FROM localhost/busybox:test
RUN grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr '\\t' ' '
RUN for p in /proc/interrupts /proc/keys /proc/timer_list; do echo \"$p: $(cat $p | wc -c) bytes\"; done
RUN (echo kiln > /proc/sys/kernel/hostname) 2>&1 | grep -q 'Read-only file system' && echo proc-sys-read-only
RUN unshare -U true 2>&1 | grep -o 'Operation not permitted' | head -1 | sed 's/^/unshare: /'
",
    );
    let lines = step_lines(&build(&store, &ctx, &["--network=none"]));
    for want in [
        "NoNewPrivs: 1",
        "Seccomp: 2",
        "/proc/interrupts: 0 bytes",
        "/proc/keys: 0 bytes",
        "/proc/timer_list: 0 bytes",
        // The step's own UTS namespace would take the name; /proc/sys is read-only anyway.
        "proc-sys-read-only",
        // Creating a user namespace needs no capability; Docker's profile refuses it.
        "unshare: Operation not permitted",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want:?} not in the steps' output: {lines:?}"
        );
    }
}

/// `kiln run --network private` (the default) has what a default RUN step has: outbound
/// access through slirp4netns, the host's loopback out of reach; a detached container keeps
/// it after the kiln that started it has exited; `--network none` has no way out.
#[test]
fn kiln_run_private_network_reaches_out_but_not_the_hosts_loopback() {
    require_tool("runc");
    require_tool("slirp4netns");
    let (_tmp, store) = busybox_store();
    let loopback = Listener::start("127.0.0.1:0", "kiln-loopback-only");
    let everywhere = Listener::start("0.0.0.0:0", "kiln-every-address");
    let outside = format!("http://{}:{}/", host_address(), everywhere.port);
    let unreachable = [
        format!("http://127.0.0.1:{}/", loopback.port),
        format!("http://10.0.2.2:{}/", loopback.port),
    ];
    let mut urls = vec![outside.clone()];
    urls.extend(unreachable.iter().cloned());
    let script = probe(&urls);
    let reached = format!("reached {outside}: kiln-every-address");
    let check = |text: &str, how: &str| {
        assert!(
            text.lines().any(|l| l == reached),
            "{how}: {outside} not reached:\n{text}"
        );
        for u in &unreachable {
            assert!(
                text.lines().any(|l| l == format!("blocked {u}")),
                "{how}: the host's loopback reached at {u}:\n{text}"
            );
        }
    };
    let run = |args: &[&str]| {
        let mut c = store.cmd(["run", "--user", "1000"]);
        c.args(args);
        String::from_utf8_lossy(&run_ok(&mut c).stdout).into_owned()
    };
    check(&run(&["localhost/busybox:test", "sh", "-c", &script]), "foreground");

    // Detached: the probe starts after `kiln run -d` has returned and its kiln is gone.
    run(&[
        "-d",
        "--name",
        "netprobe",
        "localhost/busybox:test",
        "sh",
        "-c",
        &format!("sleep 1; {script}; echo probe-done; sleep 60"),
    ]);
    let start = std::time::Instant::now();
    let logs = loop {
        let logs = String::from_utf8_lossy(&run_ok(&mut store.cmd(["logs", "netprobe"])).stdout).into_owned();
        if logs.contains("probe-done") || start.elapsed().as_secs() > 60 {
            break logs;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    run_ok(&mut store.cmd(["stop", "-t", "1", "netprobe"]));
    check(&logs, "detached");

    let none = run(&[
        "--network",
        "none",
        "localhost/busybox:test",
        "sh",
        "-c",
        &probe(std::slice::from_ref(&outside)),
    ]);
    assert!(none.lines().any(|l| l == format!("blocked {outside}")), "{none}");
    assert_eq!(loopback.count(), 0, "the loopback-only listener saw a connection");
}
