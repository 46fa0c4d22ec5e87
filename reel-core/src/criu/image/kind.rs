//! Every image type the pinned CRIU knows (`criu/image-desc.c`, `criu/include/magic.h`): its
//! magic, its file name and the message its entries start with. Left out: `PAGES_OLD` and
//! `SHM_PAGES_OLD`, CRIU 1.x formats that CRIU 4.2.1 names but never reads or writes.

use std::fmt;

use super::message::MessageType;

/// The first word of every image but the inventory (CRIU's images v1.1).
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// The first word of the service files (`stats-*`, `irmap-cache`) instead of
/// [`IMG_COMMON_MAGIC`].
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// The "magic" of raw images, which have no header at all.
const RAW: u32 = 0;

/// What comes before an image's own magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Nothing: the inventory, and raw images (which have no magic either).
    None,
    /// [`IMG_COMMON_MAGIC`].
    Common,
    /// [`IMG_SERVICE_MAGIC`].
    Service,
}

macro_rules! kinds {
    ($($kind:ident = $magic:expr, $pattern:literal, $first:expr, $what:literal;)*) => {
        /// An image type of the pinned CRIU. Several kinds share a magic (pagemaps of tasks and
        /// of shared memory, signals of a process and of a thread, the binfmt_misc image in its
        /// two names); [`ImageKind::identify`] tells them apart by the file name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ImageKind {
            $(
                #[doc = concat!("`", $pattern, "`: ", $what, ".")]
                $kind,
            )*
        }

        impl ImageKind {
            /// Every kind, in CRIU's order.
            pub const ALL: &'static [ImageKind] = &[$(ImageKind::$kind,)*];

            /// The image's own magic (`None` for raw images, which have none).
            pub fn magic(self) -> Option<u32> {
                let magic = match self {
                    $(ImageKind::$kind => $magic,)*
                };
                (magic != RAW).then_some(magic)
            }

            /// CRIU's file name pattern (printf-style: `%u` a number, `%x` a hex number, `%s`
            /// a word).
            pub fn file_pattern(self) -> &'static str {
                match self {
                    $(ImageKind::$kind => $pattern,)*
                }
            }

            /// The message of the image's first entry (`None` for raw images).
            pub fn first_message(self) -> Option<MessageType> {
                match self {
                    $(ImageKind::$kind => $first,)*
                }
            }
        }
    };
}

use MessageType as M;

kinds! {
    Inventory = 0x5831_3116, "inventory.img", Some(M::InventoryEntry), "what the dump holds";
    Stats = 0x5709_3306, "stats-%s", Some(M::StatsEntry), "dump or restore statistics";
    IrmapCache = 0x5700_4059, "irmap-cache", Some(M::IrmapCacheEntry), "inotify path cache";
    Core = 0x5505_3847, "core-%u.img", Some(M::CoreEntry), "a task's registers and state";
    Ids = 0x5443_2030, "ids-%u.img", Some(M::TaskKobjIdsEntry), "a task's namespace and object ids";
    Mm = 0x5749_2820, "mm-%u.img", Some(M::MmEntry), "a task's address space and VMAs";
    Creds = 0x5402_3547, "creds-%u.img", Some(M::CredsEntry), "a task's credentials";
    Fs = 0x5140_3912, "fs-%u.img", Some(M::FsEntry), "a task's root and cwd";
    Pagemap = 0x5608_4025, "pagemap-%lu.img", Some(M::PagemapHead), "where a task's pages are";
    ShmemPagemap = 0x5608_4025, "pagemap-shmem-%lu.img", Some(M::PagemapHead), "where shared memory pages are";
    Utsns = 0x5447_3203, "utsns-%u.img", Some(M::UtsnsEntry), "host and domain name";
    Mnts = 0x5556_3928, "mountpoints-%u.img", Some(M::MntEntry), "a mount namespace's mounts";
    Userns = 0x5547_4906, "userns-%u.img", Some(M::UsernsEntry), "user namespace id maps";
    Timens = 0x4311_4433, "timens-%u.img", Some(M::TimensEntry), "time namespace offsets";
    Pidns = 0x6115_7326, "pidns-%u.img", Some(M::PidnsEntry), "pid namespace";
    IpcVar = 0x5311_5007, "ipcns-var-%u.img", Some(M::IpcVarEntry), "IPC namespace settings";
    IpcnsShm = 0x4628_3044, "ipcns-shm-%u.img", Some(M::IpcShmEntry), "SysV shared memory, with contents";
    IpcnsMsg = 0x5545_3737, "ipcns-msg-%u.img", Some(M::IpcMsgEntry), "SysV message queues, with messages";
    IpcnsSem = 0x5957_3019, "ipcns-sem-%u.img", Some(M::IpcSemEntry), "SysV semaphores, with values";
    Netdev = 0x5737_3951, "netdev-%u.img", Some(M::NetDeviceEntry), "network devices";
    Ifaddr = RAW, "ifaddr-%u.img", None, "raw: `ip addr save` output";
    Route = RAW, "route-%u.img", None, "raw: `ip route save` output";
    Route6 = RAW, "route6-%u.img", None, "raw: `ip -6 route save` output";
    Rule = RAW, "rule-%u.img", None, "raw: `ip rule save` output";
    Iptables = RAW, "iptables-%u.img", None, "raw: `iptables-save` output";
    Ip6tables = RAW, "ip6tables-%u.img", None, "raw: `ip6tables-save` output";
    Nftables = RAW, "nftables-%u.img", None, "raw: nftables ruleset";
    Netns = 0x5593_3752, "netns-%u.img", Some(M::NetnsEntry), "network namespace settings";
    NetnfCt = RAW, "netns-ct-%u.img", None, "raw: conntrack entries";
    NetnfExp = RAW, "netns-exp-%u.img", None, "raw: conntrack expectations";
    Pstree = 0x5027_3030, "pstree.img", Some(M::PstreeEntry), "the process tree";
    GhostFile = 0x5258_3605, "ghost-file-%x.img", Some(M::GhostFileEntry), "an open but deleted file, with contents";
    TcpStream = 0x5146_5506, "tcp-stream-%x.img", Some(M::TcpStreamEntry), "a TCP connection, with its queues";
    Fdinfo = 0x5621_3732, "fdinfo-%u.img", Some(M::FdinfoEntry), "a task's descriptors";
    Files = 0x5630_3138, "files.img", Some(M::FileEntry), "every open file object";
    SkQueues = 0x5626_4026, "sk-queues.img", Some(M::SkPacketEntry), "queued socket packets, with data";
    PipesData = 0x5645_3709, "pipes-data.img", Some(M::PipeDataEntry), "pipe contents";
    FifoData = 0x5933_3054, "fifo-data.img", Some(M::PipeDataEntry), "FIFO contents";
    TtyInfo = 0x5945_3036, "tty-info.img", Some(M::TtyInfoEntry), "terminal settings";
    TtyData = 0x5941_3026, "tty-data.img", Some(M::TtyDataEntry), "unread terminal input";
    RemapFpath = 0x5913_3954, "remap-fpath.img", Some(M::RemapFilePathEntry), "remapped file paths";
    Cgroup = 0x5938_3330, "cgroup.img", Some(M::CgroupEntry), "cgroups and their properties";
    FileLocks = 0x5432_3616, "filelocks.img", Some(M::FileLockEntry), "file locks";
    Seccomp = 0x6441_3049, "seccomp.img", Some(M::SeccompEntry), "seccomp filters";
    Apparmor = 0x5942_3047, "apparmor.img", Some(M::ApparmorEntry), "AppArmor namespaces and policies";
    MemfdInode = 0x4845_3499, "memfd.img", Some(M::MemfdInodeEntry), "memfd inodes";
    BpfmapFile = 0x5750_6142, "bpfmap-file.img", Some(M::BpfmapFileEntry), "BPF maps";
    BpfmapData = 0x6432_4033, "bpfmap-data.img", Some(M::BpfmapDataEntry), "BPF map keys and values";
    TmpfsImg = RAW, "tmpfs-%u.tar.gz.img", None, "raw: a tmpfs mount's files (gzip tar)";
    TmpfsDev = RAW, "tmpfs-dev-%u.tar.gz.img", None, "raw: a tmpfs mount's files (gzip tar)";
    BinfmtMisc = 0x6734_3323, "binfmt-misc.img", Some(M::BinfmtMiscEntry), "binfmt_misc entries";
    BinfmtMiscOld = 0x6734_3323, "binfmt-misc-%u.img", Some(M::BinfmtMiscEntry), "binfmt_misc entries (older name)";
    Pages = RAW, "pages-%u.img", None, "raw: memory pages, as pagemap images place them";
    Sigact = 0x5534_4201, "sigacts-%u.img", Some(M::SaEntry), "signal handlers (older images)";
    Vmas = 0x5412_3737, "vmas-%u.img", Some(M::VmaEntry), "VMAs (older images)";
    Rlimit = 0x5711_3925, "rlimit-%u.img", Some(M::RlimitEntry), "resource limits (older images)";
    Itimers = 0x5746_4056, "itimers-%u.img", Some(M::ItimerEntry), "interval timers (older images)";
    PosixTimers = 0x5260_3957, "posix-timers-%u.img", Some(M::PosixTimerEntry), "POSIX timers (older images)";
    Cpuinfo = 0x6140_4013, "cpuinfo.img", Some(M::CpuinfoEntry), "CPU features";
    Signal = 0x5925_5647, "signal-s-%u.img", Some(M::SiginfoEntry), "a process's pending signals";
    Psignal = 0x5925_5647, "signal-p-%u.img", Some(M::SiginfoEntry), "a thread's pending signals";
    InotifyWd = 0x5456_2009, "inotify-wd.img", Some(M::InotifyWdEntry), "inotify watches (older images)";
    FanotifyMark = 0x5650_6035, "fanotify-mark.img", Some(M::FanotifyMarkEntry), "fanotify marks (older images)";
    EventpollTfd = 0x4443_3746, "eventpoll-tfd.img", Some(M::EventpollTfdEntry), "epoll targets (older images)";
    RegFiles = 0x5036_3636, "reg-files.img", Some(M::RegFileEntry), "regular files (older images)";
    Inetsk = 0x5644_3851, "inetsk.img", Some(M::InetSkEntry), "inet sockets (older images)";
    NsFiles = 0x6139_4011, "ns-files.img", Some(M::NsFileEntry), "namespace files (older images)";
    Packetsk = 0x6045_4618, "packetsk.img", Some(M::PacketSockEntry), "packet sockets (older images)";
    NetlinkSk = 0x5800_5614, "netlinksk.img", Some(M::NetlinkSkEntry), "netlink sockets (older images)";
    EventfdFile = 0x4452_3722, "eventfd.img", Some(M::EventfdFileEntry), "eventfds (older images)";
    EventpollFile = 0x4502_3858, "eventpoll.img", Some(M::EventpollFileEntry), "epolls (older images)";
    Signalfd = 0x5732_3820, "signalfd.img", Some(M::SignalfdEntry), "signalfds (older images)";
    Tunfile = 0x5714_3751, "tunfile.img", Some(M::TunfileEntry), "tun files (older images)";
    Timerfd = 0x5049_3712, "timerfd.img", Some(M::TimerfdEntry), "timerfds (older images)";
    InotifyFile = 0x4842_4431, "inotify.img", Some(M::InotifyFileEntry), "inotifies (older images)";
    FanotifyFile = 0x5509_6122, "fanotify.img", Some(M::FanotifyFileEntry), "fanotifies (older images)";
    ExtFiles = 0x5925_5641, "ext-files.img", Some(M::ExtFileEntry), "external files (older images)";
    Unixsk = 0x5437_3943, "unixsk.img", Some(M::UnixSkEntry), "unix sockets (older images)";
    Fifo = 0x5836_4939, "fifo.img", Some(M::FifoEntry), "FIFOs (older images)";
    Pipes = 0x5651_3555, "pipes.img", Some(M::PipeEntry), "pipes (older images)";
    TtyFiles = 0x5943_3025, "tty.img", Some(M::TtyFileEntry), "terminals (older images)";
    Pidfd = 0x5443_5556, "pidfd.img", Some(M::PidfdEntry), "pidfds (older images)";
    Autofs = 0x4935_3943, "autofs-%u.img", Some(M::AutofsEntry), "autofs mounts";
}

impl ImageKind {
    /// True for images without framing (no magic, no entries): pages, tarballs, `ip` and
    /// iptables output.
    pub fn is_raw(self) -> bool {
        self.magic().is_none()
    }

    /// What CRIU writes before the image's own magic.
    pub fn header(self) -> Header {
        match self {
            ImageKind::Inventory => Header::None,
            ImageKind::Stats | ImageKind::IrmapCache => Header::Service,
            k if k.is_raw() => Header::None,
            _ => Header::Common,
        }
    }

    /// The kind with this magic (for magics several kinds share, the first in CRIU's order:
    /// [`ImageKind::Pagemap`], [`ImageKind::Signal`], [`ImageKind::BinfmtMisc`]).
    pub fn from_magic(magic: u32) -> Option<ImageKind> {
        ImageKind::ALL
            .iter()
            .copied()
            .find(|k| k.magic() == Some(magic))
    }

    /// The kind whose file name pattern `name` matches (directories are ignored).
    pub fn from_file_name(name: &str) -> Option<ImageKind> {
        let base = name.rsplit('/').next().unwrap_or(name);
        ImageKind::ALL
            .iter()
            .copied()
            .find(|k| matches_pattern(k.file_pattern(), base))
    }

    /// The kind of an image named `name` whose magic is `magic`: by the magic, the name only
    /// choosing between the kinds that share it.
    pub fn identify(name: &str, magic: u32) -> Option<ImageKind> {
        match ImageKind::from_file_name(name) {
            Some(k) if k.magic() == Some(magic) => Some(k),
            _ => ImageKind::from_magic(magic),
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_pattern())
    }
}

/// Matches CRIU's printf-style patterns: `%u`, `%lu`, `%d`, `%ld` (`-`? digits), `%x` (hex
/// digits), `%s` (one or more characters but `/`).
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('%') else {
        return pattern == name;
    };
    let Some(name) = name.strip_prefix(head) else {
        return false;
    };
    let (conv, tail) = match rest.strip_prefix('l') {
        Some(r) => r.split_at(1),
        None => rest.split_at(1),
    };
    let accepts: fn(&str) -> bool = match conv {
        "u" => |s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
        "d" => |s| {
            let s = s.strip_prefix('-').unwrap_or(s);
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
        },
        "x" => |s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "s" => |s| !s.is_empty() && !s.contains('/'),
        _ => return false,
    };
    // Every pattern has at most one conversion: the rest of the name must be the tail.
    name.strip_suffix(tail).is_some_and(accepts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_magics() {
        let k = |n| ImageKind::from_file_name(n);
        assert_eq!(k("core-1.img"), Some(ImageKind::Core));
        assert_eq!(k("checkpoint/pagemap-42.img"), Some(ImageKind::Pagemap));
        assert_eq!(k("pagemap-shmem-7.img"), Some(ImageKind::ShmemPagemap));
        assert_eq!(k("pages-3.img"), Some(ImageKind::Pages));
        assert_eq!(k("tmpfs-dev-81.tar.gz.img"), Some(ImageKind::TmpfsDev));
        assert_eq!(k("tmpfs-81.tar.gz.img"), Some(ImageKind::TmpfsImg));
        assert_eq!(k("netns-ct-9.img"), Some(ImageKind::NetnfCt));
        assert_eq!(k("netns-9.img"), Some(ImageKind::Netns));
        assert_eq!(k("ghost-file-1f.img"), Some(ImageKind::GhostFile));
        assert_eq!(k("stats-dump"), Some(ImageKind::Stats));
        assert_eq!(k("binfmt-misc.img"), Some(ImageKind::BinfmtMisc));
        assert_eq!(k("binfmt-misc-2.img"), Some(ImageKind::BinfmtMiscOld));
        assert_eq!(k("core-.img"), None);
        assert_eq!(k("core-1x.img"), None);
        assert_eq!(k("descriptors.json"), None);
        assert_eq!(
            ImageKind::identify("signal-p-3.img", 0x5925_5647),
            Some(ImageKind::Psignal)
        );
        assert_eq!(
            ImageKind::identify("renamed", 0x5925_5647),
            Some(ImageKind::Signal)
        );
        // The name never overrides the magic.
        assert_eq!(
            ImageKind::identify("core-1.img", 0x5630_3138),
            Some(ImageKind::Files)
        );
        assert_eq!(ImageKind::identify("core-1.img", 0), None);
        for &kind in ImageKind::ALL {
            assert_eq!(kind.is_raw(), kind.first_message().is_none(), "{kind}");
            let name = ["%lu", "%u", "%d", "%x", "%s"]
                .iter()
                .fold(kind.file_pattern().to_string(), |n, c| n.replace(c, "1"));
            assert_eq!(ImageKind::from_file_name(&name), Some(kind), "{name}");
            if let Some(m) = kind.magic() {
                assert_eq!(ImageKind::identify(&name, m), Some(kind), "{name}");
            }
        }
        assert_eq!(ImageKind::Inventory.header(), Header::None);
        assert_eq!(ImageKind::Stats.header(), Header::Service);
        assert_eq!(ImageKind::Files.header(), Header::Common);
        assert_eq!(ImageKind::Pages.header(), Header::None);
    }
}
