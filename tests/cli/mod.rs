//! Integration tests of the `captiond` command line: the real binary, run as a child process in a
//! scrubbed environment with a fresh temp dir per test, on the committed tiny Florence-2 fixtures.
//! One module per subcommand or area; `support` is the harness.

mod support;

mod caption;
mod caption_config;
mod caption_errors;
mod caption_hub;
mod other_users_files;
mod run_raw;
mod sidecars_rewrite;
