//! Signal forwarding for a foreground container: kiln blocks the signals a user or a
//! supervisor sends (INT, TERM, HUP, QUIT, USR1, USR2), waits for them on a thread and passes
//! each to the runtime, which passes it to the container's process. The exit code is then
//! the container's own.

/// The signals forwarded.
const FORWARDED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a plain sigset_t we own.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in FORWARDED {
            libc::sigaddset(&mut s, *sig);
        }
        s
    }
}

/// Blocks the forwarded signals in the calling thread (and the threads it starts later).
/// Call before spawning the runtime; the child unblocks them with [`unblock_in_child`].
pub fn block() {
    let s = set();
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut());
    }
}

/// Restores an empty signal mask; for `pre_exec` in the runtime's child (async-signal-safe).
pub fn unblock_in_child() -> std::io::Result<()> {
    let s = set();
    // SAFETY: sigprocmask is async-signal-safe and only touches the child's mask.
    unsafe {
        libc::sigprocmask(libc::SIG_UNBLOCK, &s, std::ptr::null_mut());
    }
    Ok(())
}

/// Starts a thread that forwards every blocked signal to `pid` until the process exits.
pub fn forward_to(pid: u32) {
    std::thread::spawn(move || {
        let s = set();
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the set and writes the signal number we own.
            let rc = unsafe { libc::sigwait(&s, &mut sig) };
            if rc == 0 {
                // SAFETY: kill sends a signal; a vanished pid only returns ESRCH.
                unsafe {
                    libc::kill(pid as libc::pid_t, sig);
                }
            }
        }
    });
}
