//! Turning files on disk into pixels the model can see: content sniffing, decoding, EXIF orientation.

pub mod decode;
pub mod exif;
