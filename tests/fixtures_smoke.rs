//! The container fixtures of the test kit (`reel_testkit::containers`) work: one container
//! each from runc, crun and containerd runs the counter, and the counter advances. Needs root;
//! never skips.

use std::time::Duration;

use kit::{BundleBuilder, CriRole, Oci};
use reel_testkit as kit;

const TIMEOUT: Duration = Duration::from_secs(30);

fn oci_counter(runtime: Oci) {
    kit::require_root();
    let bundle = BundleBuilder::new(&format!("smoke-{}", runtime.binary())).build();
    let rootfs = bundle.rootfs();
    let c = kit::run_oci(runtime, None, bundle);
    let pid = c.pid();
    assert!(pid > 1, "init pid {pid}");
    let v = c.wait_counter_advances("/tmp/counter", TIMEOUT);
    // The rootfs copy is the container's root: the host sees the same file.
    let on_host: u64 = std::fs::read_to_string(rootfs.join("tmp/counter"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(on_host >= v, "host copy {on_host} behind {v}");
    // And the counter goes to stdout too.
    kit::wait_for(TIMEOUT, "counter output on stdout", || {
        std::fs::read_to_string(&c.stdout)
            .ok()
            .filter(|s| s.lines().count() > 2)
    });
}

#[test]
fn runc_counter_advances() {
    oci_counter(Oci::Runc);
}

#[test]
fn crun_counter_advances() {
    oci_counter(Oci::Crun);
}

#[test]
fn containerd_counter_advances() {
    kit::require_root();
    let c = kit::run_containerd(
        "smoke-ctr",
        CriRole::Container {
            namespace: "smoke".into(),
            pod: kit::unique_name("pod"),
            name: "counter".into(),
        },
        &[],
    );
    assert!(c.pid() > 1);
    c.wait_counter_advances("/tmp/counter", TIMEOUT);
}

#[test]
fn runc_services_report_ok() {
    kit::require_root();
    let bundle = BundleBuilder::new("smoke-services")
        .args(&["/bin/services", "-s", "/tmp/status", "-p", "8080"])
        .build();
    let c = kit::run_oci(Oci::Runc, None, bundle);
    kit::wait_for(TIMEOUT, "services to report ok 3", || {
        let s = c.read_file("/tmp/status")?;
        assert!(!s.starts_with("fail"), "services failed: {s}");
        let n: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
        (s.starts_with("ok ") && n >= 3).then_some(())
    });
}

#[test]
fn container_guard_deletes_on_panic() {
    kit::require_root();
    let bundle = BundleBuilder::new("smoke-guard").build();
    let id = bundle.id.clone();
    let result = std::panic::catch_unwind(|| {
        let c = kit::run_oci(Oci::Runc, None, bundle);
        c.wait_counter_advances("/tmp/counter", TIMEOUT);
        panic!("on purpose");
    });
    assert!(result.is_err());
    assert!(
        !std::path::Path::new("/run/runc").join(&id).exists(),
        "the guard left runc state for {id}"
    );
    // The guard keeps a panicking container's logs for debugging; these were on purpose.
    for e in std::fs::read_dir(kit::test_dir().join("logs"))
        .unwrap()
        .flatten()
    {
        if e.file_name()
            .to_string_lossy()
            .starts_with(&format!("{id}."))
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
