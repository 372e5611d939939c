//! Golden image digests: the manifest (or index) digests that fixed inputs must keep giving.
//!
//! kiln promises that the same inputs give the same digest on any machine and across
//! refactors. `tests/golden/digests.txt` holds one `SECTION/NAME sha256:…` line per image a
//! test builds from fixed inputs (the conformance cases, the kiln.toml builds from a test
//! mirror and from the examples' committed locks). A test gathers its section's digests and
//! calls [`check`]; a change of any digest fails the test with the list of what moved.
//! `KILN_UPDATE_GOLDEN=1` rewrites the section instead: the commit that does so must say
//! which entries changed and why.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the golden list lives.
pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/digests.txt")
}

fn read_all() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path()).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect()
}

/// Compares `found` (NAME → digest) with the golden lines of `section`.
///
/// Entries of the section that `found` lacks are ignored (a run may build only some cases,
/// e.g. with `KILN_CONFORMANCE_ONLY`); entries `found` has but the file lacks fail, so a new
/// case must be added to the list on purpose.
///
/// # Panics
/// When any digest differs from the golden list, or is missing from it.
pub fn check(section: &str, found: &BTreeMap<String, String>) {
    let mut all = read_all();
    if std::env::var_os("KILN_UPDATE_GOLDEN").is_some() {
        for (name, digest) in found {
            all.insert(format!("{section}/{name}"), digest.clone());
        }
        let mut text = String::from(
            "# Golden image digests (tests/src/golden.rs). Regenerate a section with\n\
             # KILN_UPDATE_GOLDEN=1 and say in the commit which entries changed and why.\n",
        );
        for (k, v) in &all {
            text.push_str(&format!("{k} {v}\n"));
        }
        std::fs::write(path(), text).expect("write tests/golden/digests.txt");
        return;
    }
    let mut moved = Vec::new();
    for (name, digest) in found {
        let key = format!("{section}/{name}");
        match all.get(&key) {
            Some(g) if g == digest => {}
            Some(g) => moved.push(format!("  {key}: golden {g}, now {digest}")),
            None => moved.push(format!("  {key}: not in the golden list (now {digest})")),
        }
    }
    assert!(
        moved.is_empty(),
        "{} image digest(s) differ from {} (hint: a change of digest must be deliberate; \
         rerun with KILN_UPDATE_GOLDEN=1 and explain the change in the commit):\n{}",
        moved.len(),
        path().display(),
        moved.join("\n")
    );
}
