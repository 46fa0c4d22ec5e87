//! The `status` flags of CRIU's VMA entries (`mm.img`), as CRIU's `image.h` defines them.

/// The stack.
pub const VMA_AREA_STACK: u32 = 1 << 1;
/// The vsyscall page.
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
/// The vDSO.
pub const VMA_AREA_VDSO: u32 = 1 << 3;
/// The heap.
pub const VMA_AREA_HEAP: u32 = 1 << 5;
/// A private file mapping.
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
/// A shared file mapping.
pub const VMA_FILE_SHARED: u32 = 1 << 7;
/// Shared anonymous memory (its pages in a shmem pagemap).
pub const VMA_ANON_SHARED: u32 = 1 << 8;
/// SysV shared memory.
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
/// The vvar page.
pub const VMA_AREA_VVAR: u32 = 1 << 12;
/// A memfd mapping.
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
