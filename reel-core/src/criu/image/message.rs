//! The messages CRIU's images hold, as a type ([`MessageType`]), a value of any of them
//! ([`AnyMessage`]) and a trait tying each generated type to its [`MessageType`]
//! ([`ImageMessage`]).

use criu_sys::proto;
use prost::Message;

/// A generated message type that is an image entry.
pub trait ImageMessage: Message + Default {
    /// Which one it is.
    const TYPE: MessageType;
}

macro_rules! messages {
    ($($ty:ident => $proto:literal,)*) => {
        /// A message that is an entry of some CRIU image (named as prost names it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum MessageType {
            $(
                #[doc = concat!("`", $proto, "` ([`criu_sys::proto::", stringify!($ty), "`]).")]
                $ty,
            )*
        }

        /// A decoded image entry of any type.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum AnyMessage {
            $(
                #[doc = concat!("`", $proto, "`.")]
                $ty(Box<proto::$ty>),
            )*
        }

        impl MessageType {
            /// The message's name in CRIU's `.proto` files.
            pub fn proto_name(self) -> &'static str {
                match self {
                    $(MessageType::$ty => $proto,)*
                }
            }

            /// Decodes `bytes` as this message.
            pub fn decode(self, bytes: &[u8]) -> Result<AnyMessage, prost::DecodeError> {
                Ok(match self {
                    $(MessageType::$ty => AnyMessage::$ty(Box::new(proto::$ty::decode(bytes)?)),)*
                })
            }
        }

        impl AnyMessage {
            /// Which message this is.
            pub fn message_type(&self) -> MessageType {
                match self {
                    $(AnyMessage::$ty(_) => MessageType::$ty,)*
                }
            }
        }

        $(
            impl ImageMessage for proto::$ty {
                const TYPE: MessageType = MessageType::$ty;
            }
        )*
    };
}

messages! {
    InventoryEntry => "inventory_entry",
    StatsEntry => "stats_entry",
    IrmapCacheEntry => "irmap_cache_entry",
    CoreEntry => "core_entry",
    TaskKobjIdsEntry => "task_kobj_ids_entry",
    MmEntry => "mm_entry",
    CredsEntry => "creds_entry",
    FsEntry => "fs_entry",
    PagemapHead => "pagemap_head",
    PagemapEntry => "pagemap_entry",
    UtsnsEntry => "utsns_entry",
    MntEntry => "mnt_entry",
    UsernsEntry => "userns_entry",
    TimensEntry => "timens_entry",
    PidnsEntry => "pidns_entry",
    IpcVarEntry => "ipc_var_entry",
    IpcShmEntry => "ipc_shm_entry",
    IpcMsgEntry => "ipc_msg_entry",
    IpcMsg => "ipc_msg",
    IpcSemEntry => "ipc_sem_entry",
    NetDeviceEntry => "net_device_entry",
    NetnsEntry => "netns_entry",
    PstreeEntry => "pstree_entry",
    GhostFileEntry => "ghost_file_entry",
    GhostChunkEntry => "ghost_chunk_entry",
    TcpStreamEntry => "tcp_stream_entry",
    FdinfoEntry => "fdinfo_entry",
    FileEntry => "file_entry",
    SkPacketEntry => "sk_packet_entry",
    PipeDataEntry => "pipe_data_entry",
    TtyInfoEntry => "tty_info_entry",
    TtyDataEntry => "tty_data_entry",
    RemapFilePathEntry => "remap_file_path_entry",
    CgroupEntry => "cgroup_entry",
    FileLockEntry => "file_lock_entry",
    SeccompEntry => "seccomp_entry",
    ApparmorEntry => "apparmor_entry",
    MemfdInodeEntry => "memfd_inode_entry",
    BpfmapFileEntry => "bpfmap_file_entry",
    BpfmapDataEntry => "bpfmap_data_entry",
    BinfmtMiscEntry => "binfmt_misc_entry",
    SaEntry => "sa_entry",
    VmaEntry => "vma_entry",
    RlimitEntry => "rlimit_entry",
    ItimerEntry => "itimer_entry",
    PosixTimerEntry => "posix_timer_entry",
    CpuinfoEntry => "cpuinfo_entry",
    SiginfoEntry => "siginfo_entry",
    InotifyWdEntry => "inotify_wd_entry",
    FanotifyMarkEntry => "fanotify_mark_entry",
    EventpollTfdEntry => "eventpoll_tfd_entry",
    RegFileEntry => "reg_file_entry",
    InetSkEntry => "inet_sk_entry",
    NsFileEntry => "ns_file_entry",
    PacketSockEntry => "packet_sock_entry",
    NetlinkSkEntry => "netlink_sk_entry",
    EventfdFileEntry => "eventfd_file_entry",
    EventpollFileEntry => "eventpoll_file_entry",
    SignalfdEntry => "signalfd_entry",
    TunfileEntry => "tunfile_entry",
    TimerfdEntry => "timerfd_entry",
    InotifyFileEntry => "inotify_file_entry",
    FanotifyFileEntry => "fanotify_file_entry",
    ExtFileEntry => "ext_file_entry",
    UnixSkEntry => "unix_sk_entry",
    FifoEntry => "fifo_entry",
    PipeEntry => "pipe_entry",
    TtyFileEntry => "tty_file_entry",
    PidfdEntry => "pidfd_entry",
    AutofsEntry => "autofs_entry",
}
