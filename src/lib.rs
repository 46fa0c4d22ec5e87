//! `reel-e2e`: the workspace's root package. It has no code of its own; it hosts the end-to-end
//! tests in `tests/` (which drive the real `reel` binary, real CRIU and real containers) and the
//! benchmarks in `benches/` that compare reel with runc and podman.
