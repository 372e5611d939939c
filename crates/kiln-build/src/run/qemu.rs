//! RUN steps of a foreign architecture: QEMU user emulation through binfmt_misc, with
//! Debian's `qemu-user-static`. The kernel hands a foreign ELF binary to the registered
//! interpreter; with the F (fix-binary) flag the interpreter is opened when it is registered,
//! so it works inside the step's container, whose rootfs does not hold it.
//!
//! kiln checks the registration before the first foreign RUN step of a build and registers
//! Debian's handler (`/usr/lib/binfmt.d/qemu-NAME.conf`) when it can (root, binfmt_misc
//! mounted or mountable). Otherwise the step fails with what is missing and how to add it,
//! instead of the runtime's `exec format error`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::StepError;

/// Where binfmt_misc is mounted. `KILN_BINFMT_MISC` points elsewhere (tests use it to make
/// the handler unavailable).
fn binfmt_dir() -> PathBuf {
    std::env::var_os("KILN_BINFMT_MISC").map_or_else(|| PathBuf::from("/proc/sys/fs/binfmt_misc"), PathBuf::from)
}

/// Where Debian's qemu-user-static installs its binfmt lines (systemd-binfmt reads them).
const CONF_DIR: &str = "/usr/lib/binfmt.d";

/// QEMU's name for an OCI architecture (`arm64` → `aarch64`).
pub fn qemu_name(arch: &str) -> &str {
    match arch {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// Whether the host runs `arch` natively (amd64 also runs 386; arm64 may run arm, but
/// not everywhere, so arm goes through the check).
pub fn is_native(arch: &str) -> bool {
    let host = kiln_plan::platform::host().architecture;
    arch == host || (host == "amd64" && arch == "386")
}

/// Checks once per architecture and process; later steps reuse the answer.
static CHECKED: Mutex<BTreeMap<String, Result<(), StepError>>> = Mutex::new(BTreeMap::new());

/// Makes sure a RUN step for `arch` can execute: native, or a QEMU handler registered with
/// the F flag (registered here if kiln can). The error names the package and the missing
/// registration.
pub fn ensure(arch: &str) -> Result<(), StepError> {
    if is_native(arch) {
        return Ok(());
    }
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    checked
        .entry(arch.to_string())
        .or_insert_with(|| check_or_register(&binfmt_dir(), Path::new(CONF_DIR), arch))
        .clone()
}

/// What a registered handler's file (`/proc/sys/fs/binfmt_misc/qemu-aarch64`) says.
#[derive(Debug, PartialEq, Eq)]
struct Handler {
    enabled: bool,
    interpreter: String,
    flags: String,
}

fn parse_handler(text: &str) -> Handler {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Handler {
        enabled: text.lines().next().map(str::trim) == Some("enabled"),
        interpreter: field("interpreter "),
        flags: field("flags:"),
    }
}

fn hint(name: &str) -> String {
    format!(
        "install Debian's qemu-user-static and, as root, register it (update-binfmts --enable qemu-{name}, or systemctl restart systemd-binfmt); or cross-compile in a stage FROM --platform=$BUILDPLATFORM"
    )
}

fn check_or_register(dir: &Path, conf_dir: &Path, arch: &str) -> Result<(), StepError> {
    let name = qemu_name(arch);
    let entry = dir.join(format!("qemu-{name}"));
    if !entry.exists() {
        register(dir, conf_dir, arch)?;
    }
    let text = std::fs::read_to_string(&entry).map_err(|e| {
        StepError::new(
            format!(
                "RUN for {arch} needs QEMU user emulation, but binfmt_misc has no handler {} ({e})",
                entry.display()
            ),
            hint(name),
        )
    })?;
    let h = parse_handler(&text);
    if !h.enabled {
        return Err(StepError::new(
            format!(
                "RUN for {arch} needs QEMU user emulation: the binfmt_misc handler {} is disabled",
                entry.display()
            ),
            format!("as root: echo 1 > {}", entry.display()),
        ));
    }
    if !h.flags.contains('F') {
        return Err(StepError::new(
            format!(
                "RUN for {arch}: the binfmt_misc handler {} lacks the F (fix-binary) flag, so {} cannot be found inside the step's container",
                entry.display(),
                h.interpreter
            ),
            format!(
                "as root: echo -1 > {0}, then register it again with flags F (Debian's qemu-user-static does: update-binfmts --enable qemu-{name})",
                entry.display()
            ),
        ));
    }
    Ok(())
}

/// Registers Debian's handler line for `arch`, mounting binfmt_misc first if needed.
fn register(dir: &Path, conf_dir: &Path, arch: &str) -> Result<(), StepError> {
    let name = qemu_name(arch);
    let conf = conf_dir.join(format!("qemu-{name}.conf"));
    let line = std::fs::read_to_string(&conf).map_err(|e| {
        StepError::new(
            format!(
                "RUN for {arch} needs QEMU user emulation: package qemu-user-static is not installed ({}: {e})",
                conf.display()
            ),
            hint(name),
        )
    })?;
    let line = line
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(':'))
        .ok_or_else(|| StepError::new(format!("{}: no binfmt_misc line", conf.display()), hint(name)))?;
    let line = with_fix_binary(line);
    let register = dir.join("register");
    if !register.exists() && dir == Path::new("/proc/sys/fs/binfmt_misc") {
        // Not mounted yet (containers, minimal hosts); mounting it is what systemd does.
        let _ = std::process::Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc"])
            .arg(dir)
            .status();
    }
    std::fs::write(&register, line.as_bytes()).map_err(|e| {
        StepError::new(
            format!(
                "RUN for {arch} needs QEMU user emulation: no binfmt_misc handler qemu-{name} is registered in {} and kiln could not register one ({}: {e})",
                dir.display(),
                register.display()
            ),
            hint(name),
        )
    })
}

/// A binfmt line (`:name:type:offset:magic:mask:interpreter:flags`) with F in its flags.
fn with_fix_binary(line: &str) -> String {
    let mut fields: Vec<String> = line.split(':').map(str::to_string).collect();
    if let Some(flags) = fields.last_mut()
        && !flags.contains('F')
    {
        flags.push('F');
    }
    fields.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_and_lines() {
        let h = parse_handler(
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n",
        );
        assert!(h.enabled);
        assert_eq!(h.flags, "POCF");
        assert_eq!(h.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert_eq!(with_fix_binary(":q:M::\\x7f:\\xff:/i:OP"), ":q:M::\\x7f:\\xff:/i:OPF");
        assert_eq!(with_fix_binary(":q:M::\\x7f:\\xff:/i:F"), ":q:M::\\x7f:\\xff:/i:F");
        assert_eq!(qemu_name("arm64"), "aarch64");
    }

    #[test]
    fn missing_package_and_registration_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_or_register(dir.path(), dir.path(), "riscv64").unwrap_err();
        assert!(e.message.contains("qemu-user-static is not installed"), "{e}");
        std::fs::write(
            dir.path().join("qemu-riscv64.conf"),
            ":qemu-riscv64:M::\\x7f:\\xff:/i:OC\n",
        )
        .unwrap();
        let binfmt = dir.path().join("binfmt");
        let e = check_or_register(&binfmt, dir.path(), "riscv64").unwrap_err();
        assert!(e.message.contains("could not register"), "{e}");
        assert!(e.message.contains("qemu-riscv64"), "{e}");
        std::fs::create_dir(&binfmt).unwrap();
        std::fs::write(binfmt.join("qemu-riscv64"), "enabled\ninterpreter /i\nflags: OC\n").unwrap();
        let e = check_or_register(&binfmt, dir.path(), "riscv64").unwrap_err();
        assert!(e.message.contains("F (fix-binary)"), "{e}");
    }
}
