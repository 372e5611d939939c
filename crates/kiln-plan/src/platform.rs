//! Platforms (`linux/arm64/v8`) and the automatic platform build args.

use kiln_oci::Platform;

/// The platform kiln runs on, in GOOS/GOARCH spelling, which images use.
pub fn host() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform {
        architecture: arch.into(),
        os: "linux".into(),
        variant: variant.map(Into::into),
    }
}

/// Parses `os/arch[/variant]` (also accepts `arch` alone, meaning linux).
pub fn parse(s: &str) -> Option<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    let p = match parts.as_slice() {
        [arch] if !arch.is_empty() => Platform {
            os: "linux".into(),
            architecture: (*arch).into(),
            variant: None,
        },
        [os, arch] if !os.is_empty() && !arch.is_empty() => Platform {
            os: (*os).into(),
            architecture: (*arch).into(),
            variant: None,
        },
        [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Platform {
            os: (*os).into(),
            architecture: (*arch).into(),
            variant: Some((*v).into()),
        },
        _ => return None,
    };
    let p = normalize(p);
    // As containerd's platforms.Parse: an unknown OS or architecture is an error, not a
    // platform nothing can match.
    (KNOWN_OS.contains(&p.os.as_str()) && KNOWN_ARCH.contains(&p.architecture.as_str())).then_some(p)
}

/// GOOS values (containerd's `isKnownOS`).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// GOARCH values (containerd's `isKnownArch`), after [`normalize`].
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// Applies the usual aliases (`x86_64` → `amd64`, `aarch64` → `arm64`, arm64's default `v8`
/// dropped) so equal platforms compare equal.
pub fn normalize(mut p: Platform) -> Platform {
    p.os = p.os.to_lowercase();
    p.architecture = match p.architecture.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "i386" => "386".into(),
        other => other.into(),
    };
    if p.architecture == "arm64" && p.variant.as_deref() == Some("v8") {
        p.variant = None;
    }
    p
}

/// The OCI platform of a Debian architecture (`armhf` → `linux/arm/v7`), as kiln.toml
/// images record it in their config and index. arm64 keeps its `v8` variant there, as it
/// always has, so [`normalize`] is not applied.
pub fn debian(arch: &str) -> Platform {
    let (a, v) = match arch {
        "amd64" => ("amd64", None),
        "arm64" => ("arm64", Some("v8")),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "i386" => ("386", None),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        other => (other, None),
    };
    Platform {
        architecture: a.into(),
        os: "linux".into(),
        variant: v.map(Into::into),
    }
}

/// `os/arch[/variant]`.
pub fn format(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The automatic `BUILD*` and `TARGET*` args BuildKit defines in the global scope.
pub fn automatic_args(build: &Platform, target: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        out.push((format!("{prefix}PLATFORM"), format(p)));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platforms() {
        assert_eq!(format(&parse("linux/aarch64/v8").unwrap()), "linux/arm64");
        assert_eq!(format(&parse("linux/arm/v7").unwrap()), "linux/arm/v7");
        assert_eq!(format(&parse("amd64").unwrap()), "linux/amd64");
        assert!(parse("linux/").is_none());
        assert!(parse("bad").is_none());
        assert!(parse("linux/bad").is_none());
        assert!(parse("nope/amd64").is_none());
    }
}
