//! What a file's bytes say about a photo without decoding its pixels: whether it is an image we can
//! caption, its content hash, its pixel size from the header and its EXIF facts. Discovery asks
//! this once per settled file; the worker decodes later.

use std::io::Cursor;
use std::path::Path;

use super::decode::raw_facts;
use super::exif::{read_exif, ExifInfo};
use super::kind::{class_by_extension, has_raw_extension, sniff_bytes, FileClass, ImageKind};

/// A photo as the catalog records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    /// blake3 of the bytes, lowercase hex: the content's identity.
    pub hash: String,
    /// Pixel size from the header (a RAW's is its embedded preview's, the pixels captioned,
    /// before orientation); `None` when the header cannot be read (the worker reports why).
    pub size: Option<(u32, u32)>,
    pub exif: ExifInfo,
}

/// The verdict on one file's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Photo(Probed),
    /// Not an image by content (a name we do not know and no image magic).
    NotImage,
    /// An image we have no decoder for (HEIC, AVIF, JXL, a RAW without a usable preview):
    /// queueing it would only fill the queue with failures.
    NoDecoder(Option<ImageKind>),
}

/// Probes a whole file's `bytes`; `path` is its name (the extension refines a TIFF into a RAW
/// and lets a known image name through even when its bytes are broken, so its failure shows).
pub fn probe(bytes: &[u8], path: &Path) -> Probe {
    let by_name = path
        .file_name()
        .map_or(FileClass::Unknown, class_by_extension);
    let kind = sniff_bytes(bytes);
    if by_name != FileClass::Image && kind.is_none() {
        return Probe::NotImage;
    }
    let hash = || blake3::hash(bytes).to_hex().to_string();
    if has_raw_extension(path)
        || matches!(
            kind,
            Some(ImageKind::Raw | ImageKind::Heic | ImageKind::Avif | ImageKind::Jxl)
        )
    {
        // Camera RAW is captioned from its embedded JPEG preview (media::raw): a RAW's own IFD0
        // is often a thumbnail, and the `image` crate reads no RAW header.
        return match raw_facts(bytes, path) {
            Some((preview, exif)) => Probe::Photo(Probed {
                hash: hash(),
                size: Some((preview.width, preview.height)),
                exif,
            }),
            None => Probe::NoDecoder(kind),
        };
    }
    Probe::Photo(Probed {
        hash: hash(),
        size: header_size(bytes),
        exif: read_exif(bytes),
    })
}

/// Pixel size from the image header alone; `None` for formats the `image` crate cannot read
/// or broken headers.
pub fn header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::new(w, h)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn a_png_is_a_photo_with_its_header_size_and_hash() {
        let bytes = png(7, 5);
        let Probe::Photo(p) = probe(&bytes, Path::new("x/a.png")) else {
            panic!("not a photo")
        };
        assert_eq!(p.size, Some((7, 5)));
        assert_eq!(p.hash, blake3::hash(&bytes).to_hex().to_string());
        assert_eq!(p.exif, ExifInfo::default());
        // Content wins over an unknown name.
        assert!(matches!(probe(&bytes, Path::new("a.bin")), Probe::Photo(_)));
    }

    #[test]
    fn names_and_magic_decide_what_is_not_captioned() {
        assert_eq!(probe(b"hello", Path::new("notes.dat")), Probe::NotImage);
        // A known image name with broken bytes is recorded, so its failure is visible.
        let Probe::Photo(p) = probe(b"", Path::new("empty.jpg")) else {
            panic!("a zero-byte .jpg is a photo to record")
        };
        assert_eq!(p.size, None);
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        assert_eq!(
            probe(heic, Path::new("a.heic")),
            Probe::NoDecoder(Some(ImageKind::Heic))
        );
        // A RAW without an embedded preview.
        assert_eq!(
            probe(b"II*\0\x08\0\0\0", Path::new("a.nef")),
            Probe::NoDecoder(Some(ImageKind::Tiff))
        );
    }
}
