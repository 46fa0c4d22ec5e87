//! Test helper: take a container lock and hold it until stdin closes (or forever).
//!
//! `lock_hold <lock-dir> <container-id>`: prints `locked <pid>` once it holds the lock; on end
//! of stdin releases it and exits 0.

use std::io::{BufRead, Write};
use std::time::Duration;

use reel_core::lock::Locker;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: lock_hold <lock-dir> <container-id>");
        std::process::exit(2);
    }
    let lock = match Locker::new(&args[1]).lock(&args[2], Duration::from_secs(10)) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("lock_hold: {e}");
            std::process::exit(1);
        }
    };
    println!("locked {}", std::process::id());
    std::io::stdout().flush().unwrap();
    // Hold until stdin reaches end of file.
    let mut line = String::new();
    while std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {
        line.clear();
    }
    drop(lock);
    std::thread::sleep(Duration::from_millis(1));
}
