//! Locating CRIU (`Criu::locate`): `$REEL_CRIU`, else the pinned prefix, else `PATH`.
//! One test in its own binary, because it changes the process environment. Needs root and
//! the pinned CRIU: it FAILS when either is missing.

use std::path::PathBuf;

use reel_core::criu::{Criu, CriuError, ENV_CRIU};
use reel_testkit::require_root;

#[test]
fn locate_honours_reel_criu_then_the_pinned_prefix() {
    require_root();
    let pinned = PathBuf::from(criu_sys::CRIU_PREFIX).join("sbin/criu");

    std::env::set_var(ENV_CRIU, "/nonexistent/reel/criu");
    let err = Criu::locate().expect_err("an explicit REEL_CRIU that is missing is an error");
    std::env::remove_var(ENV_CRIU);
    match &err {
        CriuError::BinaryNotFound { searched } => {
            assert_eq!(searched, &[PathBuf::from("/nonexistent/reel/criu")]);
        }
        other => panic!("expected BinaryNotFound, got {other}"),
    }
    assert!(err.to_string().contains("vendor/criu.sh"), "{err}");

    std::env::set_var(ENV_CRIU, &pinned);
    let c = Criu::locate().unwrap_or_else(|e| panic!("REEL_CRIU={}: {e}", pinned.display()));
    std::env::remove_var(ENV_CRIU);
    assert_eq!(c.binary(), pinned);

    let c = Criu::locate().unwrap_or_else(|e| panic!("the pinned CRIU: {e}"));
    assert_eq!(c.binary(), pinned, "the pinned prefix comes before PATH");
    assert!(c.known_version().at_least(4, 2));
}
