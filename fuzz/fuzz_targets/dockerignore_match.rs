//! Ignore-file parsing and matching must never panic. Input: the ignore
//! file, then a NUL byte, then newline-separated paths to test.
#![no_main]

use kiln_dockerfile::dockerignore::Matcher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c\nfoo\n.git/x"));
    if let Ok(m) = Matcher::parse(patterns) {
        for p in paths.split('\n').take(64) {
            let excluded = m.is_excluded(p);
            // Soundness of the walker's shortcut: a skippable directory has
            // no included child.
            if m.can_skip_dir(p) {
                assert!(excluded);
                assert!(m.is_excluded(&format!("{p}/x")), "skip unsound for {p:?}");
            }
        }
    }
});
