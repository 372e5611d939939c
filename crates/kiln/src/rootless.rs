//! Entering a user namespace for rootless builds, before anything else runs (a process must
//! be single-threaded to join one, so kiln re-executes itself under `unshare`).

use std::os::unix::process::CommandExt;
use std::path::Path;

use kiln_build::run::userns::{self, Plan};

/// Re-executes kiln in a user namespace when run as a normal user; returns only when no
/// re-execution is needed or possible (then RUN steps report why they cannot run).
pub fn reexec_if_needed(store_root: &Path, quiet: bool) {
    match userns::plan() {
        Plan::NotNeeded => {}
        Plan::Unavailable(reason) => {
            if !quiet {
                eprintln!(
                    "warning: rootless RUN steps are unavailable: {reason} (hint: apt-get install uidmap util-linux)"
                );
            }
        }
        Plan::Reexec { unshare, args, note } => {
            if let (Some(n), false) = (note, quiet) {
                eprintln!("warning: {n}");
            }
            let exe = std::env::current_exe().unwrap_or_else(|_| "kiln".into());
            let err = std::process::Command::new(unshare)
                .args(args)
                .arg("--")
                .arg(exe)
                .args(std::env::args_os().skip(1))
                .env(userns::MARKER, "1")
                // Inside the namespace kiln is uid 0; the store must stay the user's own.
                .env("KILN_HOME", store_root)
                .exec();
            eprintln!("warning: could not enter a user namespace ({err}); RUN steps will fail");
        }
    }
}

/// As root, moves kiln into its own mount namespace before any thread starts, so that the
/// overlays and tmpfs a build mounts die with it (a rootless kiln is in one already: the
/// user namespace's).
pub fn private_mounts() {
    if std::env::var_os(userns::MARKER).is_none() {
        kiln_build::run::lifetime::private_mounts_as_root();
    }
}
