//! Decode stage: file bytes → upright 8-bit RGB pixels, plus the stored size, EXIF orientation and
//! metadata. Inputs are any file the library walk found; outputs feed `florence2::processor`.
//!
//! The RGB conversion mirrors what transformers 5.x does to a PIL image with `do_convert_rgb`
//! (`image_transforms.convert_to_rgb`): images with alpha are alpha-composited onto opaque white
//! with Pillow's integer arithmetic, everything else is `Image.convert("RGB")` (grey replicated,
//! palettes expanded, CMYK converted by the JPEG decoder). 16-bit samples keep their high byte, as
//! Pillow's PNG/TIFF unpackers do for RGB(A) and LA. One deliberate difference: Pillow opens
//! 16-bit greyscale as mode `I;16` and its RGB conversion clips every value above 255, turning
//! nearly every such photo (film scans, for instance) white; we keep the high byte there too, so
//! the model sees the picture. See `DecodeError` for how failures are reported.
//!
//! Size limits are enforced from the header, before any pixel buffer is allocated, so a file whose
//! header claims 60000×60000 pixels fails at once.
//!
//! Camera RAW files (see [`super::raw`]) are decoded from their embedded JPEG preview, under the
//! same limits, with the RAW's own EXIF orientation applied (what photo managers show); the
//! preview's pixels, before that orientation, are the RAW's stored frame. A RAW without a usable
//! preview is [`DecodeError::NoPreview`].

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::exif::{apply_orientation, read_exif, read_exif_block, read_raw_exif, ExifInfo};
use super::raw;

/// Why a file could not be turned into pixels. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path} is not an image in a format we read (JPEG, PNG, TIFF, WebP, GIF, BMP)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {format:?} images of this kind are not supported")]
    Unsupported {
        path: PathBuf,
        format: ImageFormat,
        #[source]
        source: ImageError,
    },
    #[error("{path} is {width}×{height} ({pixels} pixels), over the limit of {max_pixels} pixels")]
    TooManyPixels {
        path: PathBuf,
        width: u32,
        height: u32,
        pixels: u64,
        max_pixels: u64,
    },
    #[error(
        "{path} is {width}×{height}, longer than {max_aspect_ratio} times its width or height: \
         not a photo the model can see (it is resized to a square)"
    )]
    TooElongated {
        path: PathBuf,
        width: u32,
        height: u32,
        max_aspect_ratio: u32,
    },
    #[error("{path} is {size} bytes, over the limit of {limit} bytes for one photo")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path} needs {needed} bytes to decode, over the limit of {limit} bytes")]
    TooMuchMemory {
        path: PathBuf,
        needed: u64,
        limit: u64,
    },
    #[error("{path} is truncated or corrupt ({format:?})")]
    Corrupt {
        path: PathBuf,
        format: ImageFormat,
        #[source]
        source: ImageError,
    },
    #[error("{path} is a camera RAW file with no embedded JPEG preview that we can read")]
    NoPreview { path: PathBuf },
}

impl DecodeError {
    /// Whether the same bytes would fail the same way every time (a limit checked on the file's
    /// size or header): retrying it only wastes attempts.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DecodeError::FileTooLarge { .. }
                | DecodeError::TooElongated { .. }
                | DecodeError::TooManyPixels { .. }
                | DecodeError::TooMuchMemory { .. }
        )
    }
}

/// Caps checked against the header before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width × height accepted. Default 200 MP, above the largest consumer cameras
    /// (~100–150 MP) and panoramas of ordinary size.
    pub max_pixels: u64,
    /// Largest decoder buffer accepted, in bytes. Default 2 GiB: a 16-bit RGBA image at the
    /// pixel limit would need 1.6 GB.
    pub max_bytes_alloc: u64,
    /// Largest file read to be decoded, in bytes. Default 1 GiB, several times the largest
    /// camera files (a 150 MP 16-bit TIFF is ~900 MB): a bigger "photo" is refused before a
    /// byte of it is read, instead of being read into memory on every attempt.
    pub max_file_bytes: u64,
    /// Longest side at most this many times the shortest. Default 100, far beyond any panorama:
    /// the model squeezes every image into a square, and a 199,000,000×1 PNG (580 KB on disk)
    /// would otherwise take gigabytes in the decoder and the resampler's weight tables.
    pub max_aspect_ratio: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: 200_000_000,
            max_bytes_alloc: 2 << 30,
            max_file_bytes: 1 << 30,
            max_aspect_ratio: 100,
        }
    }
}

/// A decoded, upright photo.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Pixels with EXIF orientation applied, 8-bit RGB.
    pub rgb: RgbImage,
    /// Pixel width as stored in the file, before orientation.
    pub stored_width: u32,
    /// Pixel height as stored in the file, before orientation.
    pub stored_height: u32,
    /// EXIF orientation 1..=8 that was applied; 1 if none.
    pub orientation: u16,
    /// The format found by content sniffing (the extension is not trusted); for a camera RAW, that
    /// of its embedded preview (JPEG).
    pub format: ImageFormat,
    /// Date, camera and GPS from EXIF (defaults when absent).
    pub exif: ExifInfo,
}

/// Reads and decodes one file.
pub fn decode_image(path: &Path, limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    let bytes = read_photo(path, limits)?;
    decode_image_bytes_with(&bytes, path, limits)
}

/// Reads a photo file whole, refusing one over [`DecodeLimits::max_file_bytes`] before reading
/// any of it.
pub fn read_photo(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    let read_err = |source| DecodeError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge {
            path: path.to_path_buf(),
            size,
            limit: limits.max_file_bytes,
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Decodes an in-memory file with the default limits; `name_for_errors` is what errors call it.
pub fn decode_image_bytes(
    bytes: &[u8],
    name_for_errors: &Path,
) -> Result<DecodedImage, DecodeError> {
    decode_image_bytes_with(bytes, name_for_errors, &DecodeLimits::default())
}

/// [`decode_image_bytes`] with explicit limits.
pub fn decode_image_bytes_with(
    bytes: &[u8],
    name_for_errors: &Path,
    limits: &DecodeLimits,
) -> Result<DecodedImage, DecodeError> {
    let path = || name_for_errors.to_path_buf();
    if bytes.is_empty() {
        return Err(DecodeError::Empty { path: path() });
    }
    if raw::is_raw(bytes, name_for_errors) {
        return decode_raw(bytes, name_for_errors, limits);
    }
    let stored = decode_stored(bytes, name_for_errors, limits)?;
    let orientation = stored.exif.orientation;
    Ok(stored.upright(orientation))
}

/// What a camera RAW is to the catalog, found without decoding pixels: its embedded preview and
/// its EXIF facts ([`read_raw_exif`]). `None` when `bytes` are no camera RAW ([`raw::is_raw`]) or
/// the RAW has no usable preview.
pub fn raw_facts(bytes: &[u8], name: &Path) -> Option<(raw::Preview, ExifInfo)> {
    if !raw::is_raw(bytes, name) {
        return None;
    }
    let preview = raw::find_preview(bytes)?;
    let exif = read_raw_exif(bytes, preview.container, read_exif(&bytes[preview.range()]));
    Some((preview, exif))
}

/// A RAW: its preview decoded, then turned upright by the RAW's orientation.
fn decode_raw(
    bytes: &[u8],
    name_for_errors: &Path,
    limits: &DecodeLimits,
) -> Result<DecodedImage, DecodeError> {
    let Some(preview) = raw::find_preview(bytes) else {
        return Err(DecodeError::NoPreview {
            path: name_for_errors.to_path_buf(),
        });
    };
    let mut stored = decode_stored(&bytes[preview.range()], name_for_errors, limits)?;
    stored.exif = read_raw_exif(bytes, preview.container, stored.exif);
    let orientation = stored.exif.orientation;
    Ok(stored.upright(orientation))
}

/// Decoded pixels as stored, before orientation.
struct Stored {
    rgb: RgbImage,
    width: u32,
    height: u32,
    format: ImageFormat,
    exif: ExifInfo,
}

impl Stored {
    fn upright(self, orientation: u16) -> DecodedImage {
        DecodedImage {
            rgb: apply_orientation(self.rgb, orientation),
            stored_width: self.width,
            stored_height: self.height,
            orientation,
            format: self.format,
            exif: self.exif,
        }
    }
}

/// Decodes an image file's pixels (no RAW handling, no orientation applied) and reads its EXIF.
fn decode_stored(
    bytes: &[u8],
    name_for_errors: &Path,
    limits: &DecodeLimits,
) -> Result<Stored, DecodeError> {
    let path = || name_for_errors.to_path_buf();
    if bytes.is_empty() {
        return Err(DecodeError::Empty { path: path() });
    }
    let reader = || -> ImageReader<Cursor<&[u8]>> {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .expect("reading from memory cannot fail")
    };
    let Some(format) = reader().format() else {
        return Err(DecodeError::UnknownFormat { path: path() });
    };
    let classify = |source: ImageError| match source {
        ImageError::Unsupported(_) => DecodeError::Unsupported {
            path: path(),
            format,
            source,
        },
        source => DecodeError::Corrupt {
            path: path(),
            format,
            source,
        },
    };

    // Header only: no pixel buffer exists yet.
    let mut header = reader();
    header.no_limits();
    let mut decoder = header.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            path: path(),
            width,
            height,
            pixels,
            max_pixels: limits.max_pixels,
        });
    }
    let (long, short) = (width.max(height) as u64, width.min(height) as u64);
    if short > 0 && long > short * u64::from(limits.max_aspect_ratio.max(1)) {
        return Err(DecodeError::TooElongated {
            path: path(),
            width,
            height,
            max_aspect_ratio: limits.max_aspect_ratio,
        });
    }
    let needed = decoder.total_bytes();
    if needed > limits.max_bytes_alloc {
        return Err(DecodeError::TooMuchMemory {
            path: path(),
            needed,
            limit: limits.max_bytes_alloc,
        });
    }
    if width == 0 || height == 0 {
        return Err(classify(ImageError::Limits(
            image::error::LimitError::from_kind(image::error::LimitErrorKind::DimensionError),
        )));
    }

    // EXIF: the decoder's own block when it has one (it knows every container it reads), else
    // kamadak-exif's container parser on the whole file.
    let exif = match decoder.exif_metadata() {
        Ok(Some(block)) => read_exif_block(&block),
        _ => read_exif(bytes),
    };

    // zune-jpeg fills a cut-off scan with grey instead of failing; Pillow (libjpeg) reports the
    // file as truncated, and so do we: a half-copied photo must not be captioned.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(classify(ImageError::Decoding(
            image::error::DecodingError::new(
                image::error::ImageFormatHint::Exact(ImageFormat::Jpeg),
                "the data ends before the end-of-image marker",
            ),
        )));
    }

    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_bytes_alloc);
    decoder.set_limits(image_limits).map_err(classify)?;
    let image = DynamicImage::from_decoder(decoder).map_err(classify)?;
    Ok(Stored {
        rgb: to_rgb8(image),
        width,
        height,
        format,
        exif,
    })
}

/// Whether a JPEG stream reaches its end-of-image marker. Walks the marker segments (so an EXIF
/// thumbnail's own EOI inside APP1 does not count) and the entropy-coded data after each
/// start-of-scan (where 0xFF is always followed by a stuffed 0x00 or a restart marker).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let len = bytes.len();
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // Expect a marker, allowing fill bytes (0xFF 0xFF …) and stray bytes before it.
        while i < len && bytes[i] != 0xFF {
            i += 1;
        }
        while i < len && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= len {
            return false;
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                if i + 2 > len {
                    return false;
                }
                let seg = u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
                i += seg.max(2);
                if marker == 0xDA {
                    // Entropy-coded data: runs until a real marker.
                    loop {
                        if i + 1 >= len {
                            return false;
                        }
                        if bytes[i] == 0xFF {
                            match bytes[i + 1] {
                                0x00 | 0xD0..=0xD7 => i += 2,
                                0xFF => i += 1,
                                _ => break,
                            }
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
    }
}

/// Pillow's `alpha_composite` of one colour channel over opaque white, in its integer form
/// (7 extra bits of precision, divisions by 255 done with shifts and rounding). For an opaque
/// white background this equals round((c·a + 255·(255 − a)) / 255) for every (c, a), which was
/// checked exhaustively against Pillow 13.
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    const BITS: u32 = 7;
    let (c, a) = (c as u32, a as u32);
    let blend = 255 * (255 - a); // background alpha 255
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << BITS) / outa255;
    let coef2 = 255 * (1 << BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << BITS);
    // SHIFTFORDIV255: ((v >> 8) + v) >> 8.
    ((((tmp >> 8) + tmp) >> 8) >> BITS) as u8
}

/// Converts any decoded image to 8-bit RGB the way the reference does (see the module docs).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let hi = |v: u16| (v >> 8) as u8;
    let unit = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match image {
        DynamicImage::ImageRgb8(img) => img,
        DynamicImage::ImageLuma8(img) => {
            RgbImage::from_fn(w, h, |x, y| image::Rgb([img.get_pixel(x, y)[0]; 3]))
        }
        DynamicImage::ImageLumaA8(img) => RgbImage::from_fn(w, h, |x, y| {
            let [l, a] = img.get_pixel(x, y).0;
            image::Rgb([over_white(l, a); 3])
        }),
        DynamicImage::ImageRgba8(img) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, a] = img.get_pixel(x, y).0;
            image::Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
        }),
        DynamicImage::ImageLuma16(img) => {
            RgbImage::from_fn(w, h, |x, y| image::Rgb([hi(img.get_pixel(x, y)[0]); 3]))
        }
        DynamicImage::ImageLumaA16(img) => RgbImage::from_fn(w, h, |x, y| {
            let [l, a] = img.get_pixel(x, y).0;
            image::Rgb([over_white(hi(l), hi(a)); 3])
        }),
        DynamicImage::ImageRgb16(img) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b] = img.get_pixel(x, y).0;
            image::Rgb([hi(r), hi(g), hi(b)])
        }),
        DynamicImage::ImageRgba16(img) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, a] = img.get_pixel(x, y).0.map(hi);
            image::Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
        }),
        // Float TIFFs: scale 0..1 to 0..255 (no Pillow equivalent worth mirroring).
        DynamicImage::ImageRgb32F(img) => {
            RgbImage::from_fn(w, h, |x, y| image::Rgb(img.get_pixel(x, y).0.map(unit)))
        }
        DynamicImage::ImageRgba32F(img) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, a] = img.get_pixel(x, y).0.map(unit);
            image::Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
        }),
        other => {
            let rgba = other.to_rgba8();
            RgbImage::from_fn(w, h, |x, y| {
                let [r, g, b, a] = rgba.get_pixel(x, y).0;
                image::Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::exif::tests::ExifBuilder;
    use image::{ExtendedColorType, ImageEncoder};

    fn name() -> &'static Path {
        Path::new("photos/test.img")
    }

    /// The reference's images and their recorded RGB, kept with the model crate's goldens.
    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/florence2/tests/fixtures")
            .join(rel)
    }

    fn decoded(rel: &str) -> image::RgbImage {
        decode_image(&fixture(rel), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .rgb
    }

    /// Images whose conversion to RGB the reference recorded (grayscale, RGBA on white, 16-bit,
    /// JPEG decoded by Pillow) must convert the same way here: the model's parity tests start
    /// from those recorded pixels, so this is what ties a photo on disk to them.
    #[test]
    fn rgb_conversion_matches_reference() {
        let path = fixture("golden/tiny-a/manifest.json");
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut checked = 0;
        for (name, info) in m["images"].as_object().unwrap() {
            let Some(rgb) = info["rgb"].as_str() else {
                continue;
            };
            if info["mode"] == "I;16" {
                // Deliberate deviation: Pillow clips 16-bit grayscale at 255 (almost every pixel
                // of a 16-bit scan turns white); we keep the high byte, as Pillow itself does for
                // 16-bit RGB. The 16-bit tests below cover our behaviour.
                continue;
            }
            let ours = decoded(info["path"].as_str().unwrap());
            let theirs = decoded(rgb);
            assert_eq!(ours.dimensions(), theirs.dimensions(), "{name}");
            let max_diff = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            // JPEG decoders may differ by rounding in the IDCT/upsampling; lossless inputs must not.
            let allowed = if info["path"].as_str().unwrap().ends_with(".jpg") {
                8
            } else {
                0
            };
            assert!(
                max_diff <= allowed,
                "{name}: RGB differs by up to {max_diff}"
            );
            checked += 1;
        }
        assert!(checked >= 4, "only {checked} recorded conversions found");
    }

    fn png(
        w: u32,
        h: u32,
        data: &[u8],
        color: ExtendedColorType,
        exif: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = image::codecs::png::PngEncoder::new(&mut out);
        if let Some(exif) = exif {
            enc.set_exif_metadata(exif).unwrap();
        }
        enc.write_image(data, w, h, color).unwrap();
        out
    }

    fn jpeg(img: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
        if let Some(exif) = exif {
            enc.set_exif_metadata(exif).unwrap();
        }
        enc.write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
        out
    }

    fn coded(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 20) as u8, 77])
        })
    }

    #[test]
    fn over_white_matches_pillow_formula() {
        // Spot values computed with PIL.Image.alpha_composite on a white background.
        for (c, a, want) in [
            (0, 0, 255),
            (0, 255, 0),
            (200, 255, 200),
            (0, 128, 127),
            (0, 127, 128),
            (100, 1, 254),
            (17, 200, 68),
            (255, 77, 255),
        ] {
            assert_eq!(over_white(c, a), want, "c={c} a={a}");
        }
        // And the closed form for every pair.
        for c in 0..=255u32 {
            for a in 0..=255u32 {
                let exact = ((c * a + 255 * (255 - a)) as f64 / 255.0).round() as u8;
                assert_eq!(over_white(c as u8, a as u8), exact, "c={c} a={a}");
            }
        }
    }

    #[test]
    fn png_round_trip_and_sniffing() {
        let img = coded(5, 3);
        let bytes = png(5, 3, img.as_raw(), ExtendedColorType::Rgb8, None);
        let d = decode_image_bytes(&bytes, Path::new("mislabelled.jpg")).unwrap();
        assert_eq!(d.format, ImageFormat::Png);
        assert_eq!(d.rgb, img);
        assert_eq!((d.stored_width, d.stored_height, d.orientation), (5, 3, 1));
    }

    #[test]
    fn grey_alpha_and_16_bit_conversions() {
        // L8: replicated.
        let d = decode_image_bytes(&png(2, 1, &[10, 250], ExtendedColorType::L8, None), name())
            .unwrap();
        assert_eq!(d.rgb.as_raw(), &[10, 10, 10, 250, 250, 250]);
        // RGBA8: composited onto white.
        let rgba = [0, 0, 0, 128, 255, 0, 0, 0, 10, 20, 30, 255];
        let d =
            decode_image_bytes(&png(3, 1, &rgba, ExtendedColorType::Rgba8, None), name()).unwrap();
        assert_eq!(d.rgb.as_raw(), &[127, 127, 127, 255, 255, 255, 10, 20, 30]);
        // LA8.
        let d = decode_image_bytes(&png(1, 1, &[0, 127], ExtendedColorType::La8, None), name())
            .unwrap();
        assert_eq!(d.rgb.as_raw(), &[128, 128, 128]);
        // 16-bit: high byte (PNG stores big-endian; the encoder takes native u16 bytes).
        let px: Vec<u8> = [0x1234u16, 0xFF00, 0x00FF]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let d =
            decode_image_bytes(&png(1, 1, &px, ExtendedColorType::Rgb16, None), name()).unwrap();
        assert_eq!(d.rgb.as_raw(), &[0x12, 0xFF, 0x00]);
        let px: Vec<u8> = [0x8000u16].iter().flat_map(|v| v.to_ne_bytes()).collect();
        let d = decode_image_bytes(&png(1, 1, &px, ExtendedColorType::L16, None), name()).unwrap();
        assert_eq!(d.rgb.as_raw(), &[0x80, 0x80, 0x80]);
    }

    #[test]
    fn reference_conversions_of_the_shared_fixture_images() {
        // `<name>.rgb.png` files hold what transformers/Pillow made of each image.
        for (src, want) in [
            ("images/gray_70x50.png", "images/gray_70x50.png.rgb.png"),
            ("images/rgba_64x48.png", "images/rgba_64x48.png.rgb.png"),
            ("images/rgb16_53x41.png", "images/rgb16_53x41.png.rgb.png"),
        ] {
            let (src, want) = (fixture(src), fixture(want));
            if !src.exists() || !want.exists() {
                eprintln!("{} missing; skipping", src.display());
                continue;
            }
            let got = decode_image(&src, &DecodeLimits::default()).unwrap();
            let want = image::open(&want).unwrap().to_rgb8();
            assert_eq!(got.rgb, want, "{}", src.display());
        }
    }

    #[test]
    fn gray16_keeps_the_high_byte_where_pillow_clips() {
        let src = fixture("images/gray16_40x30.png");
        if !src.exists() {
            return;
        }
        let got = decode_image(&src, &DecodeLimits::default()).unwrap();
        let raw = image::open(&src).unwrap().to_luma16();
        for (p, q) in got.rgb.pixels().zip(raw.pixels()) {
            assert_eq!(p.0, [(q[0] >> 8) as u8; 3]);
        }
    }

    #[test]
    fn exif_orientation_is_applied_from_jpeg_and_png() {
        let img = coded(6, 4);
        for o in 1..=8u16 {
            let exif = ExifBuilder::orientation(o).build();
            let bytes = png(
                6,
                4,
                img.as_raw(),
                ExtendedColorType::Rgb8,
                Some(exif.clone()),
            );
            let d = decode_image_bytes(&bytes, name()).unwrap();
            assert_eq!(d.orientation, o, "png orientation {o}");
            assert_eq!((d.stored_width, d.stored_height), (6, 4));
            assert_eq!(d.rgb, apply_orientation(img.clone(), o));

            let bytes = jpeg(&img, Some(exif));
            let d = decode_image_bytes(&bytes, name()).unwrap();
            assert_eq!(d.format, ImageFormat::Jpeg);
            assert_eq!(d.orientation, o, "jpeg orientation {o}");
            let want = if (5..=8).contains(&o) { (4, 6) } else { (6, 4) };
            assert_eq!(d.rgb.dimensions(), want);
        }
    }

    #[test]
    fn jpeg_exif_metadata_is_read() {
        let mut b = ExifBuilder::orientation(1);
        b.make = Some("FUJIFILM");
        b.date = Some("2024:02:29 23:59:59");
        let d = decode_image_bytes(&jpeg(&coded(3, 3), Some(b.build())), name()).unwrap();
        assert_eq!(d.exif.camera_make.as_deref(), Some("FUJIFILM"));
        assert_eq!(d.exif.date_taken.as_deref(), Some("2024-02-29T23:59:59"));
    }

    #[test]
    fn errors_name_the_file_and_cause() {
        let err = decode_image_bytes(b"", name()).unwrap_err();
        assert!(matches!(err, DecodeError::Empty { .. }));
        assert!(err.to_string().contains("photos/test.img"), "{err}");

        let err = decode_image_bytes(b"hello, this is text", name()).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownFormat { .. }), "{err:?}");

        let bytes = jpeg(&coded(40, 40), None);
        let err = decode_image_bytes(&bytes[..bytes.len() / 2], name()).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated"), "{err}");

        let bytes = png(8, 8, &[7; 8 * 8 * 3], ExtendedColorType::Rgb8, None);
        let err = decode_image_bytes(&bytes[..bytes.len() - 30], name()).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err:?}");

        let err =
            decode_image(Path::new("/nonexistent/x.jpg"), &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/x.jpg"), "{err}");
    }

    /// A PNG whose header claims 60000×60000 with almost no data: must fail on the header.
    #[test]
    fn huge_header_fails_fast() {
        let mut bytes = png(1, 1, &[0, 0, 0], ExtendedColorType::Rgb8, None);
        // IHDR data starts at byte 16: width, height (big-endian); patch them and fix the CRC.
        bytes[16..20].copy_from_slice(&60000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image_bytes(&bytes, name()).unwrap_err();
        match &err {
            DecodeError::TooManyPixels {
                width,
                height,
                max_pixels,
                ..
            } => assert_eq!((*width, *height, *max_pixels), (60000, 60000, 200_000_000)),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("60000×60000"), "{err}");

        // The byte limit applies separately.
        let limits = DecodeLimits {
            max_pixels: u64::MAX,
            max_bytes_alloc: 1 << 20,
            ..DecodeLimits::default()
        };
        let err = decode_image_bytes_with(&bytes, name(), &limits).unwrap_err();
        assert!(matches!(err, DecodeError::TooMuchMemory { .. }), "{err:?}");
    }

    /// A 199,000,000×1 PNG is 580 KB on disk and gigabytes to decode and resample: refused on
    /// its header, by shape; a wide panorama is not.
    #[test]
    fn a_needle_image_is_refused_on_its_header() {
        let mut bytes = png(1, 1, &[0, 0, 0], ExtendedColorType::Rgb8, None);
        bytes[16..20].copy_from_slice(&199_000_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image_bytes(&bytes, name()).unwrap_err();
        assert!(matches!(err, DecodeError::TooElongated { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("199000000×1") && text.contains("photos/test.img"),
            "{text}"
        );

        let pano = png(200, 4, &[7; 200 * 4 * 3], ExtendedColorType::Rgb8, None);
        let ok = decode_image_bytes(&pano, name()).unwrap();
        assert_eq!(ok.rgb.dimensions(), (200, 4));
    }

    #[test]
    fn jpeg_completeness() {
        let full = jpeg(&coded(40, 40), Some(ExifBuilder::orientation(1).build()));
        assert!(jpeg_is_complete(&full));
        // Trailing data after EOI (e.g. motion-photo video) is fine.
        let mut trailing = full.clone();
        trailing.extend_from_slice(b"ftypmp42 trailing video data");
        assert!(jpeg_is_complete(&trailing));
        for cut in [full.len() - 1, full.len() - 2, full.len() / 2, 200, 3] {
            assert!(!jpeg_is_complete(&full[..cut]), "cut at {cut}");
        }
        // An embedded thumbnail's EOI inside APP1 must not count.
        let thumb = jpeg(&coded(4, 4), None);
        let mut with_thumb = vec![0xFF, 0xD8, 0xFF, 0xE1];
        with_thumb.extend(((thumb.len() + 2) as u16).to_be_bytes());
        with_thumb.extend(&thumb);
        with_thumb.extend(&full[2..full.len() / 2]);
        assert!(!jpeg_is_complete(&with_thumb));
    }

    #[test]
    fn raw_previews_are_decoded_with_the_raw_orientation() {
        use crate::media::raw::tests::{jpeg_of, raf, RawBuilder};
        // The preview carries orientation 3 in its own EXIF; the RAW's IFD0 says 6, which wins.
        let preview = coded(12, 8);
        let preview_jpeg = jpeg(&preview, Some(ExifBuilder::orientation(3).build()));
        let thumb = jpeg_of(&coded(6, 4));
        // The preview's pixels as stored, no orientation applied.
        let plain = decode_stored(&preview_jpeg, name(), &DecodeLimits::default())
            .unwrap()
            .rgb;
        for le in [true, false] {
            let nef = RawBuilder::nef_like(le, thumb.clone(), preview_jpeg.clone(), 6).build();
            let d = decode_image_bytes(&nef, Path::new("photos/IMG_1.NEF")).unwrap();
            assert_eq!(d.orientation, 6, "le={le}");
            assert_eq!((d.stored_width, d.stored_height), (12, 8));
            assert_eq!(d.rgb.dimensions(), (8, 12), "turned upright");
            assert_eq!(d.rgb, apply_orientation(plain.clone(), 6));
            assert_eq!(d.format, ImageFormat::Jpeg);
            assert_eq!(d.exif.camera_make.as_deref(), Some("NIKON CORPORATION"));
            // No orientation tag in the RAW: upright as stored, whatever the preview says.
            let mut b = RawBuilder::nef_like(le, thumb.clone(), preview_jpeg.clone(), 1);
            b.ifds[0].0.retain(|(tag, _)| *tag != 0x0112);
            let d = decode_image_bytes(&b.build(), Path::new("IMG_1.NEF")).unwrap();
            assert_eq!((d.orientation, d.rgb.dimensions()), (1, (12, 8)));
            assert_eq!(d.rgb, plain);
        }
        // A plain TIFF name: the same bytes are a TIFF, not a RAW (the image crate reads IFD0).
        let nef = RawBuilder::nef_like(true, thumb, preview_jpeg.clone(), 6).build();
        assert!(decode_image_bytes(&nef, Path::new("scan.tif"))
            .map_or(true, |d| d.format == ImageFormat::Tiff));

        // RAF: the embedded JPEG's EXIF is the file's.
        let d = decode_image_bytes(&raf(&preview_jpeg), Path::new("DSCF1.RAF")).unwrap();
        assert_eq!(d.orientation, 3);
        assert_eq!(d.rgb, apply_orientation(plain, 3));
    }

    #[test]
    fn raw_errors_name_the_file() {
        use crate::media::raw::tests::RawBuilder;
        let err =
            decode_image_bytes(b"II*\0\x08\0\0\0\0\0", Path::new("photos/IMG_9.NEF")).unwrap_err();
        assert!(matches!(err, DecodeError::NoPreview { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("photos/IMG_9.NEF") && text.contains("no embedded JPEG preview"),
            "{text}"
        );
        // A truncated preview is corrupt, named by the RAW's path.
        let full = jpeg(&coded(40, 40), None);
        let mut cut = full.clone();
        cut.truncate(full.len() / 2);
        let nef = RawBuilder::nef_like(true, jpeg(&coded(4, 4), None), cut, 1).build();
        let err = decode_image_bytes(&nef, Path::new("IMG_2.NEF")).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("IMG_2.NEF"), "{err}");
        // A preview whose header claims 60000×60000: the pixel limit holds.
        let mut bomb = full.clone();
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bomb[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let nef = RawBuilder::nef_like(false, jpeg(&coded(4, 4), None), bomb, 1).build();
        let err = decode_image_bytes(&nef, Path::new("IMG_3.NEF")).unwrap_err();
        assert!(matches!(err, DecodeError::TooManyPixels { .. }), "{err:?}");
        assert!(raw_facts(&nef, Path::new("IMG_3.NEF")).is_some());
        assert!(raw_facts(&nef, Path::new("IMG_3.tif")).is_none());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn cmyk_jpeg_is_converted_to_rgb() {
        // Written by Pillow: an Adobe CMYK JPEG (stored inverted) and Pillow's RGB of it.
        let src = fixture("processor/cmyk_16x8.jpg");
        let want = fixture("processor/cmyk_16x8.jpg.rgb.png");
        let d = decode_image(&src, &DecodeLimits::default()).unwrap();
        assert_eq!(d.format, ImageFormat::Jpeg);
        let want = image::open(&want).unwrap().to_rgb8();
        let max_diff = d
            .rgb
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // Different IDCTs (zune-jpeg vs libjpeg-turbo) and CMYK rounding: a few levels at most.
        assert!(max_diff <= 4, "max difference {max_diff}");
    }

    #[test]
    fn jpeg_decode_is_close_to_pillow() {
        let (src, want) = (
            fixture("images/photo_120x90.jpg"),
            fixture("images/photo_120x90.jpg.decoded.png"),
        );
        if !src.exists() || !want.exists() {
            return;
        }
        let d = decode_image(&src, &DecodeLimits::default()).unwrap();
        let want = image::open(&want).unwrap().to_rgb8();
        let diffs: Vec<u8> = d
            .rgb
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diffs.iter().copied().max().unwrap();
        assert!(max <= 8, "max difference from libjpeg-turbo {max}");
    }
}
