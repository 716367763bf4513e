//! Integration tests of what installs and checks captiond on a machine: `service
//! install|uninstall|status` (units verified by `systemd-analyze verify`, the launchd plist read
//! back by Python's plistlib, install/status against stand-in systemctl/launchctl scripts),
//! `doctor` on healthy and broken setups, shell completions and the man page. The real binary
//! runs as a child in a scrubbed environment with a fresh temp dir as HOME; `support` is the
//! harness.
//!
//! External tools: `systemd-analyze` (Debian package `systemd`) and `python3`. Without them
//! the tests that need them are skipped with a note, except under CI=true, where they fail.

mod support;

mod completions;
mod doctor;
mod install;
mod plist;
mod units;
