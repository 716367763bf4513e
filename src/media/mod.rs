//! Turning files on disk into pixels the model can see: content sniffing, a header-only probe,
//! decoding, EXIF orientation, and the embedded JPEG preview of camera RAW files.

pub mod decode;
pub mod exif;
pub mod kind;
pub mod probe;
pub mod raw;
