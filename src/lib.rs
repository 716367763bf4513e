//! captiond: captions a photo library with Florence-2 (on candle), keeps the results in a catalog and
//! writes them into XMP sidecars. The binary is a thin CLI over this library so tests can call in.

pub mod catalog;
pub mod clean;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod errors;
pub mod export;
pub mod library;
pub mod media;
pub mod memory;
pub mod pipeline;
pub mod progress;
pub mod service;
pub mod sidecar;
