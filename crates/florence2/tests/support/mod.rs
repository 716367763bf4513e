//! Helpers shared by integration tests that need them (`mod support;`). Not every test binary uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod fake_hub;
pub mod parity;
