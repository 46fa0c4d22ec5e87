//! `reel inspect checkpoint <ID|PATH>`: one call to `reel_core::inspect`, rendered.

use std::io::Write;

use anyhow::Context;
use reel_core::inspect::model::{Inspection, ProcessRow};
use reel_core::inspect::{self, InspectOptions};

use crate::cli::{Cli, InspectCheckpoint};
use crate::output::{print_to, Table};

pub fn run(cli: &Cli, args: &InspectCheckpoint) -> anyhow::Result<()> {
    let src = super::open_checkpoint(cli, &args.checkpoint, args.no_verify)?;
    let path = src.path().to_path_buf();
    let opts = InspectOptions {
        memory: true,
        rootfs: true,
        rootfs_hashes: args.rootfs || args.all,
        pid: args.pid,
    };
    let ins =
        inspect::inspect(&src, &opts).with_context(|| format!("inspecting {}", path.display()))?;
    let cp = ins.checkpoint.first().cloned().unwrap_or_default();
    if args.no_verify {
        eprintln!(
            "WARNING: --no-verify: members are not checked against the manifest{}",
            if cp.members_mismatched.is_empty() {
                String::new()
            } else {
                format!(
                    "; these DO NOT MATCH it: {}",
                    cp.members_mismatched.join(", ")
                )
            }
        );
    }
    let mut out = std::io::stdout().lock();
    print_to(&mut out, args.output, &ins, |w| render(w, args, &ins))?;
    out.flush()?;
    Ok(())
}

fn any_view(a: &InspectCheckpoint) -> bool {
    a.ps || a.threads
        || a.env
        || a.creds
        || a.files
        || a.sockets
        || a.mounts
        || a.ns
        || a.timers
        || a.rootfs
        || a.maps
        || a.all
}

fn render(w: &mut dyn Write, a: &InspectCheckpoint, ins: &Inspection) -> std::io::Result<()> {
    if !any_view(a) {
        return summary(w, ins);
    }
    let all = a.all;
    let mut first = true;
    let mut section = |w: &mut dyn Write, title: &str| -> std::io::Result<()> {
        if !first {
            writeln!(w)?;
        }
        first = false;
        writeln!(w, "== {title}")
    };
    if a.maps || all {
        section(w, "memory maps")?;
        let mut t = Table::new(vec![
            "PID",
            "START-END",
            "PERMS",
            "OFFSET",
            "DUMPED",
            "PAGES",
            "PATH",
        ]);
        for m in &ins.maps {
            t.row(vec![
                m.pid.to_string(),
                format!("{}-{}", m.start, m.end),
                m.perms.clone(),
                format!("{:08x}", m.offset),
                m.pages_dumped.to_string(),
                m.pages.to_string(),
                m.path.clone(),
            ]);
        }
        t.write(w)?;
        let mem: Vec<_> = ins
            .findings
            .iter()
            .filter(|f| f.address.is_some())
            .collect();
        if !mem.is_empty() {
            writeln!(w)?;
            writeln!(w, "findings:")?;
            for f in mem {
                writeln!(w, "  [{}] {}", f.kind, f.detail)?;
            }
        }
    }
    if a.ps || all {
        section(w, "processes")?;
        ps_table(ins).write(w)?;
    }
    if a.threads || all {
        section(w, "threads")?;
        let mut t = Table::new(vec![
            "PID", "TID", "COMM", "STATE", "SYSCALL", "BLOCKED", "PENDING", "IP", "SP",
        ]);
        for th in &ins.threads {
            t.row(vec![
                th.pid.to_string(),
                th.tid.to_string(),
                th.comm.clone(),
                th.state.clone(),
                th.syscall.clone().unwrap_or_else(|| "-".into()),
                list(&th.blocked),
                list(&th.pending),
                th.ip.clone(),
                th.sp.clone(),
            ]);
        }
        t.write(w)?;
    }
    if a.env || all {
        section(w, "environment")?;
        for p in &ins.processes {
            writeln!(w, "{} {}", p.pid, p.comm)?;
            if let Some(e) = &p.memory_error {
                writeln!(w, "  (not readable: {e})")?;
            }
            for e in &p.env {
                writeln!(w, "  {e}")?;
            }
        }
    }
    if a.creds || all {
        section(w, "credentials")?;
        let mut t = Table::new(vec![
            "PID",
            "UID(r/e/s/fs)",
            "GID(r/e/s/fs)",
            "GROUPS",
            "CAP_EFF",
            "NNP",
            "SECCOMP",
            "LSM",
        ]);
        for p in &ins.processes {
            t.row(vec![
                p.pid.to_string(),
                format!("{}/{}/{}/{}", p.uid, p.euid, p.suid, p.fsuid),
                format!("{}/{}/{}/{}", p.gid, p.egid, p.sgid, p.fsgid),
                p.groups
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                caps(&p.cap_eff),
                if p.no_new_privs { "yes" } else { "no" }.into(),
                p.seccomp.clone(),
                p.lsm.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        t.write(w)?;
    }
    if a.files || all {
        section(w, "files")?;
        let mut t = Table::new(vec![
            "PID", "FD", "TYPE", "FLAGS", "POS", "SIZE", "DELETED", "PATH",
        ]);
        for f in &ins.files {
            t.row(vec![
                f.pid.to_string(),
                f.fd.to_string(),
                f.kind.clone(),
                f.flags.clone(),
                opt(f.pos),
                opt(f.size.or(f.queued)),
                if f.deleted { "DELETED" } else { "" }.into(),
                f.path.clone(),
            ]);
        }
        t.write(w)?;
    }
    if a.sockets || all {
        section(w, "sockets")?;
        sockets_table(ins).write(w)?;
    }
    if a.mounts || all {
        section(w, "mounts")?;
        let mut t = Table::new(vec![
            "ID", "PARENT", "FSTYPE", "SOURCE", "TARGET", "OPTIONS", "EXTERNAL",
        ]);
        for m in &ins.mounts {
            t.row(vec![
                m.mnt_id.to_string(),
                m.parent.to_string(),
                m.fstype.clone(),
                m.source.clone(),
                m.target.clone(),
                m.options.clone(),
                m.external_source.clone().unwrap_or_default(),
            ]);
        }
        t.write(w)?;
    }
    if a.ns || all {
        section(w, "namespaces")?;
        let mut t = Table::new(vec!["KIND", "ID", "PIDS", "SAVED"]);
        for n in &ins.namespaces {
            let mut saved = Vec::new();
            if let Some(h) = &n.hostname {
                saved.push(format!("hostname={h}"));
            }
            if let Some(d) = &n.domainname {
                saved.push(format!("domainname={d}"));
            }
            if let (Some(s), Some(m), Some(se)) = (n.shm_segments, n.msg_queues, n.sem_sets) {
                saved.push(format!("shm={s} msg={m} sem={se}"));
            }
            if !n.interfaces.is_empty() {
                saved.push(format!("interfaces={}", n.interfaces.join(",")));
            }
            t.row(vec![
                n.kind.clone(),
                n.id.to_string(),
                n.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                saved.join(" "),
            ]);
        }
        t.write(w)?;
    }
    if a.timers || all {
        section(w, "timers")?;
        let mut t = Table::new(vec![
            "PID",
            "KIND",
            "ID",
            "CLOCK",
            "SIGNAL",
            "NEXT(s)",
            "INTERVAL(s)",
            "TICKS",
        ]);
        for tm in &ins.timers {
            t.row(vec![
                tm.pid.to_string(),
                tm.kind.clone(),
                opt(tm.id),
                tm.clock.clone().unwrap_or_default(),
                tm.signal.clone().unwrap_or_default(),
                format!("{:.3}", tm.next_s),
                format!("{:.3}", tm.interval_s),
                opt(tm.ticks),
            ]);
        }
        t.write(w)?;
    }
    if a.rootfs || all {
        section(w, "rootfs diff")?;
        let mut t = Table::new(vec![
            "STATUS", "TYPE", "MODE", "OWNER", "SIZE", "MTIME", "SHA256", "PATH",
        ]);
        for r in &ins.rootfs {
            t.row(vec![
                r.status.clone(),
                r.kind.clone(),
                r.mode
                    .clone()
                    .map(|m| if r.setuid { format!("{m} SETUID") } else { m })
                    .unwrap_or_default(),
                match (r.uid, r.gid) {
                    (Some(u), Some(g)) => format!("{u}:{g}"),
                    _ => String::new(),
                },
                opt(r.size),
                r.mtime.clone().unwrap_or_default(),
                r.sha256.clone().unwrap_or_default(),
                match &r.link {
                    Some(l) => format!("{} -> {l}", r.path),
                    None => r.path.clone(),
                },
            ]);
        }
        t.write(w)?;
    }
    Ok(())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn caps(v: &[String]) -> String {
    match v.len() {
        0 => "none".into(),
        n if n >= 40 => "all".into(),
        _ => v.join(","),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn ps_table(ins: &Inspection) -> Table {
    let mut t = Table::new(vec![
        "PID", "PPID", "PGID", "SID", "THR", "STATE", "UID:GID", "COMM", "ARGV",
    ]);
    let depth = |p: &ProcessRow| {
        let mut d = 0;
        let mut cur = p.ppid;
        while let Some(q) = ins.processes.iter().find(|q| q.pid == cur) {
            d += 1;
            cur = q.ppid;
            if d > 64 {
                break;
            }
        }
        d
    };
    for p in &ins.processes {
        t.row(vec![
            p.pid.to_string(),
            p.ppid.to_string(),
            p.pgid.to_string(),
            p.sid.to_string(),
            p.threads.to_string(),
            p.state.clone(),
            format!("{}:{}", p.uid, p.gid),
            format!("{}{}", "  ".repeat(depth(p)), p.comm),
            p.argv.join(" "),
        ]);
    }
    t
}

fn sockets_table(ins: &Inspection) -> Table {
    let mut t = Table::new(vec![
        "PID", "FD", "FAMILY", "TYPE", "PROTO", "STATE", "LOCAL", "REMOTE", "PEER", "RECV-Q",
        "SEND-Q",
    ]);
    for s in &ins.sockets {
        t.row(vec![
            s.pid.to_string(),
            s.fd.to_string(),
            s.family.clone(),
            s.kind.clone(),
            s.proto.clone(),
            s.state.clone(),
            s.local.clone(),
            s.remote.clone(),
            s.peer.join(","),
            opt(s.recv_queue),
            opt(s.send_queue),
        ]);
    }
    t
}

fn summary(w: &mut dyn Write, ins: &Inspection) -> std::io::Result<()> {
    let cp = ins.checkpoint.first().cloned().unwrap_or_default();
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    writeln!(
        w,
        "checkpoint  {}",
        cp.id.clone().unwrap_or_else(|| cp.path.clone())
    )?;
    writeln!(
        w,
        "container   {} ({})",
        s(&cp.container),
        s(&cp.container_id)
    )?;
    writeln!(w, "pod         {}/{}", s(&cp.namespace), s(&cp.pod))?;
    writeln!(w, "node        {}", s(&cp.node))?;
    writeln!(w, "image       {}", s(&cp.image))?;
    writeln!(
        w,
        "taken       {} by {}, frozen {}",
        s(&cp.created),
        s(&cp.method),
        cp.frozen_ms
            .map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "?".into())
    )?;
    writeln!(w, "processes   {} ({} threads)", cp.processes, cp.threads)?;
    writeln!(w)?;
    ps_table(ins).write(w)?;
    // One line per socket or file, with every pid/fd holding it (children inherit them).
    let mut seen: Vec<(u32, Vec<String>)> = Vec::new();
    for s in ins.sockets.iter().filter(|s| s.family.starts_with("inet")) {
        let holder = format!("{}/{}", s.pid, s.fd);
        match seen.iter_mut().find(|(ino, _)| *ino == s.ino) {
            Some((_, h)) => h.push(holder),
            None => seen.push((s.ino, vec![holder])),
        }
    }
    if !seen.is_empty() {
        writeln!(w)?;
        writeln!(w, "network sockets:")?;
        let mut t = Table::new(vec![
            "PROTO",
            "STATE",
            "LOCAL",
            "REMOTE",
            "RECV-Q",
            "SEND-Q",
            "HELD BY (pid/fd)",
        ]);
        for (ino, holders) in &seen {
            let Some(s) = ins.sockets.iter().find(|s| s.ino == *ino) else {
                continue;
            };
            t.row(vec![
                format!("{}{}", s.proto, if s.family == "inet6" { "6" } else { "" }),
                s.state.clone(),
                s.local.clone(),
                s.remote.clone(),
                opt(s.recv_queue),
                opt(s.send_queue),
                holders.join(","),
            ]);
        }
        t.write(w)?;
    }
    let mut deleted: Vec<(u32, Vec<String>)> = Vec::new();
    for f in ins.files.iter().filter(|f| f.deleted || f.kind == "memfd") {
        let holder = format!("{}/{}", f.pid, f.fd);
        match deleted.iter_mut().find(|(id, _)| *id == f.file_id) {
            Some((_, h)) => h.push(holder),
            None => deleted.push((f.file_id, vec![holder])),
        }
    }
    if !deleted.is_empty() {
        writeln!(w)?;
        writeln!(w, "deleted files and memfds still open:")?;
        for (id, holders) in &deleted {
            let Some(f) = ins.files.iter().find(|f| f.file_id == *id) else {
                continue;
            };
            writeln!(
                w,
                "  {} ({} bytes{}), held by {}",
                f.path,
                opt(f.size),
                f.contents_member
                    .as_ref()
                    .map(|m| format!(", contents in {m}"))
                    .unwrap_or_default(),
                holders.join(",")
            )?;
        }
    }
    let findings: Vec<_> = ins
        .findings
        .iter()
        .filter(|f| f.kind != "deleted-file-open" && f.kind != "memfd-open")
        .collect();
    if !findings.is_empty() {
        writeln!(w)?;
        writeln!(w, "findings:")?;
        for f in findings {
            writeln!(w, "  [{}] {}", f.kind, f.detail)?;
        }
    }
    writeln!(w)?;
    writeln!(
        w,
        "verdict     {} ({} members verified, {} read in part{})",
        cp.verdict,
        cp.members_verified,
        cp.members_read_in_part,
        if cp.members_mismatched.is_empty() {
            String::new()
        } else {
            format!(", MISMATCHED: {}", cp.members_mismatched.join(", "))
        }
    )?;
    if !cp.manifest {
        writeln!(
            w,
            "            no reel manifest: this archive cannot be verified"
        )?;
    }
    Ok(())
}
