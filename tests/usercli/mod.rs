//! Integration tests of what a user touches on a filled catalog: `search`, `status`, `retry`,
//! `rescan`, `export`. The catalog is built through the `Catalog` API with realistic captions and
//! labels (no model involved); the real `captiond` binary runs as a child process in a scrubbed
//! environment with a fresh temp dir per test. `support` is the harness.

mod support;

mod concurrent;
mod export;
mod reprocess;
mod retry_rescan;
mod search;
mod status;
