//! Decode stage, metadata side: the EXIF facts the catalog and the sidecars need (orientation, date
//! taken, camera, GPS) and the geometry of EXIF orientation: turning stored pixels upright for the
//! model, and mapping boxes found on the upright image back to the stored frame.
//!
//! No transformers counterpart: the reference never applies EXIF orientation (Pillow's
//! `Image.open` does not), so Florence-2 sees sideways photos there. We turn them upright first,
//! which changes results for rotated photos on purpose; parity fixtures use orientation 1.
//!
//! Metadata is best effort: a photo with missing or garbled EXIF is still a photo, so every reader
//! here falls back to defaults instead of failing.

use std::io::Cursor;

use exif::{In, Reader, Tag, Value};
use image::{imageops, RgbImage};

use super::raw::RawContainer;

/// What we keep from a photo's EXIF.
#[derive(Debug, Clone, PartialEq)]
pub struct ExifInfo {
    /// EXIF orientation 1..=8; 1 (upright) when absent or out of range.
    pub orientation: u16,
    /// `DateTimeOriginal` (else `DateTimeDigitized`, else `DateTime`) as ISO 8601 local time,
    /// `YYYY-MM-DDTHH:MM:SS`, with the matching `OffsetTime*` appended (`+02:00`) when present.
    pub date_taken: Option<String>,
    /// `Make`, trimmed; `None` when empty.
    pub camera_make: Option<String>,
    /// `Model`, trimmed; `None` when empty.
    pub camera_model: Option<String>,
    /// (latitude, longitude) in signed decimal degrees.
    pub gps: Option<(f64, f64)>,
}

impl Default for ExifInfo {
    fn default() -> Self {
        ExifInfo {
            orientation: 1,
            date_taken: None,
            camera_make: None,
            camera_model: None,
            gps: None,
        }
    }
}

/// Reads EXIF from a whole image file (JPEG, TIFF, PNG, WebP, HEIF containers). Anything missing
/// or unreadable gives the default for that field; this never fails.
pub fn read_exif(bytes: &[u8]) -> ExifInfo {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    let parsed = reader
        .read_from_container(&mut Cursor::new(bytes))
        .or_else(|e| e.distill_partial_result(|_| {}));
    match parsed {
        Ok(exif) => info_from(&exif),
        Err(_) => ExifInfo::default(),
    }
}

/// Reads EXIF from a raw TIFF-structured EXIF block (what decoders hand out, e.g. the payload of a
/// JPEG APP1 segment after `Exif\0\0`, or a PNG `eXIf` chunk). Never fails, as [`read_exif`].
pub fn read_exif_block(block: &[u8]) -> ExifInfo {
    let block = block.strip_prefix(b"Exif\0\0").unwrap_or(block);
    read_tiff(block.to_vec())
}

fn read_tiff(data: Vec<u8>) -> ExifInfo {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    match reader
        .read_raw(data)
        .or_else(|e| e.distill_partial_result(|_| {}))
    {
        Ok(exif) => info_from(&exif),
        Err(_) => ExifInfo::default(),
    }
}

/// The EXIF facts of a camera RAW (see [`super::raw`]), given its whole bytes and the EXIF of its
/// embedded preview (`preview`). Where photo managers read them:
/// - TIFF-based RAW: the RAW's own IFD0 and EXIF IFD. Olympus ORF and Panasonic RW2 use their own
///   magic instead of TIFF's 42, which the EXIF reader rejects, so a copy with 42 is read. The
///   orientation is always the RAW's (1 when it has none): a preview's own orientation tag, if it
///   has one, is not what viewers apply to the RAW. Date, camera and GPS fall back to the
///   preview's EXIF when the RAW lacks them.
/// - Fujifilm RAF: the embedded JPEG's EXIF is the file's EXIF, orientation included.
///
/// Never fails, as [`read_exif`].
pub fn read_raw_exif(raw: &[u8], container: RawContainer, preview: ExifInfo) -> ExifInfo {
    if container == RawContainer::Raf {
        return preview;
    }
    let own = match raw.get(2..4) {
        Some([42, 0] | [0, 42]) => read_exif(raw),
        Some(_) => {
            let mut patched = raw.to_vec();
            patched[2..4].copy_from_slice(if raw.starts_with(b"II") {
                &[42, 0]
            } else {
                &[0, 42]
            });
            read_tiff(patched)
        }
        None => ExifInfo::default(),
    };
    ExifInfo {
        orientation: own.orientation,
        date_taken: own.date_taken.or(preview.date_taken),
        camera_make: own.camera_make.or(preview.camera_make),
        camera_model: own.camera_model.or(preview.camera_model),
        gps: own.gps.or(preview.gps),
    }
}

fn info_from(exif: &exif::Exif) -> ExifInfo {
    let field = |tag| exif.get_field(tag, In::PRIMARY);
    let orientation = field(Tag::Orientation)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map_or(1, |o| o as u16);
    let date_taken = [
        (Tag::DateTimeOriginal, Tag::OffsetTimeOriginal),
        (Tag::DateTimeDigitized, Tag::OffsetTimeDigitized),
        (Tag::DateTime, Tag::OffsetTime),
    ]
    .into_iter()
    .find_map(|(date, offset)| {
        let date = ascii(field(date)?.value.clone())?;
        format_date(&date, field(offset).and_then(|f| ascii(f.value.clone())))
    });
    let text = |tag| {
        field(tag)
            .and_then(|f| ascii(f.value.clone()))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let gps = (|| {
        let lat = degrees(&field(Tag::GPSLatitude)?.value)?;
        let lon = degrees(&field(Tag::GPSLongitude)?.value)?;
        let lat_ref = ascii(field(Tag::GPSLatitudeRef)?.value.clone())?;
        let lon_ref = ascii(field(Tag::GPSLongitudeRef)?.value.clone())?;
        let lat = match lat_ref.trim() {
            "N" | "n" => lat,
            "S" | "s" => -lat,
            _ => return None,
        };
        let lon = match lon_ref.trim() {
            "E" | "e" => lon,
            "W" | "w" => -lon,
            _ => return None,
        };
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
    })();
    ExifInfo {
        orientation,
        date_taken,
        camera_make: text(Tag::Make),
        camera_model: text(Tag::Model),
        gps,
    }
}

/// The first string of an ASCII field; non-UTF-8 bytes (seen in the wild) are replaced.
fn ascii(value: Value) -> Option<String> {
    match value {
        Value::Ascii(mut parts) if !parts.is_empty() => {
            let bytes = parts.swap_remove(0);
            let s = String::from_utf8_lossy(&bytes);
            Some(s.trim_end_matches('\0').to_string())
        }
        _ => None,
    }
}

/// `"2023:07:14 15:30:00"` (+ `"+02:00"`) → `"2023-07-14T15:30:00+02:00"`; rejects blanks and
/// impossible field values (cameras write `0000:00:00 00:00:00` when the clock was never set).
fn format_date(date: &str, offset: Option<String>) -> Option<String> {
    let dt = exif::DateTime::from_ascii(date.as_bytes()).ok()?;
    let valid = dt.year > 0
        && (1..=12).contains(&dt.month)
        && (1..=31).contains(&dt.day)
        && dt.hour < 24
        && dt.minute < 60
        && dt.second < 61;
    if !valid {
        return None;
    }
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
    );
    if let Some(offset) = offset {
        let o = offset.trim();
        let b = o.as_bytes();
        let well_formed = b.len() == 6
            && (b[0] == b'+' || b[0] == b'-')
            && b[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit());
        if well_formed {
            out.push_str(o);
        }
    }
    Some(out)
}

/// Degrees/minutes/seconds rationals → decimal degrees.
fn degrees(value: &Value) -> Option<f64> {
    let Value::Rational(parts) = value else {
        return None;
    };
    let mut total = 0.0;
    for (part, scale) in parts.iter().zip([1.0, 60.0, 3600.0]) {
        if part.denom == 0 {
            return None;
        }
        total += part.num as f64 / part.denom as f64 / scale;
    }
    (!parts.is_empty() && total.is_finite()).then_some(total)
}

/// Turns stored pixels upright for EXIF orientation `orientation` (the transform viewers apply,
/// Pillow's `ImageOps.exif_transpose`). Values outside 1..=8 leave the image as it is.
pub fn apply_orientation(img: RgbImage, orientation: u16) -> RgbImage {
    match orientation {
        2 => imageops::flip_horizontal(&img),
        3 => imageops::rotate180(&img),
        4 => imageops::flip_vertical(&img),
        // Transpose: mirror across the main diagonal.
        5 => imageops::flip_horizontal(&imageops::rotate90(&img)),
        6 => imageops::rotate90(&img),
        // Transverse: mirror across the anti-diagonal.
        7 => imageops::flip_vertical(&imageops::rotate90(&img)),
        8 => imageops::rotate270(&img),
        _ => img,
    }
}

/// The (width, height) of an image stored as `(w, h)` once turned upright.
pub fn oriented_size((w, h): (u32, u32), orientation: u16) -> (u32, u32) {
    if (5..=8).contains(&orientation) {
        (h, w)
    } else {
        (w, h)
    }
}

/// Maps a normalised `[x1, y1, x2, y2]` box (0..1, on the upright image the model saw) back into
/// the stored pixel frame, so regions written to sidecars line up with the file as stored. The
/// result is again normalised and ordered (x1 ≤ x2, y1 ≤ y2).
pub fn map_box_to_stored(box_norm: [f32; 4], orientation: u16) -> [f32; 4] {
    let [x1, y1, x2, y2] = box_norm;
    let (a, b) = (
        map_point_to_stored(x1, y1, orientation),
        map_point_to_stored(x2, y2, orientation),
    );
    [a.0.min(b.0), a.1.min(b.1), a.0.max(b.0), a.1.max(b.1)]
}

/// Where the upright point (u, v) lies in the stored image, both normalised.
fn map_point_to_stored(u: f32, v: f32, orientation: u16) -> (f32, f32) {
    match orientation {
        2 => (1.0 - u, v),
        3 => (1.0 - u, 1.0 - v),
        4 => (u, 1.0 - v),
        5 => (v, u),
        6 => (v, 1.0 - u),
        7 => (1.0 - v, 1.0 - u),
        8 => (1.0 - v, u),
        _ => (u, v),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// ([degrees, minutes, seconds × 100], "N"/"S"/"E"/"W").
    pub(crate) type GpsCoord = ([u32; 3], &'static str);

    /// A little-endian EXIF block (TIFF structure) with the given IFD0 fields, an Exif sub-IFD
    /// holding `DateTimeOriginal`/`OffsetTimeOriginal`, and a GPS sub-IFD.
    pub(crate) struct ExifBuilder {
        pub orientation: Option<u16>,
        pub make: Option<&'static str>,
        pub model: Option<&'static str>,
        pub date: Option<&'static str>,
        pub offset: Option<&'static str>,
        /// Latitude and longitude, seconds as a rational ×100.
        pub gps: Option<(GpsCoord, GpsCoord)>,
    }

    impl ExifBuilder {
        pub fn orientation(o: u16) -> Self {
            ExifBuilder {
                orientation: Some(o),
                make: None,
                model: None,
                date: None,
                offset: None,
                gps: None,
            }
        }

        pub fn build(&self) -> Vec<u8> {
            // Entry values: (tag, type, count, payload bytes). Type 2 ASCII, 3 SHORT, 4 LONG,
            // 5 RATIONAL.
            type Entry = (u16, u16, u32, Vec<u8>);
            fn ascii(tag: u16, s: &str) -> Entry {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                (tag, 2, b.len() as u32, b)
            }
            fn rationals(tag: u16, vals: &[(u32, u32)]) -> Entry {
                let b = vals
                    .iter()
                    .flat_map(|(n, d)| n.to_le_bytes().into_iter().chain(d.to_le_bytes()))
                    .collect();
                (tag, 5, vals.len() as u32, b)
            }
            let mut ifd0: Vec<Entry> = Vec::new();
            if let Some(o) = self.orientation {
                ifd0.push((0x0112, 3, 1, o.to_le_bytes().to_vec()));
            }
            if let Some(m) = self.make {
                ifd0.push(ascii(0x010F, m));
            }
            if let Some(m) = self.model {
                ifd0.push(ascii(0x0110, m));
            }
            let mut exif_ifd: Vec<Entry> = Vec::new();
            if let Some(d) = self.date {
                exif_ifd.push(ascii(0x9003, d));
            }
            if let Some(o) = self.offset {
                exif_ifd.push(ascii(0x9011, o));
            }
            let mut gps_ifd: Vec<Entry> = Vec::new();
            if let Some(((lat, lat_ref), (lon, lon_ref))) = self.gps {
                gps_ifd.push(ascii(0x0001, lat_ref));
                gps_ifd.push(rationals(
                    0x0002,
                    &[(lat[0], 1), (lat[1], 1), (lat[2], 100)],
                ));
                gps_ifd.push(ascii(0x0003, lon_ref));
                gps_ifd.push(rationals(
                    0x0004,
                    &[(lon[0], 1), (lon[1], 1), (lon[2], 100)],
                ));
            }
            // Pointers are filled in once the layout is known; reserve the entries now.
            let has_exif = !exif_ifd.is_empty();
            let has_gps = !gps_ifd.is_empty();
            if has_exif {
                ifd0.push((0x8769, 4, 1, vec![0; 4]));
            }
            if has_gps {
                ifd0.push((0x8825, 4, 1, vec![0; 4]));
            }
            ifd0.sort_by_key(|e| e.0);

            let ifd_len = |n: usize| 2 + 12 * n + 4;
            let mut out = b"II*\0".to_vec();
            out.extend(8u32.to_le_bytes());
            let ifd0_at = 8;
            let exif_at = ifd0_at + ifd_len(ifd0.len());
            let gps_at = exif_at + if has_exif { ifd_len(exif_ifd.len()) } else { 0 };
            let data_at = gps_at + if has_gps { ifd_len(gps_ifd.len()) } else { 0 };
            for e in ifd0.iter_mut() {
                if e.0 == 0x8769 {
                    e.3 = (exif_at as u32).to_le_bytes().to_vec();
                }
                if e.0 == 0x8825 {
                    e.3 = (gps_at as u32).to_le_bytes().to_vec();
                }
            }
            let mut data: Vec<u8> = Vec::new();
            let mut write_ifd = |out: &mut Vec<u8>, entries: &[Entry]| {
                out.extend((entries.len() as u16).to_le_bytes());
                for (tag, ty, count, payload) in entries {
                    out.extend(tag.to_le_bytes());
                    out.extend(ty.to_le_bytes());
                    out.extend(count.to_le_bytes());
                    if payload.len() <= 4 {
                        let mut inline = payload.clone();
                        inline.resize(4, 0);
                        out.extend(inline);
                    } else {
                        out.extend(((data_at + data.len()) as u32).to_le_bytes());
                        data.extend(payload);
                        if data.len() % 2 == 1 {
                            data.push(0);
                        }
                    }
                }
                out.extend(0u32.to_le_bytes());
            };
            write_ifd(&mut out, &ifd0);
            if has_exif {
                write_ifd(&mut out, &exif_ifd);
            }
            if has_gps {
                write_ifd(&mut out, &gps_ifd);
            }
            out.extend(data);
            out
        }
    }

    fn full() -> ExifBuilder {
        ExifBuilder {
            orientation: Some(6),
            make: Some("Canon"),
            model: Some("Canon EOS 5D Mark IV  "),
            date: Some("2023:07:14 15:30:05"),
            offset: Some("+02:00"),
            gps: Some((([48, 51, 2940], "N"), ([2, 17, 4020], "W"))),
        }
    }

    #[test]
    fn reads_all_fields_from_a_block() {
        let info = read_exif_block(&full().build());
        assert_eq!(info.orientation, 6);
        assert_eq!(info.camera_make.as_deref(), Some("Canon"));
        assert_eq!(info.camera_model.as_deref(), Some("Canon EOS 5D Mark IV"));
        assert_eq!(
            info.date_taken.as_deref(),
            Some("2023-07-14T15:30:05+02:00")
        );
        let (lat, lon) = info.gps.unwrap();
        assert!(
            (lat - (48.0 + 51.0 / 60.0 + 29.4 / 3600.0)).abs() < 1e-9,
            "{lat}"
        );
        assert!(
            (lon + (2.0 + 17.0 / 60.0 + 40.2 / 3600.0)).abs() < 1e-9,
            "{lon}"
        );
        // With the APP1 prefix too.
        let mut prefixed = b"Exif\0\0".to_vec();
        prefixed.extend(full().build());
        assert_eq!(read_exif_block(&prefixed), info);
        // A whole TIFF file is an EXIF container as well.
        assert_eq!(read_exif(&full().build()), info);
    }

    #[test]
    fn raw_exif_reads_the_raw_and_accepts_olympus_and_panasonic_magic() {
        let preview = ExifInfo {
            orientation: 8,
            date_taken: Some("2001-01-01T00:00:00".into()),
            camera_make: Some("Preview make".into()),
            camera_model: Some("Preview model".into()),
            gps: None,
        };
        for magic in [*b"II*\0", *b"IIRO", *b"IIRS", *b"IIU\0"] {
            let mut raw = full().build();
            raw[..4].copy_from_slice(&magic);
            let info = read_raw_exif(&raw, RawContainer::Tiff, preview.clone());
            assert_eq!(info, read_exif_block(&full().build()), "{magic:?}");
        }
        // What the RAW lacks comes from the preview, except the orientation.
        let mut b = ExifBuilder::orientation(1);
        b.orientation = None;
        b.model = Some("E-M1");
        let info = read_raw_exif(&b.build(), RawContainer::Tiff, preview.clone());
        assert_eq!(info.orientation, 1);
        assert_eq!(info.camera_model.as_deref(), Some("E-M1"));
        assert_eq!(info.camera_make.as_deref(), Some("Preview make"));
        assert_eq!(info.date_taken.as_deref(), Some("2001-01-01T00:00:00"));
        // RAF: the preview's EXIF is the file's.
        assert_eq!(
            read_raw_exif(b"FUJIFILMCCD-RAW ", RawContainer::Raf, preview.clone()),
            preview
        );
        assert_eq!(
            read_raw_exif(b"II", RawContainer::Tiff, ExifInfo::default()),
            ExifInfo::default()
        );
    }

    #[test]
    fn garbage_gives_defaults() {
        assert_eq!(read_exif(b""), ExifInfo::default());
        assert_eq!(read_exif(b"not an image at all"), ExifInfo::default());
        assert_eq!(
            read_exif_block(b"II*\0\xff\xff\xff\xff"),
            ExifInfo::default()
        );
        let mut truncated = full().build();
        truncated.truncate(40);
        let info = read_exif_block(&truncated);
        assert!((1..=8).contains(&info.orientation));
    }

    #[test]
    fn bad_values_are_dropped() {
        let mut b = ExifBuilder::orientation(9);
        b.date = Some("0000:00:00 00:00:00");
        b.make = Some("   ");
        b.gps = Some((([95, 0, 0], "N"), ([2, 0, 0], "E")));
        let info = read_exif_block(&b.build());
        assert_eq!(info, ExifInfo::default());
        let mut b = ExifBuilder::orientation(3);
        b.date = Some("2020:01:02 03:04:05");
        b.offset = Some("bogus!");
        b.gps = Some((([10, 30, 0], "S"), ([20, 15, 0], "X")));
        let info = read_exif_block(&b.build());
        assert_eq!(info.orientation, 3);
        assert_eq!(info.date_taken.as_deref(), Some("2020-01-02T03:04:05"));
        assert_eq!(info.gps, None);
    }

    /// A 3×2 image whose pixels encode their stored coordinates.
    fn coded(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 0]))
    }

    #[test]
    fn orientation_transforms_match_the_exif_definitions() {
        let (w, h) = (3u32, 2u32);
        let img = coded(w, h);
        for o in 1..=8u16 {
            let up = apply_orientation(img.clone(), o);
            assert_eq!(up.dimensions(), oriented_size((w, h), o), "orientation {o}");
            let (uw, uh) = up.dimensions();
            for y in 0..uh {
                for x in 0..uw {
                    // Expected stored pixel for each displayed pixel, from the EXIF spec's
                    // description of where row 0 / column 0 go.
                    let (sx, sy) = match o {
                        1 => (x, y),
                        2 => (w - 1 - x, y),
                        3 => (w - 1 - x, h - 1 - y),
                        4 => (x, h - 1 - y),
                        5 => (y, x),
                        6 => (y, h - 1 - x),
                        7 => (w - 1 - y, h - 1 - x),
                        8 => (w - 1 - y, x),
                        _ => unreachable!(),
                    };
                    let p = up.get_pixel(x, y);
                    assert_eq!((p[0] as u32, p[1] as u32), (sx, sy), "o={o} at ({x},{y})");
                }
            }
        }
        assert_eq!(apply_orientation(img.clone(), 0), img);
        assert_eq!(apply_orientation(img.clone(), 42), img);
    }

    #[test]
    fn boxes_map_back_to_the_stored_frame_for_all_orientations() {
        // Stored 40×20 image; a stored box in pixels; show the image upright, find the box on
        // the upright image by scanning pixels, and map it back.
        let (w, h) = (40u32, 20u32);
        let stored_box = (4u32, 2u32, 14u32, 8u32); // x1, y1, x2, y2 (exclusive)
        let img = RgbImage::from_fn(w, h, |x, y| {
            let inside = (stored_box.0..stored_box.2).contains(&x)
                && (stored_box.1..stored_box.3).contains(&y);
            image::Rgb([if inside { 255 } else { 0 }, 0, 0])
        });
        let want = [
            stored_box.0 as f32 / w as f32,
            stored_box.1 as f32 / h as f32,
            stored_box.2 as f32 / w as f32,
            stored_box.3 as f32 / h as f32,
        ];
        for o in 1..=8u16 {
            let up = apply_orientation(img.clone(), o);
            let (uw, uh) = up.dimensions();
            let lit: Vec<(u32, u32)> = up
                .enumerate_pixels()
                .filter(|(_, _, p)| p[0] == 255)
                .map(|(x, y, _)| (x, y))
                .collect();
            let x1 = lit.iter().map(|p| p.0).min().unwrap();
            let y1 = lit.iter().map(|p| p.1).min().unwrap();
            let x2 = lit.iter().map(|p| p.0).max().unwrap() + 1;
            let y2 = lit.iter().map(|p| p.1).max().unwrap() + 1;
            let shown = [
                x1 as f32 / uw as f32,
                y1 as f32 / uh as f32,
                x2 as f32 / uw as f32,
                y2 as f32 / uh as f32,
            ];
            let back = map_box_to_stored(shown, o);
            for i in 0..4 {
                assert!(
                    (back[i] - want[i]).abs() < 1e-6,
                    "o={o}: {back:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn identity_and_unknown_orientations_keep_boxes() {
        let b = [0.1, 0.2, 0.3, 0.4];
        assert_eq!(map_box_to_stored(b, 1), b);
        assert_eq!(map_box_to_stored(b, 0), b);
        let close = |got: [f32; 4], want: [f32; 4]| {
            assert!(
                got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
                "{got:?}"
            );
        };
        close(map_box_to_stored(b, 3), [0.7, 0.6, 0.9, 0.8]);
        close(map_box_to_stored(b, 6), [0.2, 0.7, 0.4, 0.9]);
    }
}
