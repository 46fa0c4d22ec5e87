//! Test helper: freeze a cgroup with a [`FreezeGuard`] and hold it.
//!
//! `freeze_hold <v1|v2> <cgroup-dir> [--no-watchdog]` or `freeze_hold pid <pid>`
//! (Preference::Auto). `--no-watchdog` leaves thawing on signals to the signal handler alone.
//! Prints `ready was_frozen=<bool> watchdog=<pid|0> kind=<v1|v2> path=<dir>` once frozen, then
//! reads stdin: the line `thaw` thaws explicitly (prints `thawed`, exits 0); end of file exits
//! and lets the guard's drop thaw. Meant to be killed by tests (SIGKILL, SIGINT, SIGTERM).

use std::io::{BufRead, Write};

use reel_core::cgroups::{CgroupKind, FreezeGuard, FreezeOptions, Freezer, Preference};

fn main() {
    // A program installs reel's SIGINT/SIGTERM handling itself: then a signal thaws.
    reel_core::signals::install().expect("install the signal handlers");
    let args: Vec<String> = std::env::args().collect();
    let freezer = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("v1"), Some(dir)) => Freezer::new(CgroupKind::V1, dir),
        (Some("v2"), Some(dir)) => Freezer::new(CgroupKind::V2, dir),
        (Some("pid"), Some(pid)) => {
            let pid = pid.parse().expect("pid");
            Freezer::for_pid(pid, Preference::Auto).unwrap_or_else(|e| fail(&e))
        }
        _ => {
            eprintln!("usage: freeze_hold <v1|v2> <cgroup-dir> | freeze_hold pid <pid>");
            std::process::exit(2);
        }
    };
    let watchdog = !args.iter().any(|a| a == "--no-watchdog");
    let options = FreezeOptions::default().watchdog(watchdog);
    let guard: FreezeGuard = freezer.freeze_with(&options).unwrap_or_else(|e| fail(&e));
    println!(
        "ready was_frozen={} watchdog={} kind={} path={}",
        guard.was_frozen(),
        guard.watchdog_pid().unwrap_or(0),
        guard.freezer().kind(),
        guard.path().display()
    );
    std::io::stdout().flush().unwrap();

    let mut line = String::new();
    loop {
        line.clear();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim() == "thaw" => {
                guard.thaw().unwrap_or_else(|e| fail(&e));
                println!("thawed");
                return;
            }
            Ok(_) => {}
        }
    }
    drop(guard);
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("freeze_hold: {e}");
    std::process::exit(1);
}
