//! Synthetic camera RAW files for the integration tests (included with
//! `#[path = "../common/raw_file.rs"] mod raw_file;` by the tests that need them): a NEF-like TIFF
//! whose IFD0 holds the camera, the orientation and a small JPEG thumbnail, and whose SubIFD holds
//! the large JPEG preview, followed by bytes standing in for the sensor data.
#![allow(dead_code)]

use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// A baseline JPEG of `w`×`h` whose pixels depend on `seed`.
pub fn jpeg(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w.max(1)) as u8 ^ seed,
            (y * 255 / h.max(1)) as u8,
            seed.wrapping_mul(37),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A little-endian NEF-like file: IFD0 with `Make`, `Model`, `Orientation`, one SubIFD and a
/// JPEG thumbnail (`JPEGInterchangeFormat`); the SubIFD with the preview; then 4 KiB of "raw
/// data".
pub fn nef(preview: &[u8], thumb: &[u8], orientation: u16) -> Vec<u8> {
    const MAKE: &[u8] = b"NIKON CORPORATION\0";
    const MODEL: &[u8] = b"NIKON Z 6\0";
    let ifd0_at = 8u32;
    let ifd0_len = 2 + 12 * 6 + 4;
    let sub_at = ifd0_at + ifd0_len;
    let sub_len = 2 + 12 * 3 + 4;
    let make_at = sub_at + sub_len;
    let model_at = make_at + MAKE.len() as u32;
    let thumb_at = (model_at + MODEL.len() as u32 + 1) & !1;
    let preview_at = thumb_at + thumb.len() as u32;

    let mut out = b"II*\0".to_vec();
    out.extend(ifd0_at.to_le_bytes());
    let entry = |out: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32| {
        out.extend(tag.to_le_bytes());
        out.extend(typ.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(value.to_le_bytes());
    };
    out.extend(6u16.to_le_bytes());
    entry(&mut out, 0x010F, 2, MAKE.len() as u32, make_at);
    entry(&mut out, 0x0110, 2, MODEL.len() as u32, model_at);
    entry(&mut out, 0x0112, 3, 1, orientation as u32);
    entry(&mut out, 0x014A, 4, 1, sub_at);
    entry(&mut out, 0x0201, 4, 1, thumb_at);
    entry(&mut out, 0x0202, 4, 1, thumb.len() as u32);
    out.extend(0u32.to_le_bytes());
    out.extend(3u16.to_le_bytes());
    entry(&mut out, 0x0103, 3, 1, 6);
    entry(&mut out, 0x0201, 4, 1, preview_at);
    entry(&mut out, 0x0202, 4, 1, preview.len() as u32);
    out.extend(0u32.to_le_bytes());
    out.extend(MAKE);
    out.extend(MODEL);
    out.resize(thumb_at as usize, 0);
    out.extend(thumb);
    out.extend(preview);
    out.extend((0..4096u32).map(|i| (i * 31 % 251) as u8));
    out
}
