use super::*;
use criu_sys::proto::{
    FileEntry, GhostChunkEntry, GhostFileEntry, InventoryEntry, IpcMsg, IpcMsgEntry, PipeDataEntry,
    StatsEntry,
};

fn file(id: u32) -> FileEntry {
    FileEntry {
        id,
        ..Default::default()
    }
}

fn image(kind: ImageKind, write: impl FnOnce(&mut ImageWriter<Vec<u8>>)) -> Vec<u8> {
    let mut w = ImageWriter::new(Vec::new(), kind, "test").unwrap();
    write(&mut w);
    w.finish().unwrap()
}

fn files_image() -> Vec<u8> {
    image(ImageKind::Files, |w| {
        w.write_entry(&file(1)).unwrap();
        w.write_entry(&file(2)).unwrap();
    })
}

fn err(bytes: &[u8], name: &str) -> ImageError {
    let mut r = match ImageReader::from_bytes(bytes, name) {
        Ok(r) => r,
        Err(e) => return e,
    };
    loop {
        match r.next_entry() {
            Ok(Some(e)) => {
                if let Err(e) = e.decode_any() {
                    return e;
                }
            }
            Ok(None) => panic!("{name}: read without an error"),
            Err(e) => return e,
        }
    }
}

#[test]
fn round_trip() {
    let img = files_image();
    assert_eq!(&img[..8], &[0x19, 0x43, 0x56, 0x54, 0x38, 0x31, 0x30, 0x56]);
    let mut r = ImageReader::from_bytes(&img, "files.img").unwrap();
    assert_eq!(r.kind(), ImageKind::Files);
    r.expect_kind(ImageKind::Files).unwrap();
    assert!(matches!(
        r.expect_kind(ImageKind::Core),
        Err(ImageError::WrongKind { .. })
    ));
    assert_eq!(
        r.read_entries::<FileEntry>().unwrap(),
        vec![file(1), file(2)]
    );
    assert_eq!(r.offset(), img.len() as u64);
    assert!(r.next_entry().unwrap().is_none());

    // The inventory has no first word, the statistics the service one.
    let inv = image(ImageKind::Inventory, |w| {
        w.write_entry(&InventoryEntry::default()).unwrap()
    });
    assert_eq!(&inv[..4], &0x5831_3116u32.to_le_bytes());
    let mut r = ImageReader::from_bytes(&inv, "inventory.img").unwrap();
    assert_eq!(r.kind(), ImageKind::Inventory);
    assert_eq!(r.read_entries::<InventoryEntry>().unwrap().len(), 1);
    let stats = image(ImageKind::Stats, |w| {
        w.write_entry(&StatsEntry::default()).unwrap()
    });
    assert_eq!(&stats[..4], &IMG_SERVICE_MAGIC.to_le_bytes());
    let r = ImageReader::from_bytes(&stats, "stats-dump").unwrap();
    assert_eq!(r.kind(), ImageKind::Stats);

    // Entries written raw stay byte for byte.
    let mut r = ImageReader::from_bytes(&img, "files.img").unwrap();
    let copy = image(ImageKind::Files, |w| {
        while let Some(e) = r.next_entry().unwrap() {
            assert_eq!(e.message_type(), MessageType::FileEntry);
            assert_eq!(e.payload_len(), Some(0));
            w.write_raw_entry(e.bytes()).unwrap();
        }
    });
    assert_eq!(copy, img);
}

#[test]
fn errors_name_the_image_the_offset_and_what_was_expected() {
    let img = files_image();
    match err(&img[..2], "files.img") {
        ImageError::Truncated {
            name,
            offset: 0,
            wanted: 4,
            got: 2,
            ..
        } => assert_eq!(name, "files.img"),
        e => panic!("truncated magic: {e:?}"),
    }
    let e = err(&img[..6], "files.img");
    assert!(
        matches!(
            e,
            ImageError::Truncated {
                offset: 4,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );

    let mut bad = img.clone();
    bad[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    let e = err(&bad, "x.img");
    assert!(
        matches!(
            e,
            ImageError::UnknownMagic {
                offset: 4,
                magic: 0xdead_beef,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("0xdeadbeef"), "{e}");
    let e = err(&[0; 8], "x.img");
    assert!(
        matches!(e, ImageError::UnknownMagic { magic: 0, .. }),
        "{e:?}"
    );

    let e = err(&img[..10], "files.img");
    assert!(
        matches!(
            e,
            ImageError::Truncated {
                offset: 8,
                wanted: 4,
                got: 2,
                ..
            }
        ),
        "truncated length: {e:?}"
    );

    // A length over the cap is refused before anything is read or allocated.
    let mut huge = img[..8].to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = err(&huge, "files.img");
    assert!(
        matches!(e, ImageError::TooLarge { offset: 8, len, max, .. }
            if len == u64::from(u32::MAX) && max == u64::from(DEFAULT_MAX_ENTRY)),
        "{e:?}"
    );
    let small = Limits {
        max_entry: 1,
        ..Limits::default()
    };
    let mut r = ImageReader::with_limits(&img[..], "files.img", small).unwrap();
    assert!(matches!(
        r.next_entry(),
        Err(ImageError::TooLarge { what: "entry", .. })
    ));
    let few = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    let mut r = ImageReader::with_limits(&img[..], "files.img", few).unwrap();
    assert!(r.next_entry().unwrap().is_some());
    assert!(matches!(
        r.next_entry(),
        Err(ImageError::TooManyEntries { max: 1, .. })
    ));

    // A length beyond the input.
    let mut beyond = img[..8].to_vec();
    beyond.extend_from_slice(&1000u32.to_le_bytes());
    beyond.extend_from_slice(&[0; 10]);
    let e = err(&beyond, "files.img");
    assert!(
        matches!(
            e,
            ImageError::Truncated {
                offset: 12,
                wanted: 1000,
                got: 10,
                ..
            }
        ),
        "{e:?}"
    );

    // Garbage where a message should be.
    let garbage = image(ImageKind::Files, |w| w.write_raw_entry(&[0xff; 7]).unwrap());
    let e = err(&garbage, "files.img");
    assert!(
        matches!(
            e,
            ImageError::Decode {
                offset: 8,
                message: "file_entry",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("file_entry"), "{e}");

    // The wrong message asked for.
    let mut r = ImageReader::from_bytes(&img, "files.img").unwrap();
    let e = r.read_entries::<StatsEntry>().unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::WrongMessage {
                found: "file_entry",
                wanted: "stats_entry",
                ..
            }
        ),
        "{e:?}"
    );

    // Raw images have no entries.
    let e = err(b"\x19\x43\x56\x54", "pages-1.img");
    assert!(
        matches!(
            e,
            ImageError::Raw {
                kind: ImageKind::Pages,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(ImageWriter::new(Vec::new(), ImageKind::Pages, "pages-1.img").is_err());
}

fn pipe_data(id: u32, bytes: u32) -> PipeDataEntry {
    PipeDataEntry {
        pipe_id: id,
        bytes,
        size: None,
    }
}

#[test]
fn payloads() {
    let img = image(ImageKind::PipesData, |w| {
        w.write_entry(&pipe_data(1, 5)).unwrap();
        w.write_payload(b"hello").unwrap();
        w.write_entry(&pipe_data(2, 3)).unwrap();
        w.write_payload(b"abc").unwrap();
        w.write_entry(&pipe_data(3, 0)).unwrap();
    });
    let mut r = ImageReader::from_bytes(&img, "pipes-data.img").unwrap();
    let mut e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.decode::<PipeDataEntry>().unwrap(), pipe_data(1, 5));
    assert_eq!(e.payload_len(), Some(5));
    assert!(matches!(
        e.read_payload(4),
        Err(ImageError::TooLarge {
            what: "payload",
            len: 5,
            max: 4,
            ..
        })
    ));
    assert_eq!(e.read_payload(5).unwrap(), b"hello");
    // The second payload is skipped unread.
    let e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.decode::<PipeDataEntry>().unwrap().pipe_id, 2);
    let e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.payload_len(), Some(0));
    assert!(r.next_entry().unwrap().is_none());

    // A payload cut short, read or skipped.
    let cut = &img[..img.len() - 10];
    let mut r = ImageReader::from_bytes(cut, "pipes-data.img").unwrap();
    r.next_entry().unwrap();
    let mut e = r.next_entry().unwrap().unwrap();
    let mut buf = Vec::new();
    let io = e.payload().read_to_end(&mut buf).unwrap_err();
    assert_eq!(io.kind(), io::ErrorKind::UnexpectedEof);
    let mut r = ImageReader::from_bytes(cut, "fifo-data.img").unwrap();
    assert_eq!(r.kind(), ImageKind::PipesData, "by magic, not by name");
    r.next_entry().unwrap();
    r.next_entry().unwrap();
    let e = r.next_entry().unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::Truncated {
                what: "bytes of payload",
                wanted: 3,
                got: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn ghost_files_and_message_queues() {
    // Contents to the end of the image.
    let ghost = GhostFileEntry {
        mode: 0o100600,
        ..Default::default()
    };
    let img = image(ImageKind::GhostFile, |w| {
        w.write_entry(&ghost).unwrap();
        w.write_payload(b"deleted but open").unwrap();
    });
    let mut r = ImageReader::from_bytes(&img, "ghost-file-1f.img").unwrap();
    let mut e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.payload_len(), None);
    assert!(e.read_payload(3).is_err());
    let mut r = ImageReader::from_bytes(&img, "ghost-file-1f.img").unwrap();
    let mut e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.read_payload(100).unwrap(), b"deleted but open");
    assert!(r.next_entry().unwrap().is_none());

    // In chunks.
    let chunked = GhostFileEntry {
        chunks: Some(true),
        ..ghost
    };
    let chunk = |off, len| GhostChunkEntry { len, off };
    let img = image(ImageKind::GhostFile, |w| {
        w.write_entry(&chunked).unwrap();
        w.write_entry(&chunk(0, 2)).unwrap();
        w.write_payload(b"ab").unwrap();
        w.write_entry(&chunk(4096, 3)).unwrap();
        w.write_payload(b"cde").unwrap();
    });
    let mut r = ImageReader::from_bytes(&img, "ghost-file-2.img").unwrap();
    r.next_entry().unwrap();
    let mut got = Vec::new();
    while let Some(mut e) = r.next_entry().unwrap() {
        let c = e.decode::<GhostChunkEntry>().unwrap();
        got.push((c.off, e.read_payload(c.len).unwrap()));
    }
    assert_eq!(got, vec![(0, b"ab".to_vec()), (4096, b"cde".to_vec())]);

    // A queue of two messages (payloads rounded up to 8), then an empty queue.
    let queue = |qnum| IpcMsgEntry {
        qnum,
        ..Default::default()
    };
    let msg = |msize| IpcMsg { mtype: 1, msize };
    let img = image(ImageKind::IpcnsMsg, |w| {
        w.write_entry(&queue(2)).unwrap();
        w.write_entry(&msg(3)).unwrap();
        w.write_payload(b"abc\0\0\0\0\0").unwrap();
        w.write_entry(&msg(8)).unwrap();
        w.write_payload(b"12345678").unwrap();
        w.write_entry(&queue(0)).unwrap();
    });
    let mut r = ImageReader::from_bytes(&img, "ipcns-msg-9.img").unwrap();
    let mut types = Vec::new();
    while let Some(mut e) = r.next_entry().unwrap() {
        types.push((e.message_type(), e.read_payload(8).unwrap().len()));
    }
    use MessageType as M;
    assert_eq!(
        types,
        vec![
            (M::IpcMsgEntry, 0),
            (M::IpcMsg, 8),
            (M::IpcMsg, 8),
            (M::IpcMsgEntry, 0)
        ]
    );
    // A queue that ends early.
    let cut = image(ImageKind::IpcnsMsg, |w| w.write_entry(&queue(1)).unwrap());
    let e = err(&cut, "ipcns-msg-9.img");
    assert!(
        matches!(
            e,
            ImageError::Truncated {
                what: "more ipc_msg entries",
                wanted: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

/// Every prefix and every one-byte corruption of a valid image is an error or a clean read,
/// never a panic.
#[test]
fn hostile_input_never_panics() {
    let img = image(ImageKind::PipesData, |w| {
        w.write_entry(&pipe_data(1, 5)).unwrap();
        w.write_payload(b"hello").unwrap();
    });
    let read_all = |bytes: &[u8]| {
        let Ok(mut r) = ImageReader::from_bytes(bytes, "pipes-data.img") else {
            return;
        };
        while let Ok(Some(mut e)) = r.next_entry() {
            let _ = e.decode_any();
            let _ = e.read_payload(1 << 20);
        }
    };
    for n in 0..img.len() {
        read_all(&img[..n]);
    }
    for i in 0..img.len() {
        for b in [0x00, 0x7f, 0x80, 0xff] {
            let mut bad = img.clone();
            bad[i] = b;
            read_all(&bad);
        }
    }
}
