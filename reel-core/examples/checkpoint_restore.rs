//! The library on its own: start a sample process tree, checkpoint it with reel-core's CRIU
//! driver, restore it, and show that it continued where it stopped.
//!
//! Run as root: `cargo run -p reel-core --example checkpoint_restore`
//!
//! The tree is a shell whose child increments a counter in a file ten times a second; the
//! dump kills the tree (no `leave_running`), the restore brings it back with the counter's
//! value from the dump.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reel_core::criu::{Criu, Options};

fn read_counter(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Processes of session `sid` still in the process table (zombies included).
fn session_members(sid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid pgrp session ...
                    let rest = s.rsplit_once(") ")?.1.to_string();
                    rest.split_whitespace().nth(3)?.parse::<i32>().ok()
                })
                == Some(sid)
        })
        .count()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !nix::unistd::geteuid().is_root() {
        return Err("run this example as root (CRIU needs it)".into());
    }
    let criu = Criu::locate()?;
    println!(
        "CRIU {} at {}",
        criu.known_version(),
        criu.binary().display()
    );

    let dir = tempfile::Builder::new().prefix("reel-sample-").tempdir()?;
    let counter = dir.path().join("counter");
    let images = dir.path().join("images");
    std::fs::create_dir(&images)?;

    // A session of its own and no inherited descriptors: CRIU dumps it whole.
    let script = format!(
        "( i=0; while :; do i=$((i+1)); echo $i > {c}; sleep 0.1; done ) & wait",
        c = counter.display()
    );
    let mut child = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(800));
    println!(
        "sample tree started: pid {pid}, counter at {:?}",
        read_counter(&counter)
    );

    let stats = criu.dump(
        &Options::new()
            .pid(pid)
            .images_dir(&images)
            .work_dir(dir.path())
            .log_file("dump.log")
            .shell_job(false),
    )?;
    // The dump killed the tree; reap its root so its pid is free for the restore.
    child.wait()?;
    // Its other processes are orphans now: wait until init has reaped them all, so every pid
    // of the dumped tree is free again.
    for _ in 0..200 {
        if session_members(pid) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let dumped = read_counter(&counter).unwrap_or(0);
    println!(
        "checkpointed: frozen {:?}, {} pages written; the tree is gone: {}; counter stopped at {dumped}",
        stats.frozen_time.unwrap_or_default(),
        stats.pages_written.unwrap_or(0),
        !alive(pid)
    );
    std::thread::sleep(Duration::from_millis(300));

    let restored = criu.restore(
        &Options::new()
            .images_dir(&images)
            .work_dir(dir.path())
            .log_file("restore.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    let now = read_counter(&counter).unwrap_or(0);
    println!("restored: pid {restored}, counter now {now} (continued from {dumped}, not from 0)");
    let ok = now > dumped && dumped > 0;

    // Stop the restored tree (its whole session).
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(restored),
        nix::sys::signal::Signal::SIGKILL,
    );
    if ok {
        println!("OK: the sample continued where it stopped");
        Ok(())
    } else {
        Err(format!("the counter did not continue (dumped {dumped}, now {now})").into())
    }
}
