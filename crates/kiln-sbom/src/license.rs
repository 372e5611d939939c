//! Declared licenses → SPDX license expressions, where that is certain.
//!
//! Metadata holds free text ("MIT License", "BSD", "Apache 2.0"). SPDX validators reject an
//! expression with an id they do not know, and CycloneDX's schema only takes listed ids in
//! `license.id`; so kiln emits an id only when every part of the text is a known id (or a
//! common spelling of one) and keeps the original text otherwise.

/// SPDX license ids common in packages (a subset of the SPDX license list).
const IDS: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "BlueOak-1.0.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "CDDL-1.1",
    "curl",
    "EPL-1.0",
    "EPL-2.0",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "OpenSSL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "UPL-1.0",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "zlib-acknowledgement",
];

/// Exceptions allowed after `WITH`.
const EXCEPTIONS: &[&str] = &[
    "Classpath-exception-2.0",
    "GCC-exception-3.1",
    "LLVM-exception",
    "OpenSSL-exception",
];

/// Common spellings of ids.
fn alias(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mit license" | "the mit license" | "mit" => "MIT",
        "apache 2.0"
        | "apache-2"
        | "apache 2"
        | "apache license 2.0"
        | "apache license, version 2.0"
        | "apache software license"
        | "apache-2.0" => "Apache-2.0",
        "isc license" | "isc license (iscl)" => "ISC",
        "bsd-3-clause" | "new bsd license" | "bsd 3-clause" => "BSD-3-Clause",
        "bsd-2-clause" | "simplified bsd license" => "BSD-2-Clause",
        "mozilla public license 2.0 (mpl 2.0)" => "MPL-2.0",
        "python software foundation license" => "PSF-2.0",
        "the unlicense (unlicense)" => "Unlicense",
        "gplv2" | "gpl-2.0" => "GPL-2.0-only",
        "gplv2+" | "gpl-2.0+" => "GPL-2.0-or-later",
        "gplv3" | "gpl-3.0" => "GPL-3.0-only",
        "gplv3+" | "gpl-3.0+" => "GPL-3.0-or-later",
        "lgpl-2.1" => "LGPL-2.1-only",
        "lgpl-2.1+" => "LGPL-2.1-or-later",
        _ => return None,
    })
}

fn id(token: &str) -> Option<&'static str> {
    IDS.iter().find(|i| i.eq_ignore_ascii_case(token)).copied()
}

/// A valid SPDX expression for `text`, or `None` when any part is not certain.
pub fn spdx_expression(text: &str) -> Option<String> {
    let text = text.trim();
    if let Some(a) = alias(text) {
        return Some(a.to_string());
    }
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let mut out: Vec<String> = vec![];
    let mut expect_exception = false;
    let mut operands = 0;
    for tok in spaced.split_whitespace() {
        match tok {
            "(" | ")" => out.push(tok.to_string()),
            t if t.eq_ignore_ascii_case("AND") || t.eq_ignore_ascii_case("OR") => out.push(t.to_ascii_uppercase()),
            t if t.eq_ignore_ascii_case("WITH") => {
                out.push("WITH".into());
                expect_exception = true;
            }
            t if expect_exception => {
                let e = EXCEPTIONS.iter().find(|e| e.eq_ignore_ascii_case(t))?;
                out.push(e.to_string());
                expect_exception = false;
            }
            t => {
                out.push(id(t)?.to_string());
                operands += 1;
            }
        }
    }
    (operands > 0 && !expect_exception).then(|| out.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// The single SPDX id `text` is, if it is exactly one.
pub fn single_id(text: &str) -> Option<String> {
    spdx_expression(text).filter(|e| !e.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        assert_eq!(spdx_expression("MIT").as_deref(), Some("MIT"));
        assert_eq!(
            spdx_expression("mit OR (apache-2.0 AND ISC)").as_deref(),
            Some("MIT OR (Apache-2.0 AND ISC)")
        );
        assert_eq!(spdx_expression("MIT License").as_deref(), Some("MIT"));
        assert_eq!(spdx_expression("BSD"), None);
        assert_eq!(
            spdx_expression("GPL-2.0-only WITH Classpath-exception-2.0").as_deref(),
            Some("GPL-2.0-only WITH Classpath-exception-2.0")
        );
        assert_eq!(single_id("MIT OR ISC"), None);
    }
}
