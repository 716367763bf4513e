//! XMP sidecars, read back with the real readers (exiftool, exiv2). One binary, one module per
//! area. Tests that need exiftool/exiv2 skip with a loud message when they are missing, unless `CI`
//! is set: then they fail (CI installs `libimage-exiftool-perl` and `exiv2`).

#[macro_use]
mod support;

mod embed;
mod fixtures;
mod rewrite;
mod safety;
mod write;
