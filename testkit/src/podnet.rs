//! A pod's network for tests: a namespace joined by path (as a Kubernetes sandbox gives its
//! containers), a veth pair to the host, and peers (echo servers) inside or on the host.
//!
//! Used as `reel_testkit::podnet`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate as common;

// ---------------------------------------------------------------------------------------------
// A pod's network: a namespace joined by path, a veth pair to the host
// ---------------------------------------------------------------------------------------------

/// A pod-style network namespace (`ip netns add`, `lo` up) with a veth pair: `host_ip` on the
/// host side, the next address inside. Removed when dropped.
pub struct PodNet {
    pub name: String,
    pub veth: String,
    pub host_ip: String,
    pub pod_ip: String,
}

impl PodNet {
    pub fn new(prefix: &str) -> PodNet {
        let name = common::unique_name(prefix);
        // A /30 of its own per test process and call.
        let n = (std::process::id() as usize * 7 + name.len()) % 250 + 1;
        let veth = format!("rv{}", &format!("{:08x}", fxhash(&name))[..8]);
        let host_ip = format!("10.231.{n}.1");
        let pod_ip = format!("10.231.{n}.2");
        let ip = |args: &[&str]| common::run(Command::new("ip").args(args));
        ip(&["netns", "add", &name]);
        let net = PodNet {
            name: name.clone(),
            veth: veth.clone(),
            host_ip: host_ip.clone(),
            pod_ip: pod_ip.clone(),
        };
        let peer = format!("{veth}p");
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend(args);
            ip(&all);
        };
        ns(&["link", "set", "lo", "up"]);
        ns(&["addr", "add", &format!("{pod_ip}/30"), "dev", &peer]);
        ns(&["link", "set", &peer, "up"]);
        net
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `cmd` inside the namespace, as a process of the host (a sidecar's view).
    pub fn spawn(&self, program: &Path, args: &[&str]) -> Peer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        Peer::spawn(cmd)
    }

    /// Drops every packet in and out of the namespace (`lo` and the veth) until unblocked.
    pub fn block(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            common::run(Command::new("ip").args([
                "netns", "exec", &self.name, "iptables", "-w", "-I", chain, "-j", "DROP",
            ]));
        }
    }

    /// Destroys (SOCK_DESTROY, `ss -K`) the TCP sockets of the namespace connected to one of
    /// `ports`: a killed process's sockets linger in FIN-WAIT while their FIN is dropped,
    /// holding the addresses its restored copy needs. (CRIU itself closes a dumped socket in
    /// repair mode, which leaves nothing behind; a process killed afterwards does not.)
    pub fn destroy_connections_to(&self, ports: &[u16]) {
        let mut filter = vec!["("];
        let ports: Vec<String> = ports.iter().map(|p| format!(":{p}")).collect();
        for (i, p) in ports.iter().enumerate() {
            if i > 0 {
                filter.push("or");
            }
            filter.extend(["dport", "=", p.as_str()]);
        }
        filter.push(")");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, "ss", "-K", "-t", "-n"])
            .args(&filter);
        common::run(&mut cmd);
    }

    pub fn unblock(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            common::run(Command::new("ip").args([
                "netns", "exec", &self.name, "iptables", "-w", "-D", chain, "-j", "DROP",
            ]));
        }
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.veth])
            .stdin(Stdio::null())
            .output();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A process outside the container (an echo server), killed when dropped.
pub struct Peer {
    child: Child,
}

impl Peer {
    pub fn spawn(mut cmd: Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        // It says `listening` once bound.
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening", "{cmd:?} did not start");
        Peer { child }
    }

    pub fn on_host(program: &Path, args: &[&str]) -> Peer {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Peer::spawn(cmd)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
