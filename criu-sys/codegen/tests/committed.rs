//! What `criu-sys/src/generated/` holds is exactly what the pinned CRIU generates. Needs the
//! pinned CRIU (`vendor/criu.sh`), libclang and protoc: when one is missing this test FAILS.
//!
//! Run: `cargo test -p criu-sys-codegen`

#[test]
fn committed_code_is_what_the_pin_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = criu_sys_codegen::prefix();
    if let Err(e) = criu_sys_codegen::generate(&prefix, tmp.path()) {
        panic!(
            "cannot generate criu-sys's code from {}: {e}",
            prefix.display()
        );
    }
    let committed = criu_sys_codegen::committed_dir();
    let diff = criu_sys_codegen::differences(tmp.path(), &committed);
    assert!(
        diff.is_empty(),
        "{} is not what the pinned CRIU generates: {}.\nRun `{}` and commit the result.",
        committed.display(),
        diff.join(", "),
        criu_sys_codegen::REGENERATE
    );
}
