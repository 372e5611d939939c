//! kiln scan's version comparators against the real implementations, on generated pairs:
//! `dpkg --compare-versions`, Python's `packaging.version` (the repository's .venv), and npm's
//! `semver` package (tests/node). Each checks at least 10,000 pairs both sides accept, and
//! PEP 440 also checks that kiln rejects exactly the versions packaging rejects.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_scan::version::{Pep440, Scheme};
use kiln_tests::require_tool;

/// A deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Feeds `input` to `cmd` and returns its stdout lines.
fn pipe(cmd: &mut Command, input: String) -> Vec<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn sign(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "-1",
        Ordering::Equal => "0",
        Ordering::Greater => "1",
    }
}

fn pairs(r: &mut Rng, n: usize, mut gen_one: impl FnMut(&mut Rng) -> String) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let a = gen_one(r);
        let b = if r.below(8) == 0 { a.clone() } else { gen_one(r) };
        out.push((a, b));
    }
    out
}

#[test]
fn dpkg_order_matches_dpkg_compare_versions() {
    require_tool("dpkg");
    let mut r = Rng(0x5eed_d9c9_0000_0001);
    let pieces = [
        "0", "1", "2", "9", "10", "01", "a", "b", "z", "A", "~", "~~", ".", "+", "rc", "~rc1", "+deb12u1", "2023", "g",
        "+b1", "~bpo12",
    ];
    let ps = pairs(&mut r, 10_600, |r| {
        let mut s = String::new();
        if r.below(5) == 0 {
            s.push_str(r.pick(&["0:", "1:", "2:"]));
        }
        s.push_str(r.pick(&["0", "1", "2", "10", "1.0", "1.2.3"]));
        for _ in 0..r.below(4) {
            s.push_str(r.pick(&pieces));
        }
        if r.below(2) == 0 {
            s.push('-');
            s.push_str(r.pick(&["1", "2", "0", "1~bpo1", "1+b1", "10", "1ubuntu1", "3.1", "1+deb12u2"]));
        }
        s
    });
    let rel = |o: Ordering| match o {
        Ordering::Less => "lt",
        Ordering::Equal => "eq",
        Ordering::Greater => "gt",
    };
    let mut script = String::new();
    for (a, b) in &ps {
        script.push_str(&format!(
            "dpkg --compare-versions '{a}' {} '{b}' 2>/dev/null; echo $?\n",
            rel(Scheme::Dpkg.compare(a, b))
        ));
    }
    let lines = pipe(&mut Command::new("sh"), script);
    assert_eq!(lines.len(), ps.len());
    let mut agreed = 0;
    for ((a, b), l) in ps.iter().zip(&lines) {
        match l.as_str() {
            "0" => agreed += 1,
            "2" => {} // dpkg rejects the syntax: no verdict
            _ => panic!("dpkg disagrees: kiln says {a} {} {b}", rel(Scheme::Dpkg.compare(a, b))),
        }
    }
    assert!(agreed >= 10_000, "only {agreed} pairs were valid for dpkg");
}

fn pep440_version(r: &mut Rng) -> String {
    let mut s = String::new();
    if r.below(10) == 0 {
        s.push('v');
    }
    if r.below(12) == 0 {
        s.push_str(r.pick(&["1!", "2!", "0!"]));
    }
    let parts = 1 + r.below(4);
    for i in 0..parts {
        if i > 0 {
            s.push('.');
        }
        s.push_str(r.pick(&["0", "1", "2", "3", "10", "00", "01", "2024"]));
    }
    if r.below(3) == 0 {
        s.push_str(r.pick(&["", ".", "-", "_"]));
        s.push_str(r.pick(&["a", "b", "rc", "c", "alpha", "beta", "pre", "preview", "A", "RC"]));
        s.push_str(r.pick(&["", "0", "1", "2", "10", ".1", "-3"]));
    }
    if r.below(4) == 0 {
        s.push_str(r.pick(&[".post", "post", "-post", ".r", "rev", "-", ".post_"]));
        s.push_str(r.pick(&["", "0", "1", "2", "11"]));
    }
    if r.below(4) == 0 {
        s.push_str(r.pick(&[".dev", "dev", "-dev", "_dev"]));
        s.push_str(r.pick(&["", "0", "1", "5"]));
    }
    if r.below(6) == 0 {
        s.push('+');
        s.push_str(r.pick(&["local", "1", "abc.5", "ubuntu-1", "7.x", "a_b", "0", "deb12", ""]));
    }
    if r.below(40) == 0 {
        s.push_str(r.pick(&["x", "..", "+", "!"]));
    }
    s
}

#[test]
fn pep440_order_matches_python_packaging() {
    let python = repo().join(".venv/bin/python3");
    assert!(
        python.is_file(),
        "{} is missing (hint: run scripts/setup, which creates the venv with `packaging`)",
        python.display()
    );
    let mut r = Rng(0x5eed_0440_0000_0002);
    let ps = pairs(&mut r, 12_000, pep440_version);
    let script = r#"
import sys
from packaging.version import Version, InvalidVersion
def parse(s):
    try:
        return Version(s)
    except InvalidVersion:
        return None
for line in sys.stdin:
    a, b = line.rstrip("\n").split("\t")
    x, y = parse(a), parse(b)
    if x is None or y is None:
        print("invalid %d %d" % (x is None, y is None))
    else:
        print((x > y) - (x < y))
"#;
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let lines = pipe(Command::new(&python).arg("-c").arg(script), input);
    assert_eq!(lines.len(), ps.len(), "packaging answered every pair");
    let mut agreed = 0;
    for ((a, b), l) in ps.iter().zip(&lines) {
        if let Some(rest) = l.strip_prefix("invalid ") {
            let (ia, ib) = rest.split_once(' ').unwrap();
            assert_eq!(
                Pep440::parse(a).is_none(),
                ia == "1",
                "validity of {a:?} differs from packaging"
            );
            assert_eq!(
                Pep440::parse(b).is_none(),
                ib == "1",
                "validity of {b:?} differs from packaging"
            );
            continue;
        }
        assert!(
            Pep440::parse(a).is_some() && Pep440::parse(b).is_some(),
            "kiln rejects {a:?} or {b:?}"
        );
        let ours = sign(Scheme::Pep440.compare(a, b));
        assert_eq!(ours, l, "packaging says cmp({a:?}, {b:?}) = {l}, kiln says {ours}");
        agreed += 1;
    }
    assert!(agreed >= 10_000, "only {agreed} pairs were valid PEP 440");
}

fn semver_version(r: &mut Rng) -> String {
    let mut s = format!(
        "{}.{}.{}",
        r.pick(&["0", "1", "2", "10", "11"]),
        r.pick(&["0", "1", "2", "9", "10"]),
        r.pick(&["0", "1", "3", "20", "100"])
    );
    if r.below(2) == 0 {
        s.push('-');
        let n = 1 + r.below(3);
        let ids: Vec<&str> = (0..n)
            .map(|_| {
                r.pick(&[
                    "alpha", "beta", "rc", "0", "1", "2", "10", "x", "alpha1", "a-b", "11", "beta2",
                ])
            })
            .collect();
        s.push_str(&ids.join("."));
    }
    if r.below(6) == 0 {
        s.push('+');
        s.push_str(r.pick(&["build", "001", "exp.sha.5114f85", "20240101"]));
    }
    s
}

#[test]
fn semver_order_matches_npm_semver() {
    let node = require_tool("node");
    let module = repo().join("tests/node/node_modules/semver");
    assert!(
        module.is_dir(),
        "{} is missing (hint: run scripts/setup, which runs npm ci in tests/node)",
        module.display()
    );
    let mut r = Rng(0x5eed_5e5e_0000_0003);
    let ps = pairs(&mut r, 10_400, semver_version);
    let script = format!(
        r#"
const semver = require({module:?});
const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
const out = [];
for (const l of lines) {{
  const [a, b] = l.split("\t");
  try {{ out.push(String(semver.compare(a, b))); }} catch (e) {{ out.push("invalid"); }}
}}
process.stdout.write(out.join("\n") + "\n");
"#,
        module = module.display().to_string()
    );
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let lines = pipe(Command::new(node).arg("-e").arg(script), input);
    assert_eq!(lines.len(), ps.len());
    let mut agreed = 0;
    for ((a, b), l) in ps.iter().zip(&lines) {
        assert_ne!(
            l, "invalid",
            "npm semver rejects {a:?} or {b:?}, which the generator meant to be valid"
        );
        for scheme in [Scheme::Semver, Scheme::for_ecosystem("crates.io")] {
            let ours = sign(scheme.compare(a, b));
            assert_eq!(ours, l, "npm semver says compare({a:?}, {b:?}) = {l}, kiln says {ours}");
        }
        agreed += 1;
    }
    assert!(agreed >= 10_000);
}
