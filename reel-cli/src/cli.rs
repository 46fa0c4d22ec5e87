//! The command line: verb, then noun, as kubectl.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// reel: checkpoint running containers with CRIU, for incident response.
///
/// reel freezes a container for as short a time as possible, dumps it with CRIU (memory,
/// process tree, files, sockets, timers), lets it run on, and keeps a self-contained archive
/// that checkpointctl can read and runc can restore.
#[derive(Debug, Parser)]
#[command(name = "reel", disable_version_flag = true, propagate_version = false)]
pub struct Cli {
    /// Print reel's version and the CRIU it will use, then exit.
    #[arg(short = 'V', long = "version", global = false)]
    pub version: bool,

    /// The checkpoint store (default /var/lib/reel/checkpoints).
    #[arg(long, global = true, env = "REEL_STORE", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The CRIU binary to use (default: the pinned one, then `criu` on PATH).
    #[arg(long, global = true, env = "REEL_CRIU", value_name = "PATH")]
    pub criu: Option<PathBuf>,

    /// Only print the result (no progress, no hints on success).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Option<Verb>,
}

/// Output formats of every listing verb.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Show what this host can do, or the workloads on it.
    #[command(subcommand)]
    Get(GetNoun),
    /// Take a checkpoint of a running container (it keeps running).
    #[command(subcommand)]
    Create(CreateNoun),
    /// List the checkpoints in the store.
    #[command(subcommand)]
    List(ListNoun),
    /// Delete checkpoints from the store.
    #[command(subcommand)]
    Delete(DeleteNoun),
    /// Write a checkpoint as one archive to a file, a directory, stdout or S3.
    #[command(subcommand)]
    Export(ExportNoun),
    /// Check an archive against its manifest.
    #[command(subcommand)]
    Verify(VerifyNoun),
    /// See what a checkpointed container was doing, without unpacking it.
    #[command(subcommand)]
    Inspect(InspectNoun),
    /// Bring a checkpoint back to life in a sealed sandbox.
    #[command(subcommand)]
    Restore(RestoreNoun),
    /// Stop a sandbox's processes (their exit is recorded).
    #[command(subcommand)]
    Stop(StopNoun),
    /// Let the processes of a sandbox restored with --paused run.
    #[command(subcommand)]
    Resume(ResumeNoun),
    /// Take evidence out of a checkpoint: the rootfs diff, a deleted file or memfd, an ELF core.
    #[command(subcommand)]
    Extract(ExtractNoun),
    /// What changed between two checkpoints (exit 0: none, 3: some, 1: error, 2: usage).
    #[command(subcommand)]
    Diff(DiffNoun),
    /// Find bytes in the memory of a checkpoint's processes (exit 0: found, 3: none, 1:
    /// error, 2: usage).
    #[command(subcommand)]
    Search(SearchNoun),
}

#[derive(Debug, Subcommand)]
pub enum SearchNoun {
    /// Search the memory of every process (or --pid N) for a literal, a regex, hex bytes or
    /// UTF-16LE text; each hit with its process, address, region and context.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(SearchCheckpoint),
}

#[derive(Debug, Args)]
pub struct SearchCheckpoint {
    /// The checkpoint: a stored id, an archive file or an unpacked directory.
    pub checkpoint: String,
    /// What to look for (a literal unless --regex, --hex or --utf16); not with --strings.
    #[arg(required_unless_present = "strings")]
    pub pattern: Option<String>,
    /// List the printable strings (ASCII, space, tab) of at least --min-len bytes instead, per
    /// process, with their address and region, like `strings -t x`.
    #[arg(long, conflicts_with_all = ["pattern", "regex", "hex", "utf16", "ignore_case", "context"])]
    pub strings: bool,
    /// The shortest string --strings lists (default 6).
    #[arg(long, value_name = "N")]
    pub min_len: Option<usize>,
    /// The pattern is a regular expression over bytes (Unicode off: `.` is any byte).
    #[arg(long, conflicts_with_all = ["hex", "utf16"])]
    pub regex: bool,
    /// The pattern is hex bytes: "de ad be ef".
    #[arg(long, conflicts_with = "utf16")]
    pub hex: bool,
    /// Look for the text as UTF-16LE (Windows-style and Java strings).
    #[arg(long)]
    pub utf16: bool,
    /// ASCII letters match either case.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Only this process (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Only regions of this kind: heap, stack, anon, file, exec, shared, all (repeatable).
    #[arg(long)]
    pub region: Vec<String>,
    /// Only regions with these permissions: `r-x` exactly, or `wx` at least.
    #[arg(long)]
    pub perms: Option<String>,
    /// Only hits in 0xSTART-0xEND.
    #[arg(long)]
    pub address: Option<String>,
    /// Stop after this many hits.
    #[arg(long)]
    pub max_hits: Option<u64>,
    /// Print only how many hits (per process).
    #[arg(long)]
    pub count: bool,
    /// Bytes of context shown on each side of a hit.
    #[arg(short = 'C', long, default_value_t = 16)]
    pub context: usize,
    /// Read members even when they do not match the manifest (the output says so).
    #[arg(long)]
    pub no_verify: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum DiffNoun {
    /// Processes started or ended, argv, environment and credentials changed, files and
    /// sockets opened, closed or changed, mounts, rootfs entries, VMAs added, removed or
    /// re-protected, and how many dumped pages differ, from checkpoint A to checkpoint B.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(DiffCheckpoint),
}

#[derive(Debug, Args)]
pub struct DiffCheckpoint {
    /// The first (earlier) checkpoint: a stored id, an archive file or an unpacked directory.
    pub a: String,
    /// The second (later) checkpoint.
    pub b: String,
    /// List every differing page's address, not only their count per process.
    #[arg(long)]
    pub pages: bool,
    /// Read members even when they do not match the manifest (the output says so).
    #[arg(long)]
    pub no_verify: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum RestoreNoun {
    /// Restore every process of a checkpoint in a sandbox that cannot reach anything real:
    /// its own copy of the images, its own overlay rootfs and private copies of every mount,
    /// its own network namespace with no way out, its own cgroup.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(RestoreCheckpoint),
}

#[derive(Debug, Args)]
pub struct RestoreCheckpoint {
    /// A stored checkpoint's id, or an archive file (.tar, .tar.zst).
    pub checkpoint: String,
    /// The sandbox's name (default: from the checkpoint's).
    #[arg(long)]
    pub name: Option<String>,
    /// Restore the processes stopped, to attach a debugger or strace first; `reel resume
    /// sandbox NAME` lets them run.
    #[arg(long)]
    pub paused: bool,
    /// isolated: lo and a device with the checkpoint's addresses and no way out; none: lo
    /// only (refuses a checkpoint whose sockets need an address).
    #[arg(long, value_enum, default_value_t = NetworkChoice::Isolated)]
    pub network: NetworkChoice,
    /// The image's root filesystem, when the original's base layers are no longer on this host.
    #[arg(long, value_name = "DIR")]
    pub rootfs_base: Option<PathBuf>,
    /// Mount a private copy of SRC at DEST instead of a copy of the original's source.
    #[arg(long = "volume", value_name = "DEST=SRC")]
    pub volumes: Vec<String>,
    /// Memory limit (default: the original's), e.g. 512M.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit in CPUs (default: the original's), e.g. 0.5.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum NetworkChoice {
    Isolated,
    None,
}

/// One sandbox by name.
#[derive(Debug, Args)]
pub struct SandboxName {
    /// The sandbox's name (see `reel list sandbox`).
    pub name: String,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum StopNoun {
    /// Kill a sandbox's processes; their exit is recorded.
    #[command(visible_alias = "sandboxes", visible_alias = "sb")]
    Sandbox(SandboxName),
}

#[derive(Debug, Subcommand)]
pub enum ResumeNoun {
    /// Let the stopped processes of a sandbox run.
    #[command(visible_alias = "sandboxes", visible_alias = "sb")]
    Sandbox(SandboxName),
}

#[derive(Debug, Subcommand)]
pub enum GetNoun {
    /// Everything that decides whether a checkpoint can work on this host.
    #[command(visible_alias = "caps")]
    Capabilities(GetCapabilities),
    /// The containers on this host, by namespace/pod/container.
    #[command(visible_alias = "workload", visible_alias = "wl")]
    Workloads(GetWorkloads),
}

#[derive(Debug, Args)]
pub struct GetCapabilities {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// Namespace selection, as kubectl: `-n NS` (default `default`) or `-A`.
#[derive(Debug, Args, Clone)]
pub struct Namespaces {
    /// The namespace (a Kubernetes namespace, or `runc`, `crun`, `podman`, `containerd` for
    /// containers no pod owns).
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct GetWorkloads {
    #[command(flatten)]
    pub ns: Namespaces,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum CreateNoun {
    /// Checkpoint a pod's container; the container keeps running.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(CreateCheckpoint),
}

/// Flags that change how CRIU dumps the container.
///
/// Boolean flags take the bare form (`--file-locks`) or a value after `=`
/// (`--tcp-established=false`), as podman and runc users type them; a value is never taken
/// from the next argument, so `--file-locks web` checkpoints pod `web`.
#[derive(Debug, Args, Clone)]
pub struct DumpFlags {
    /// Dump established TCP connections with their queued bytes (on by default; the
    /// connections go on). Restore such images with `runc restore --tcp-established`.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tcp_established: bool,
    /// Dump file locks (on by default; `--file-locks=false` to turn off).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub file_locks: bool,
    /// Allow unix sockets connected to named datagram peers outside the container (sockets
    /// whose peer is outside are found and declared external anyway).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ext_unix_sk: bool,
    /// The container's init is a shell job (session attached to a terminal outside).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub shell_job: bool,
    /// Dump open but deleted files by linking them back into the container's filesystem
    /// (it writes there: never a default; deleted files are kept as ghost files instead).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub link_remap: bool,
    /// The largest open-but-deleted file to keep (a CRIU ghost file), e.g. 64M, 1G; 0 refuses
    /// deleted files. A larger one is refused before the container is frozen.
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub ghost_limit: String,
    /// The longest reel may keep the container frozen, e.g. 30s, 2m, 500ms. Past it reel gives
    /// up, thaws the container and says so.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub timeout: String,
    /// Which cgroup freezer to use (auto: the container's v1 freezer if it has one, else v2).
    #[arg(long, value_enum, default_value_t = FreezerChoice::Auto)]
    pub freezer: FreezerChoice,
}

/// How the checkpoint is taken, and where the methods reach their runtimes.
#[derive(Debug, Args, Clone)]
pub struct MethodFlags {
    /// How to checkpoint: direct (reel drives CRIU), containerd (containerd's task
    /// checkpoint), crio (the CRI CheckpointContainer call), k8s-api (the kubelet through the
    /// API server), or auto: direct when the container is on this host and reel can checkpoint
    /// it, else k8s-api when a cluster is configured.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
    #[command(flatten)]
    pub endpoints: Endpoints,
}

/// Where the methods reach containerd, the CRI runtime and the kubelet.
#[derive(Debug, Args, Clone)]
pub struct Endpoints {
    /// containerd's socket (--method containerd).
    #[arg(
        long,
        env = "REEL_CONTAINERD_SOCKET",
        value_name = "PATH",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: PathBuf,
    /// The CRI runtime's socket (--method crio): CRI-O's, or containerd 2.x's.
    #[arg(
        long,
        env = "REEL_CRI_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/crio/crio.sock"
    )]
    pub cri_socket: PathBuf,
    /// Call the kubelet directly (https://NODE:10250) instead of through the API server's node
    /// proxy (--method k8s-api; the kubeconfig's credentials must be allowed nodes/checkpoint).
    #[arg(long, value_name = "URL")]
    pub kubelet: Option<String>,
    /// This host's Kubernetes node name (default: $NODE_NAME, else the host name): a k8s-api
    /// checkpoint of a pod on this node is imported, one elsewhere is only recorded.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MethodArg {
    Auto,
    Direct,
    Containerd,
    Crio,
    #[value(name = "k8s-api")]
    K8sApi,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FreezerChoice {
    Auto,
    V1,
    V2,
}

#[derive(Debug, Args)]
pub struct CreateCheckpoint {
    /// The pod (or, for a container no pod owns, the container's name).
    pub pod: String,
    /// The container in the pod (needed when the pod has several).
    pub container: Option<String>,
    /// The namespace (default `default`).
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub dump: DumpFlags,
    #[command(flatten)]
    pub methods: MethodFlags,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ListNoun {
    /// The checkpoints in the store.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(ListCheckpoint),
    /// The sandboxes of this host (name, checkpoint, pids, state, age).
    #[command(visible_alias = "sandboxes", visible_alias = "sb")]
    Sandbox(ListSandbox),
}

#[derive(Debug, Args)]
pub struct ListSandbox {
    /// One sandbox.
    pub name: Option<String>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ListCheckpoint {
    /// One checkpoint id.
    pub id: Option<String>,
    #[command(flatten)]
    pub ns: Namespaces,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum DeleteNoun {
    /// Delete checkpoints from the store (asks first unless -y).
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(DeleteCheckpoint),
    /// Stop a sandbox and remove everything it made (its data, namespace, cgroup, state).
    #[command(visible_alias = "sandboxes", visible_alias = "sb")]
    Sandbox(SandboxName),
}

#[derive(Debug, Args)]
pub struct DeleteCheckpoint {
    /// The checkpoint id.
    pub id: Option<String>,
    /// Only checkpoints of this namespace.
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Every checkpoint in the store.
    #[arg(long)]
    pub all: bool,
    /// Only checkpoints whose id matches this glob, e.g. 'checkpoint-web-*'.
    #[arg(long, value_name = "GLOB")]
    pub filter: Option<String>,
    /// Only checkpoints older than this, e.g. 7d, 24h, 30m.
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Do not ask.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportNoun {
    /// Export a fresh or stored checkpoint as one archive.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    // Boxed: its many flags would make every `Verb` as large (clippy::large_enum_variant).
    Checkpoint(Box<ExportCheckpoint>),
}

#[derive(Debug, Args)]
pub struct ExportCheckpoint {
    /// The pod to checkpoint now (or use --id for a stored checkpoint).
    pub pod: Option<String>,
    /// The container in the pod.
    pub container: Option<String>,
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Export a stored checkpoint instead of taking a new one.
    #[arg(long, conflicts_with_all = ["pod", "container", "namespace", "keep"])]
    pub id: Option<String>,
    /// A file, an existing directory, `-` for stdout, or s3://bucket/prefix/ (a key ending in
    /// `/` gets the default name `<id>.tar[.zst]`). Default: the current directory.
    #[arg(long, value_name = "DEST")]
    pub dest: Option<String>,
    /// none, fast, default, better or best (zstd levels 1, 3, 9, 19 on every core). A name
    /// ending in .tar means none, .tar.zst means zstd. Default: default.
    #[arg(long, value_name = "LEVEL")]
    pub compress: Option<String>,
    /// Also keep the checkpoint in the store.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub dump: DumpFlags,
    #[command(flatten)]
    pub methods: MethodFlags,
    /// S3 region (default: from the environment or the AWS config, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// An S3-compatible endpoint URL, e.g. https://minio.local:9000 (path-style addressing).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long, value_name = "ALGORITHM")]
    pub s3_sse: Option<String>,
    /// The KMS key for --s3-sse aws:kms.
    #[arg(long, value_name = "KEY_ID")]
    pub s3_sse_kms_key_id: Option<String>,
    /// A PEM bundle of CAs to trust for the S3 endpoint (besides the system's).
    #[arg(long, value_name = "FILE")]
    pub s3_ca: Option<PathBuf>,
    /// Where CRIU writes its images before they are archived (default: the store directory).
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum InspectNoun {
    /// Processes, threads, credentials, files, sockets, mounts, namespaces, timers and the
    /// rootfs diff of a checkpoint (a stored id, a .tar, a .tar.zst or an unpacked
    /// directory; Podman, CRI-O, containerd and kubelet archives too). Without a view flag:
    /// a one-screen summary.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(InspectCheckpoint),
}

#[derive(Debug, Args)]
pub struct InspectCheckpoint {
    /// A stored checkpoint's id, an archive file or an unpacked checkpoint directory.
    pub checkpoint: String,
    /// The process tree: pid, ppid, pgid, sid, threads, state, uid/gid, comm, argv.
    #[arg(long)]
    pub ps: bool,
    /// Every thread: state, the system call it was in, signals, instruction and stack pointers.
    #[arg(long)]
    pub threads: bool,
    /// Each process's environment.
    #[arg(long)]
    pub env: bool,
    /// Credentials: uids, gids, groups, capabilities, no_new_privs, seccomp, LSM label.
    #[arg(long)]
    pub creds: bool,
    /// Open descriptors: type, path, flags, position, size, deleted, memfd name.
    #[arg(long)]
    pub files: bool,
    /// Sockets: family, type, state, addresses, unix peers, TCP queue lengths.
    #[arg(long)]
    pub sockets: bool,
    /// Mounts from CRIU's mount images.
    #[arg(long)]
    pub mounts: bool,
    /// Namespaces and what CRIU saved of them (host name, IPC objects, interfaces).
    #[arg(long)]
    pub ns: bool,
    /// POSIX timers, itimers, timerfds.
    #[arg(long)]
    pub timers: bool,
    /// Every entry of the rootfs diff, with SHA-256 (reads the whole rootfs-diff.tar).
    #[arg(long)]
    pub rootfs: bool,
    /// Every memory region (VMA) as /proc/PID/maps shows it, with the pages the checkpoint
    /// holds, and the memory findings (writable+executable, anonymous executable, modified code).
    #[arg(long)]
    pub maps: bool,
    /// Every view.
    #[arg(long)]
    pub all: bool,
    /// Only this process (and its threads, files, sockets, timers).
    #[arg(long, value_name = "N")]
    pub pid: Option<u32>,
    /// Go on when a member does not match the manifest (the output says so).
    #[arg(long)]
    pub no_verify: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum VerifyNoun {
    /// Recompute every member hash of an archive (a file or a stored id).
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(VerifyCheckpoint),
}

#[derive(Debug, Args)]
pub struct VerifyCheckpoint {
    /// An archive file, or the id of a stored checkpoint.
    pub archive: String,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ExtractNoun {
    /// Write evidence a checkpoint holds to new files (never over existing ones): --rootfs DIR,
    /// --file PID:FD --to FILE, --pid N --core FILE, or --pid N --region 0xADDR --to FILE.
    #[command(visible_alias = "checkpoints", visible_alias = "cp")]
    Checkpoint(ExtractCheckpoint),
}

/// `reel extract checkpoint ID|PATH (--rootfs DIR | --file PID:FD --to FILE | --pid N --core FILE
/// | --pid N --region 0xADDR --to FILE [--rootfs DIR])`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["rootfs", "file", "core", "region"])))]
pub struct ExtractCheckpoint {
    /// A stored checkpoint's id, an archive (.tar, .tar.zst) or an unpacked checkpoint directory.
    pub checkpoint: String,
    /// Unpack the rootfs diff into DIR (new or empty): nothing leaves DIR, symlinks are never
    /// followed, no device node is made, setuid/setgid bits are stripped, deletions are
    /// reported, not applied. With --region: the root to read the unmodified pages of a file
    /// mapping from (by the path the process saw, never leaving DIR).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// The memory region (VMA) of process --pid holding this address, to --to FILE: its dumped
    /// pages; anonymous pages never written are zeros, unmodified pages of a file mapping are
    /// left out (holes) unless --rootfs DIR has the file.
    #[arg(long, value_name = "0xADDR", requires_all = ["pid", "to"])]
    pub region: Option<String>,
    /// With --region: replace FILE if it exists (otherwise refused).
    #[arg(long, requires = "region")]
    pub force: bool,
    /// The contents of a deleted-but-open file or a memfd that process PID held as FD.
    #[arg(long, value_name = "PID:FD", requires = "to")]
    pub file: Option<String>,
    /// Where --file and --region write (a new file, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
    /// The process (pid as the container saw it) whose ELF core --core or region --region
    /// writes.
    #[arg(long, value_name = "N")]
    pub pid: Option<u32>,
    /// Write an ELF core of process --pid to FILE (a new file, mode 0600), for gdb.
    #[arg(long, value_name = "FILE", requires = "pid")]
    pub core: Option<PathBuf>,
    /// Go on when a member does not match the manifest (loudly; the output is then unverified).
    #[arg(long)]
    pub no_verify: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}
