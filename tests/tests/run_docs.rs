//! docs/build.md's RUN section lists the default volatile strip list; it must be exactly
//! `VOLATILE` in crates/kiln-build/src/run/overlay.rs.

use std::collections::BTreeSet;
use std::path::Path;

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn run_docs_list_the_volatile_files_of_overlay_rs() {
    let src = repo_file("crates/kiln-build/src/run/overlay.rs");
    let start = src.find("pub const VOLATILE").expect("VOLATILE in overlay.rs");
    let body = &src[start..start + src[start..].find("];").expect("end of VOLATILE")];
    let code: BTreeSet<String> = body
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(code.len() > 10, "VOLATILE parsed badly: {code:?}");

    let docs = repo_file("docs/build.md");
    let section = &docs[docs.find("## RUN").expect("a RUN section in docs/build.md")..];
    // The strip list is the text block after the sentence that names VOLATILE (the section
    // also opens with a usage block).
    let from = section.find("`VOLATILE`").expect("the RUN section names VOLATILE");
    let block = section[from..]
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```text block with the strip list in the RUN section");
    let documented: BTreeSet<String> = block.split_whitespace().map(str::to_string).collect();
    assert_eq!(
        documented, code,
        "docs/build.md's strip list differs from VOLATILE in run/overlay.rs"
    );
}
