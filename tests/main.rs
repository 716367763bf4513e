//! The integration tests: one binary (candle, tantivy and arrow link once), one module per area,
//! each running the real `captiond` binary as a child process in a scrubbed environment with a
//! fresh temp dir per test, on the committed tiny Florence-2 fixtures. `common` is the harness
//! every area shares; an area's own `support.rs` holds what only it needs.

mod common;

/// The loopback stand-in for the Hugging Face hub, owned by the model crate's tests
/// (crates/florence2/tests/hub_download.rs) and used here by `cli::caption_hub`, which needs
/// only part of it.
#[allow(dead_code)]
#[path = "../crates/florence2/tests/support/fake_hub.rs"]
mod fake_hub;

/// `captiond caption`, `run --once` on RAW files, `sidecars rewrite`.
mod cli;
/// `captiond run` and `run --once`: the daemon on real folders.
mod daemon;
/// `captiond service`, `doctor`, completions and the man page.
mod service;
/// XMP sidecars read back with exiftool and exiv2.
mod sidecar;
/// What a user touches on a filled catalog: search, status, retry, rescan, export.
mod usercli;
