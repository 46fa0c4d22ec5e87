//! Names for numbers in CRIU's images: x86-64 system calls, signals, task states, socket
//! families, types and states, clocks.

/// x86-64 system call names, by number (0..=334; later ones by [`syscall_name`]).
const SYSCALLS: &[&str] = &[
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "socket",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "clone",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "ptrace",
    "getuid",
    "syslog",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "uselib",
    "personality",
    "ustat",
    "statfs",
    "fstatfs",
    "sysfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "vhangup",
    "modify_ldt",
    "pivot_root",
    "_sysctl",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "chroot",
    "sync",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "lookup_dcookie",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_settime",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "kexec_load",
    "waitid",
    "add_key",
    "request_key",
    "keyctl",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "migrate_pages",
    "openat",
    "mkdirat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "unshare",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "move_pages",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "perf_event_open",
    "recvmmsg",
    "fanotify_init",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "setns",
    "getcpu",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "kexec_file_load",
    "bpf",
    "execveat",
    "userfaultfd",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
];

/// The name of x86-64 system call `nr` (`orig_ax`); `None` when the thread was not in one.
pub fn syscall_name(nr: u64) -> Option<String> {
    if nr as i64 == -1 {
        return None;
    }
    let later = [
        (424, "pidfd_send_signal"),
        (425, "io_uring_setup"),
        (426, "io_uring_enter"),
        (427, "io_uring_register"),
        (434, "pidfd_open"),
        (435, "clone3"),
        (436, "close_range"),
        (437, "openat2"),
        (438, "pidfd_getfd"),
        (439, "faccessat2"),
        (441, "epoll_pwait2"),
        (449, "futex_waitv"),
    ];
    Some(match SYSCALLS.get(nr as usize) {
        Some(n) => (*n).to_string(),
        None => later
            .iter()
            .find(|(n, _)| *n == nr)
            .map(|(_, s)| (*s).to_string())
            .unwrap_or_else(|| format!("syscall_{nr}")),
    })
}

const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of signal `n` (`SIGRTMIN+k` for real-time ones).
pub fn signal_name(n: u32) -> String {
    match n {
        1..=31 => SIGNALS[n as usize - 1].to_string(),
        32..=64 => format!("SIGRTMIN+{}", n - 32),
        _ => format!("SIG{n}"),
    }
}

/// The signals in a kernel sigset (bit `n - 1` is signal `n`).
pub fn sigset(mask: u64) -> Vec<String> {
    (1..=64u32)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(signal_name)
        .collect()
}

/// CRIU's task states (compel's `COMPEL_TASK_*`).
pub fn task_state(s: u32) -> String {
    match s {
        1 => "alive".into(),
        2 => "dead".into(),
        3 => "stopped".into(),
        6 => "zombie".into(),
        other => format!("state-{other}"),
    }
}

/// Address family.
pub fn family(f: u32) -> &'static str {
    match f {
        1 => "unix",
        2 => "inet",
        10 => "inet6",
        16 => "netlink",
        17 => "packet",
        _ => "other",
    }
}

/// Socket type.
pub fn sock_type(t: u32) -> String {
    match t {
        1 => "stream".into(),
        2 => "dgram".into(),
        3 => "raw".into(),
        5 => "seqpacket".into(),
        other => format!("type-{other}"),
    }
}

/// IP protocol.
pub fn ip_proto(p: u32) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        0 => String::new(),
        other => format!("proto-{other}"),
    }
}

/// TCP (and unix) socket state as the kernel numbers it.
pub fn sock_state(s: u32) -> String {
    match s {
        1 => "ESTABLISHED".into(),
        2 => "SYN_SENT".into(),
        3 => "SYN_RECV".into(),
        4 => "FIN_WAIT1".into(),
        5 => "FIN_WAIT2".into(),
        6 => "TIME_WAIT".into(),
        7 => "CLOSE".into(),
        8 => "CLOSE_WAIT".into(),
        9 => "LAST_ACK".into(),
        10 => "LISTEN".into(),
        11 => "CLOSING".into(),
        other => format!("state-{other}"),
    }
}

/// A clock id.
pub fn clock(c: u32) -> String {
    match c {
        0 => "realtime".into(),
        1 => "monotonic".into(),
        2 => "process-cputime".into(),
        3 => "thread-cputime".into(),
        4 => "monotonic-raw".into(),
        7 => "boottime".into(),
        8 => "realtime-alarm".into(),
        9 => "boottime-alarm".into(),
        other => format!("clock-{other}"),
    }
}

/// Capability names, by number.
const CAPS: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The capabilities in CRIU's capability words (32 bits each, low word first).
pub fn caps(words: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        for bit in 0..32 {
            if word & (1 << bit) != 0 {
                let n = w * 32 + bit;
                out.push(
                    CAPS.get(n)
                        .map(|s| (*s).to_string())
                        .unwrap_or_else(|| format!("cap_{n}")),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(SYSCALLS.len(), 335);
        assert_eq!(syscall_name(0).unwrap(), "read");
        assert_eq!(syscall_name(34).unwrap(), "pause");
        assert_eq!(syscall_name(35).unwrap(), "nanosleep");
        assert_eq!(syscall_name(61).unwrap(), "wait4");
        assert_eq!(syscall_name(202).unwrap(), "futex");
        assert_eq!(syscall_name(230).unwrap(), "clock_nanosleep");
        assert_eq!(syscall_name(232).unwrap(), "epoll_wait");
        assert_eq!(syscall_name(271).unwrap(), "ppoll");
        assert_eq!(syscall_name(319).unwrap(), "memfd_create");
        assert_eq!(syscall_name(334).unwrap(), "rseq");
        assert_eq!(syscall_name(435).unwrap(), "clone3");
        assert_eq!(syscall_name(u64::MAX), None);
        assert_eq!(sigset(1 << 9 | 1 << 13), vec!["SIGUSR1", "SIGALRM"]);
        assert_eq!(signal_name(34), "SIGRTMIN+2");
        assert_eq!(caps(&[1 << 21, 1 << 1]), vec!["sys_admin", "mac_admin"]);
        assert_eq!(caps(&[0, 1 << 8]), vec!["checkpoint_restore"]);
    }
}
