//! Runs the ```console examples of every page in docs/: each `$ kiln …` line runs against a
//! fresh store (one per page) from the repository root, must succeed, and the lines shown
//! after it must appear in its output in order (`…` matches anything).

use std::fs;
use std::path::Path;

use kiln_tests::KilnStore;

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

struct Example {
    command: String,
    expected: Vec<String>,
}

fn examples(markdown: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_console = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_console = !in_console && line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Example {
                command: cmd.to_string(),
                expected: vec![],
            });
        } else if let Some(last) = out.last_mut() {
            last.expected.push(line.to_string());
        }
    }
    out
}

#[test]
fn every_console_example_in_docs_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut ran = 0;
    for entry in fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let store = KilnStore::new();
        let work = tempfile::tempdir().unwrap();
        for ex in examples(&text) {
            let words: Vec<&str> = ex.command.split_whitespace().collect();
            assert_eq!(
                words[0],
                "kiln",
                "{}: only kiln commands are run: {}",
                path.display(),
                ex.command
            );
            // Relative paths in examples are the repository's (examples/…) or scratch files.
            let args: Vec<String> = words[1..]
                .iter()
                .map(|w| {
                    if w.starts_with("examples/") {
                        root.join(w).display().to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            let out = store.cmd(&args).current_dir(work.path()).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{}: `{}` failed:\n{}",
                path.display(),
                ex.command,
                String::from_utf8_lossy(&out.stderr)
            );
            // Expected lines match stdout lines in order; a pattern may also match within the
            // whole output (for pretty JSON where the key sits on its own line).
            let lines: Vec<&str> = stdout.lines().collect();
            let mut at = 0;
            for pat in &ex.expected {
                let found = lines[at..]
                    .iter()
                    .position(|l| matches(pat, l) || matches(pat.trim_start_matches('…'), l.trim_start()));
                match found {
                    Some(i) => at += i + 1,
                    None => panic!(
                        "{}: `{}`: no output line matches {pat:?}\noutput:\n{stdout}",
                        path.display(),
                        ex.command
                    ),
                }
            }
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} examples found in docs/");
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
