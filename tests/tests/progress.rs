//! What a person sees while kiln works (issue 17.1-17.4): kiln runs under a pseudo-terminal
//! (util-linux `script`), its output is read while it works and drawn on a small terminal
//! model (cursor moves, line clears, wrapping at the width), and the tests assert on the
//! screen mid-way and at the end. Plain progress is read line by line as it is written.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_oci::Platform;
use kiln_tests::proxy::Proxy;
use kiln_tests::registry::{TestRegistry, write_image};
use kiln_tests::{KilnStore, busybox_store, kiln_bin, require_tool, run_ok, write_context};

/// The terminal's width for every test (what `stty cols` sets inside `script`).
const COLS: usize = 100;

/// The screen a terminal of `width` columns shows after `bytes`, scrollback included:
/// printable characters with wrapping, CR, LF, cursor up/down/left/right/column, and line
/// and screen clears; colours and other sequences change nothing visible here.
fn render(bytes: &[u8], width: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut rows: Vec<Vec<char>> = vec![vec![]];
    let (mut r, mut c) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut params = String::new();
                let mut fin = ' ';
                for x in chars.by_ref() {
                    if x.is_ascii_alphabetic() || x == '~' {
                        fin = x;
                        break;
                    }
                    params.push(x);
                }
                let arg = params.trim_start_matches('?').parse::<usize>().ok();
                let n = arg.unwrap_or(1).max(1);
                match fin {
                    'A' => r = r.saturating_sub(n),
                    'B' => r += n,
                    'C' => c = (c + n).min(width - 1),
                    'D' => c = c.min(width - 1).saturating_sub(n),
                    'G' => c = n - 1,
                    'K' | 'J' => {
                        rows.resize(rows.len().max(r + 1), vec![]);
                        match arg.unwrap_or(0) {
                            0 => rows[r].truncate(c),
                            1 => rows[r].iter_mut().take(c + 1).for_each(|x| *x = ' '),
                            _ => rows[r].clear(),
                        }
                        if fin == 'J' && arg.unwrap_or(0) == 0 {
                            rows.truncate(r + 1);
                        }
                    }
                    _ => {}
                }
            }
            '\x1b' => {
                chars.next();
            }
            '\r' => c = 0,
            '\n' => r += 1,
            ch if ch.is_control() => {}
            ch => {
                if c >= width {
                    r += 1;
                    c = 0;
                }
                rows.resize(rows.len().max(r + 1), vec![]);
                let row = &mut rows[r];
                if row.len() <= c {
                    row.resize(c + 1, ' ');
                }
                row[c] = ch;
                c += 1;
            }
        }
        rows.resize(rows.len().max(r + 1), vec![]);
    }
    rows.into_iter()
        .map(|row| row.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

/// kiln running under a pseudo-terminal, its output collected as it comes.
struct Live {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    /// `kiln ARGS` on a terminal of [`COLS`] columns, with `KILN_HOME` at `store`.
    fn start(store: &KilnStore, args: &[&str]) -> Live {
        let mut line = format!("stty cols {COLS} rows 60; exec '{}'", kiln_bin().display());
        for a in args {
            assert!(!a.contains('\''), "{a}");
            line.push_str(&format!(" '{a}'"));
        }
        let mut child = Command::new(require_tool("script"))
            .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
            .env("KILN_HOME", store.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Live {
            child,
            out,
            reader: Some(reader),
        }
    }

    fn screen(&self) -> Vec<String> {
        render(&self.out.lock().unwrap(), COLS)
    }

    /// The screen at the first moment `want` holds, while kiln still runs.
    fn wait_for(&mut self, what: &str, want: impl Fn(&[String]) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if want(&screen) {
                assert!(
                    self.child.try_wait().unwrap().is_none(),
                    "kiln had already finished when {what} was seen:\n{}",
                    screen.join("\n")
                );
                return screen;
            }
            if self.child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(300) {
                self.reader.take().map(|r| r.join());
                panic!(
                    "{what} never appeared while kiln ran; the screen:\n{}",
                    self.screen().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for kiln to end: its status and the final screen.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        self.reader.take().map(|r| r.join());
        (status, self.screen())
    }
}

/// The running line of a step: `… #N [stage i/n] TEXT … 1.2s`, and its seconds.
fn running_secs(screen: &[String], header: &str) -> Option<f64> {
    let line = screen.iter().find(|l| l.contains(header) && !l.starts_with('#'))?;
    line.rsplit(' ').next()?.strip_suffix('s')?.parse().ok()
}

/// True if a lasting step line `#N [stage i/n] TEXT  1.2s` (or `CACHED`) is on `screen`.
fn finished(screen: &[String], header_and_text: &str, cached: bool) -> bool {
    screen.iter().any(|l| {
        let Some(rest) = l.strip_prefix(header_and_text) else {
            return false;
        };
        let status = rest.rsplit("  ").next().unwrap_or_default();
        if cached {
            status == "CACHED"
        } else {
            status.strip_suffix('s').is_some_and(|s| s.parse::<f64>().is_ok())
        }
    })
}

#[test]
fn a_build_on_a_terminal_shows_running_steps_live_and_keeps_finished_ones() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(
        &ctx,
        "FROM localhost/busybox:test\nCOPY data /data\nRUN for i in 1 2 3 4 5 6 7 8 9; do echo tick-$i; done; sleep 4; echo tock\nRUN echo after\n",
    );
    std::fs::write(ctx.join("data"), vec![7u8; 4 << 20]).unwrap();
    let run = "#2 [stage-0 2/3] RUN for i in";
    let mut live = Live::start(&store, &["build", "-t", "localhost/live:1", ctx.to_str().unwrap()]);

    // Mid-way: the RUN step sleeps after its ticks; its line is live with the last six
    // output lines under it, and the finished COPY line stays above.
    let mid = live.wait_for("the RUN step's last output line", |s| {
        s.iter().any(|l| l.ends_with("│ tick-9")) && running_secs(s, run).is_some()
    });
    let text = mid.join("\n");
    assert!(finished(&mid, "#1 [stage-0 1/3] COPY data /data", false), "{text}");
    let tail: Vec<&String> = mid.iter().filter(|l| l.contains("│ tick-")).collect();
    assert_eq!(tail.len(), 6, "the last six output lines, scrolling:\n{text}");
    assert!(tail[0].ends_with("tick-4"), "{text}");
    assert!(!mid.iter().any(|l| l.ends_with("│ tock")), "{text}");
    assert!(!text.contains("#3 [stage-0 3/3]"), "{text}");
    // Nothing is printed while it sleeps, yet its elapsed time moves on.
    let first = running_secs(&mid, run).unwrap();
    let later = live.wait_for("the running step's time moving", |s| {
        running_secs(s, run).is_some_and(|t| t >= first + 1.0)
    });
    assert!(!later.iter().any(|l| l.ends_with("│ tock")), "{}", later.join("\n"));

    let (status, end) = live.finish();
    let text = end.join("\n");
    assert!(status.success(), "{text}");
    assert!(finished(&end, "#1 [stage-0 1/3] COPY data /data", false), "{text}");
    assert!(finished(&end, &format!("{run} 1 2 3"), false), "{text}");
    assert!(finished(&end, "#3 [stage-0 3/3] RUN echo after", false), "{text}");
    assert!(end.iter().any(|l| l.starts_with("built sha256:")), "{text}");
    assert!(
        !text.contains("│ tick-"),
        "a finished step's output tail is cleared:\n{text}"
    );

    // The same build again: every step is a lasting CACHED line.
    let (status, again) = Live::start(&store, &["build", "-t", "localhost/live:1", ctx.to_str().unwrap()]).finish();
    let text = again.join("\n");
    assert!(status.success(), "{text}");
    assert!(finished(&again, "#1 [stage-0 1/3] COPY data /data", true), "{text}");
    assert!(finished(&again, "#3 [stage-0 3/3] RUN echo after", true), "{text}");
}

#[test]
fn plain_progress_prints_a_step_header_when_the_step_starts() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(
        &ctx,
        "FROM localhost/busybox:test\nRUN echo begin; sleep 3; echo end\nRUN echo second\n",
    );
    let mut child = store
        .cmd(["build", "--progress", "plain", "-t", "localhost/plain:1"])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push(l.clone());
        if l == "#1 [stage-0 1/2] RUN echo begin; sleep 3; echo end" {
            break;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the header came only after kiln ended: {seen:?}"
    );
    seen.extend(lines.map(Result::unwrap));
    assert!(child.wait().unwrap().success(), "{seen:?}");
    let at = |want: &dyn Fn(&str) -> bool| seen.iter().position(|l| want(l)).unwrap_or_else(|| panic!("{seen:?}"));
    let header = at(&|l| l.starts_with("#1 [stage-0 1/2] RUN echo begin"));
    let begin = at(&|l| l.starts_with("#1 ") && kiln_tests::step_output(l).as_deref() == Some("begin"));
    let end = at(&|l| l.starts_with("#1 ") && kiln_tests::step_output(l).as_deref() == Some("end"));
    let done = at(&|l| l.starts_with("#1 DONE ") && l.ends_with('s'));
    let next = at(&|l| l == "#2 [stage-0 2/2] RUN echo second");
    assert!(header < begin && begin < end && end < done && done < next, "{seen:?}");
    // BuildKit's form: output lines carry their time into the step; a blank line between steps.
    assert_eq!(seen[done + 1], "", "{seen:?}");
}

#[test]
fn plain_progress_ends_a_failed_step_with_an_error_line() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(
        &ctx,
        "FROM localhost/busybox:test\nRUN echo before; exit 3\nRUN echo never\n",
    );
    let out = store.cmd(["build", "--progress", "plain"]).arg(&ctx).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = |want: &dyn Fn(&str) -> bool| lines.iter().position(|l| want(l)).unwrap_or_else(|| panic!("{err}"));
    let header = at(&|l| l == "#1 [stage-0 1/2] RUN echo before; exit 3");
    let before = at(&|l| l.starts_with("#1 ") && kiln_tests::step_output(l).as_deref() == Some("before"));
    // BuildKit's form: `#N ERROR: ` and the reason, before kiln's own `error:` line.
    let error = at(&|l| l.starts_with("#1 ERROR: ") && l.contains("exit code 3"));
    let final_error = at(&|l| l.starts_with("error: "));
    assert!(header < before && before < error && error < final_error, "{err}");
    assert!(!lines.iter().any(|l| l.starts_with("#1 DONE")), "{err}");
    assert!(!err.contains("#2 [stage-0 2/2]"), "{err}");
}

#[test]
fn plain_progress_of_parallel_stages_names_the_step_of_every_line() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(
        &ctx,
        "FROM localhost/busybox:test AS a\nRUN for i in 1 2 3 4; do echo a$i; sleep 0.3; done | tee /a\n\
         FROM localhost/busybox:test AS b\nRUN for i in 1 2 3 4; do echo b$i; sleep 0.3; done | tee /b\n\
         FROM localhost/busybox:test\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN for i in 1 2 3 4; do echo c$i; done\n",
    );
    let out = run_ok(
        store
            .cmd(["build", "--progress", "plain", "-t", "localhost/parallel:1"])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // Each output line `#N 0.123 text` follows the header of step N (printed again when
    // the output switches between steps), and its text is that step's.
    let mut current: Option<(String, String)> = None;
    let mut lines = 0;
    for l in err.lines() {
        let n = l
            .strip_prefix('#')
            .and_then(|r| r.split(' ').next())
            .unwrap_or_default();
        if l.starts_with('#') && l.contains(" [") && !l.contains(" DONE ") {
            current = Some((n.to_string(), l.to_string()));
        } else if let Some(text) = kiln_tests::step_output(l) {
            let (m, header) = current
                .as_ref()
                .unwrap_or_else(|| panic!("{l:?} before any header:\n{err}"));
            assert_eq!(n, m, "{l:?} under the header of another step:\n{err}");
            let stage = &text[..1];
            assert!(
                header.contains(&format!("echo {stage}$i")),
                "{l:?} under {header:?}:\n{err}"
            );
            lines += 1;
        }
    }
    assert_eq!(lines, 12, "the output of the three stages:\n{err}");
}

#[test]
fn progress_tty_draws_into_a_pipe_too() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, "FROM localhost/busybox:test\nRUN echo piped\n");
    let out = run_ok(
        store
            .cmd(["build", "--progress", "tty", "-t", "localhost/pipe:1"])
            .arg(&ctx),
    );
    let raw = String::from_utf8_lossy(&out.stderr);
    assert!(raw.contains("\x1b[2K"), "no bars drawn into the pipe: {raw:?}");
    let screen = render(&out.stderr, 80);
    assert!(
        finished(&screen, "#1 [stage-0 1/1] RUN echo piped", false),
        "{}",
        screen.join("\n")
    );
}

/// `1.50 MiB` as bytes.
fn parse_bytes(s: &str) -> Option<f64> {
    let (n, unit) = s.trim().split_once(' ')?;
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n.parse::<f64>().ok()? * scale)
}

/// The total line's `DONE/SIZE`, as bytes.
fn total_bytes(screen: &[String]) -> Option<(f64, f64)> {
    let line = screen.iter().find(|l| l.starts_with("total ["))?;
    let (_, rest) = line.split_once("] ")?;
    let (done, rest) = rest.split_once('/')?;
    let size: String = rest.split(' ').take(2).collect::<Vec<_>>().join(" ");
    Some((parse_bytes(done)?, parse_bytes(&size)?))
}

#[test]
fn a_pull_through_a_slow_link_shows_its_bytes_growing() {
    let src = KilnStore::new();
    let platform = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let size = 6 << 20;
    write_image(src.path(), Some("slow:1"), &[size, 1 << 20], &platform, 5);
    let reg = TestRegistry::start();
    run_ok(&mut src.cmd(["push", "-q", "slow:1", &format!("{}/r/slow:1", reg.addr)]));
    let proxy = Proxy::throttled(&reg.addr, 2 << 20);
    let image = format!("{}/r/slow:1", proxy.addr);

    let store = KilnStore::new();
    let mut live = Live::start(&store, &["pull", "--platform", "linux/amd64", &image]);
    let first = live.wait_for("a total with some bytes done", |s| {
        total_bytes(s).is_some_and(|(done, all)| done > 0.0 && done < all * 0.8)
    });
    let (done1, all) = total_bytes(&first).unwrap();
    assert!(all >= (size + (1 << 20)) as f64, "{}", first.join("\n"));
    assert!(
        first.iter().any(|l| l.starts_with("  pull ") && l.contains("B/")),
        "a bar per blob in flight:\n{}",
        first.join("\n")
    );
    live.wait_for("the total growing", |s| {
        total_bytes(s).is_some_and(|(done, _)| done > done1)
    });
    let (status, end) = live.finish();
    let text = end.join("\n");
    assert!(status.success(), "{text}");
    assert!(
        end.iter().filter(|l| l.starts_with("pulled sha256:")).count() >= 2,
        "one line per finished blob (two layers):\n{text}"
    );
    assert!(end.iter().any(|l| l.starts_with(&format!("pulled {image}"))), "{text}");
    assert!(total_bytes(&end).is_none(), "the bars are cleared at the end:\n{text}");
}

/// The bytes shown on the running line of the step whose header contains `header`.
fn running_bytes(screen: &[String], header: &str) -> Option<f64> {
    let line = screen.iter().find(|l| l.contains(header) && !l.starts_with('#'))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find_map(|w| parse_bytes(&format!("{} {}", w[0], w[1])))
}

#[test]
fn a_large_copy_shows_its_bytes_growing_while_it_writes() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, "FROM localhost/busybox:test\nCOPY big /big\n");
    // One 384 MiB file of incompressible bytes: compressing it takes seconds, all inside one
    // file's write, which used to be reported only when the file ended.
    let size = 384usize << 20;
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(ctx.join("big"), &data).unwrap();
    drop(data);
    let copy = "#1 [stage-0 1/1] COPY big /big";
    let mut live = Live::start(&store, &["build", "-t", "localhost/big:1", ctx.to_str().unwrap()]);
    let first = live.wait_for("some of the file's bytes on the COPY line", |s| {
        running_bytes(s, copy).is_some_and(|b| b > 0.0 && b < size as f64 * 0.7)
    });
    let b1 = running_bytes(&first, copy).unwrap();
    live.wait_for("the COPY line's bytes growing", |s| {
        running_bytes(s, copy).is_some_and(|b| b > b1)
    });
    let (status, end) = live.finish();
    let text = end.join("\n");
    assert!(status.success(), "{text}");
    assert!(finished(&end, copy, false), "{text}");
}

#[test]
fn plain_pull_and_push_say_each_blob_once() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, "FROM localhost/busybox:test\nRUN echo hi > /hi\n");
    run_ok(store.cmd(["build", "-q", "-t", "localhost/once:1"]).arg(&ctx));
    let reg = TestRegistry::start();
    let dest = format!("{}/r/once:1", reg.addr);
    let pushed = run_ok(&mut store.cmd(["push", "--progress", "plain", "localhost/once:1", &dest]));
    let err = String::from_utf8_lossy(&pushed.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("pushed sha256:")).collect();
    assert!(lines.len() >= 3, "{err}");
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "a blob said twice:\n{err}");

    let other = KilnStore::new();
    let pulled = run_ok(&mut other.cmd(["pull", "--progress", "plain", &dest]));
    let err = String::from_utf8_lossy(&pulled.stderr);
    assert!(
        err.lines().filter(|l| l.starts_with("pulled sha256:")).count() >= 2,
        "{err}"
    );
    assert!(!err.contains('\x1b'), "plain progress draws nothing: {err:?}");
    let quiet = run_ok(&mut KilnStore::new().cmd(["pull", "--progress", "quiet", &dest]));
    assert!(quiet.stderr.is_empty(), "{}", String::from_utf8_lossy(&quiet.stderr));
}

#[test]
fn the_terminal_model_wraps_and_clears_as_a_terminal_does() {
    // The model the tests above read screens with: a full-width line wraps only when the
    // next character comes, a cleared line is empty, cursor-up rewrites in place.
    let screen = render(b"abcd\r\x1b[2Kxy\r\nline\x1b[1A\rAB\x1b[1B\rZ", 4);
    assert_eq!(screen, vec!["AB", "Zine"]);
    let wrapped = render(b"abcdef", 4);
    assert_eq!(wrapped, vec!["abcd", "ef"]);
}
