//! Guaranteed cleanup: a process-wide registry of what the harness made.
//!
//! Owns the list of server pids, namespaces, links and directories to remove, and `run_all`,
//! which removes them (idempotent). `Drop` impls in `netns` and `cluster` clean up on normal
//! exit and on panic; `install_signal_handlers` makes SIGINT/SIGTERM/SIGHUP do the same
//! before exiting; `netns::sweep_leftovers` catches what a SIGKILLed harness left. Never
//! removes anything it was not told about.

use std::sync::Mutex;

#[derive(Default)]
struct Registry {
    pids: Vec<i32>,
    netns: Vec<String>,
    links: Vec<String>,
    dirs: Vec<std::path::PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    netns: Vec::new(),
    links: Vec::new(),
    dirs: Vec::new(),
});

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g)
}

pub fn register_pid(pid: i32) {
    with(|r| r.pids.push(pid));
}
pub fn forget_pid(pid: i32) {
    with(|r| r.pids.retain(|p| *p != pid));
}
pub fn register_netns(ns: &str) {
    with(|r| r.netns.push(ns.to_string()));
}
pub fn register_link(l: &str) {
    with(|r| r.links.push(l.to_string()));
}
pub fn register_dir(d: &std::path::Path) {
    with(|r| r.dirs.push(d.to_path_buf()));
}

/// Kills registered processes, deletes namespaces, links and directories.
pub fn run_all(keep_dirs: bool) {
    let (pids, netns, links, dirs) = with(|r| {
        (
            std::mem::take(&mut r.pids),
            std::mem::take(&mut r.netns),
            std::mem::take(&mut r.links),
            std::mem::take(&mut r.dirs),
        )
    });
    for p in pids {
        // SIGKILL works on SIGSTOPped processes too.
        unsafe { libc::kill(p, libc::SIGKILL) };
        let mut status = 0;
        unsafe { libc::waitpid(p, &mut status, 0) };
    }
    for ns in netns {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .output();
    }
    for l in links {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &l])
            .stderr(std::process::Stdio::null())
            .output();
    }
    if !keep_dirs {
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP clean up and exit with 128+signal. A thread waits on the
/// signals (blocked in every thread that starts after this call), so no async-signal-safety
/// problem arises.
pub fn install_signal_handlers() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set_copy = set;
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            libc::sigwait(&set_copy, &mut sig);
            eprintln!("zkd-jepsen: signal {sig}, cleaning up");
            run_all(false);
            std::process::exit(128 + sig);
        });
    }
}
