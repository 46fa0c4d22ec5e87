//! CRIU's image reader on arbitrary bytes, under every name that changes how it reads
//! (kinds that share a magic, payload framing), and the pagemap index on top of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_core::criu::image::ImageReader;
use reel_core::inspect::PageIndex;

const NAMES: &[&str] = &[
    "pstree.img",
    "core-1.img",
    "mm-1.img",
    "files.img",
    "pagemap-1.img",
    "pagemap-shmem-1.img",
    "ghost-file-1.img",
    "tcp-stream-1.img",
    "sk-queues.img",
    "pipes-data.img",
    "ipcns-msg-1.img",
    "ipcns-sem-1.img",
    "ipcns-shm-1.img",
    "stats-dump",
    "inventory.img",
];

fuzz_target!(|data: &[u8]| {
    for name in NAMES {
        if let Ok(mut r) = ImageReader::from_bytes(data, *name) {
            while let Ok(Some(mut e)) = r.next_entry() {
                let _ = e.decode_any();
                let _ = e.read_payload(1 << 20);
            }
        }
    }
    for page_size in [4096, 65536] {
        let _ = PageIndex::from_image(data, "pagemap-1.img", 1, page_size);
    }
});
