//! Camera RAW files: finds the best embedded JPEG preview in a RAW file. That preview is what
//! captiond captions (there is no RAW demosaicing in the build): every camera writes one, mostly
//! full-size, and it is what the camera itself and most photo managers show.
//!
//! Formats:
//! - TIFF-based RAW (DNG, NEF, NRW, CR2, ARW, SR2, PEF, SRW, ERF, 3FR, MEF, MOS, IIQ, KDC, DCR,
//!   …, plus the TIFF variants Olympus ORF `IIRO`/`IIRS`/`MMOR` and Panasonic RW2 `IIU\0`): IFD0,
//!   the IFD chain, SubIFDs (`0x014A`) and the EXIF IFD (`0x8769`) are walked; JPEG candidates are
//!   `JPEGInterchangeFormat`/`Length` (`0x0201`/`0x0202`), a single strip
//!   (`StripOffsets`/`StripByteCounts`, `0x0111`/`0x0117`) whose `Compression` (`0x0103`) is 6 or
//!   7, Panasonic's `JpgFromRaw` (`0x002E`, RW2 only), and the preview Olympus and OM System keep
//!   in their maker note (`0x927C`; CameraSettings `0x2020` → `0x0101`/`0x0102`).
//! - Fujifilm RAF (`FUJIFILMCCD-RAW`): the JPEG whose offset and length are big-endian u32s at
//!   bytes 84 and 88 of the header.
//! - Not read: Canon CR3 (ISO-BMFF), other makers' maker notes (a preview kept only there is not
//!   found; a smaller one in the IFDs is used instead, if any), Sigma X3F, Canon CRW. A file with
//!   no preview found here stays uncaptioned.
//!
//! A candidate counts only when it lies inside the file, starts with `FF D8` and its frame header
//! is baseline or progressive 8-bit (what the JPEG decoder reads; RAW data itself is often
//! lossless JPEG, `SOF3`, which is thereby excluded). Of those, the one with the largest pixel area
//! wins (then the longest).
//!
//! Orientation is not handled here: the RAW's own EXIF orientation applies to the preview (see
//! `media::exif::read_raw_exif`), as photo managers display it.
//!
//! Hostile files: every offset and length is checked against the file size with overflow-checked
//! arithmetic, at most [`MAX_IFDS`] IFDs are visited (each once, so loops end) plus one maker
//! note, entries per IFD and SubIFDs per entry are capped, and nothing is allocated in proportion
//! to a value read from the file beyond those caps. The parser reads through a `Source`, so the
//! same code runs on bytes in memory ([`find_preview`]) and on a file on disk without reading it
//! whole ([`file_has_preview`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use super::kind::{has_raw_extension, sniff_bytes, ImageKind};

/// At most this many IFDs are visited per file (real RAWs have fewer than 20).
pub const MAX_IFDS: usize = 64;
/// Entries read per IFD (real IFDs have a few hundred at most).
const MAX_ENTRIES: usize = 1024;
/// SubIFD offsets followed per `SubIFDs` entry.
const MAX_SUBIFDS: usize = 16;
/// JPEG marker segments walked before the frame header must have appeared.
const MAX_MARKERS: usize = 256;

/// Where a RAW keeps its EXIF, so where its facts (orientation first) are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawContainer {
    /// TIFF structure: the RAW's own IFD0 and EXIF IFD.
    Tiff,
    /// Fujifilm RAF: the embedded JPEG's EXIF is the file's EXIF.
    Raf,
}

/// The chosen embedded JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preview {
    /// Byte offset of the JPEG (its `FF D8`) in the RAW file.
    pub offset: u64,
    /// Its length in bytes, as the RAW declares it.
    pub len: u64,
    /// Pixel size from the JPEG frame header (as stored, before any orientation).
    pub width: u32,
    pub height: u32,
    pub container: RawContainer,
}

impl Preview {
    /// The JPEG's bytes within the RAW's bytes (checked to lie inside when it was found).
    pub fn range(&self) -> Range<usize> {
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// Whether `bytes` (a whole file, or at least its first bytes) are a camera RAW: RAW magic
/// (CR2, ORF, RW2, RAF, CR3), or a TIFF container whose name has a RAW extension (DNG, NEF, …).
pub fn is_raw(bytes: &[u8], name: &Path) -> bool {
    match sniff_bytes(bytes) {
        Some(ImageKind::Raw) => true,
        Some(ImageKind::Tiff) => has_raw_extension(name),
        _ => false,
    }
}

/// The best embedded JPEG preview of a RAW file held in memory, if it has a usable one.
pub fn find_preview(bytes: &[u8]) -> Option<Preview> {
    best_preview(&mut Bytes(bytes))
}

/// Whether the RAW file at `path` has a usable embedded preview, reading only its headers (a few
/// KiB), not the whole file. Unreadable files have none.
pub fn file_has_preview(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(size) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    best_preview(&mut FileSource { file, size }).is_some()
}

/// Random access to a file's bytes: in memory or on disk.
trait Source {
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; false when that range is not all inside the file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool;
}

struct Bytes<'a>(&'a [u8]);

impl Source for Bytes<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        match start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

struct FileSource {
    file: File,
    size: u64,
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        offset
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= self.size)
            && self.file.seek(SeekFrom::Start(offset)).is_ok()
            && self.file.read_exact(buf).is_ok()
    }
}

fn best_preview(src: &mut dyn Source) -> Option<Preview> {
    let mut head = [0u8; 92];
    let n = head.len().min(src.size() as usize);
    if !src.read_at(0, &mut head[..n]) {
        return None;
    }
    let head = &head[..n];
    let (container, candidates) = if head.starts_with(b"FUJIFILMCCD-RAW") {
        let be = |i: usize| {
            head.get(i..i + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as u64)
        };
        let candidates = match (be(84), be(88)) {
            (Some(offset), Some(len)) => vec![(offset, len)],
            _ => Vec::new(),
        };
        (RawContainer::Raf, candidates)
    } else {
        (RawContainer::Tiff, tiff_candidates(src, head)?)
    };
    let mut best: Option<Preview> = None;
    for (offset, len) in candidates {
        let Some((width, height)) = jpeg_candidate_size(src, offset, len) else {
            continue;
        };
        let area = |p: &Preview| (p.width as u64 * p.height as u64, p.len);
        let candidate = Preview {
            offset,
            len,
            width,
            height,
            container,
        };
        if best.is_none_or(|b| area(&candidate) > area(&b)) {
            best = Some(candidate);
        }
    }
    best
}

/// Byte order and magic of a TIFF-structured RAW: classic TIFF (42), Olympus ORF (`RO`, `RS`,
/// big-endian `OR`), Panasonic RW2 (`U`). Returns (little endian, is RW2).
fn tiff_header(head: &[u8]) -> Option<(bool, bool)> {
    let le = match head.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let magic = head.get(2..4)?;
    let ok = match (le, magic) {
        (true, [42, 0]) | (false, [0, 42]) => Some(false),
        (true, b"RO") | (true, b"RS") | (false, b"OR") => Some(false),
        (true, [0x55, 0]) => Some(true),
        _ => None,
    }?;
    Some((le, ok))
}

struct Tiff<'s> {
    src: &'s mut dyn Source,
    le: bool,
}

impl Tiff<'_> {
    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    fn read_u16(&mut self, offset: u64) -> Option<u16> {
        let mut b = [0; 2];
        self.src.read_at(offset, &mut b).then(|| self.u16(b))
    }

    fn read_u32(&mut self, offset: u64) -> Option<u32> {
        let mut b = [0; 4];
        self.src.read_at(offset, &mut b).then(|| self.u32(b))
    }
}

/// One 12-byte IFD entry.
struct Entry {
    tag: u16,
    typ: u16,
    count: u32,
    /// The value field: the value itself when it fits in 4 bytes, else its offset.
    value: [u8; 4],
}

impl Entry {
    /// The first value of a SHORT, LONG or IFD entry.
    fn scalar(&self, t: &Tiff) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        match self.typ {
            3 => Some(t.u16([self.value[0], self.value[1]]) as u32),
            4 | 13 => Some(t.u32(self.value)),
            _ => None,
        }
    }
}

/// (offset, length) of every JPEG candidate found by walking the IFDs; `None` if `head` is no
/// TIFF-structured RAW header.
fn tiff_candidates(src: &mut dyn Source, head: &[u8]) -> Option<Vec<(u64, u64)>> {
    let (le, rw2) = tiff_header(head)?;
    let mut t = Tiff { src, le };
    let ifd0 = t.read_u32(4)? as u64;
    let mut candidates = Vec::new();
    let mut pending = vec![ifd0];
    let mut visited: Vec<u64> = Vec::new();
    let mut maker_note_read = false;
    while let Some(at) = pending.pop() {
        if visited.len() >= MAX_IFDS {
            break;
        }
        if at < 8 || visited.contains(&at) {
            continue;
        }
        visited.push(at);
        let Some((entries, next)) = read_ifd(&mut t, at) else {
            continue;
        };
        pending.extend(next);
        let (mut compression, mut strip, mut strip_len, mut jif, mut jif_len) =
            (None, None, None, None, None);
        for e in &entries {
            match e.tag {
                0x0103 => compression = e.scalar(&t),
                0x0111 if e.count == 1 => strip = e.scalar(&t),
                0x0117 if e.count == 1 => strip_len = e.scalar(&t),
                0x0201 => jif = e.scalar(&t),
                0x0202 => jif_len = e.scalar(&t),
                // Panasonic JpgFromRaw: an UNDEFINED blob holding a whole JPEG.
                0x002E if rw2 && e.typ == 7 && e.count > 4 => {
                    candidates.push((t.u32(e.value) as u64, e.count as u64));
                }
                0x8769 => pending.extend(e.scalar(&t).map(u64::from)),
                0x014A if matches!(e.typ, 4 | 13) => {
                    if e.count == 1 {
                        pending.push(t.u32(e.value) as u64);
                    } else {
                        let list = t.u32(e.value) as u64;
                        for i in 0..(e.count as u64).min(MAX_SUBIFDS as u64) {
                            if let Some(sub) = t.read_u32(list + 4 * i) {
                                pending.push(sub as u64);
                            }
                        }
                    }
                }
                // MakerNote (in the EXIF IFD): only Olympus keeps its preview there. One per file.
                0x927C if e.typ == 7 && e.count > 16 && !maker_note_read => {
                    maker_note_read = true;
                    let at = t.u32(e.value) as u64;
                    candidates.extend(olympus_preview(&mut *t.src, at));
                }
                _ => {}
            }
        }
        if let (Some(o), Some(l)) = (jif, jif_len) {
            candidates.push((o as u64, l as u64));
        }
        if let (Some(6 | 7), Some(o), Some(l)) = (compression, strip, strip_len) {
            candidates.push((o as u64, l as u64));
        }
    }
    Some(candidates)
}

/// The entries of the IFD at `at` (at most [`MAX_ENTRIES`]; of a truncated IFD, those inside the
/// file) and, when all were read, the offset of the next IFD (0: none).
fn read_ifd(t: &mut Tiff, at: u64) -> Option<(Vec<Entry>, Option<u64>)> {
    let count = t.read_u16(at)? as usize;
    let room = (t.src.size().saturating_sub(at + 2) / 12) as usize;
    let n = count.min(MAX_ENTRIES).min(room);
    let mut buf = vec![0u8; 12 * n];
    if !t.src.read_at(at + 2, &mut buf) {
        return None;
    }
    let entries = buf
        .chunks_exact(12)
        .map(|raw| Entry {
            tag: t.u16([raw[0], raw[1]]),
            typ: t.u16([raw[2], raw[3]]),
            count: t.u32([raw[4], raw[5], raw[6], raw[7]]),
            value: [raw[8], raw[9], raw[10], raw[11]],
        })
        .collect();
    let next = if n == count {
        t.read_u32(at + 2 + 12 * n as u64)
            .filter(|&next| next != 0)
            .map(u64::from)
    } else {
        None
    };
    Some((entries, next))
}

/// The preview of an Olympus / OM System maker note at `at` (`OLYMPUS\0` + byte order + 3, IFD at
/// +12; `OM SYSTEM\0\0\0` + byte order + 4, IFD at +16): its CameraSettings IFD (`0x2020`) holds
/// `PreviewImageStart`/`Length` (`0x0101`/`0x0102`). Offsets in there count from the maker
/// note's start, in its own byte order.
fn olympus_preview(src: &mut dyn Source, at: u64) -> Option<(u64, u64)> {
    let mut h = [0u8; 16];
    if !src.read_at(at, &mut h) {
        return None;
    }
    let (ifd, order) = if h.starts_with(b"OLYMPUS\0") {
        (12, &h[8..10])
    } else if h.starts_with(b"OM SYSTEM\0\0\0") {
        (16, &h[12..14])
    } else {
        return None;
    };
    let le = match order {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let mut t = Tiff { src, le };
    let (main, _) = read_ifd(&mut t, at + ifd)?;
    let settings = main
        .iter()
        .find(|e| e.tag == 0x2020 && matches!(e.typ, 4 | 7 | 13))?;
    let settings_at = at + t.u32(settings.value) as u64;
    let (settings, _) = read_ifd(&mut t, settings_at)?;
    let field = |tag| settings.iter().find(|e| e.tag == tag)?.scalar(&t);
    let (start, len) = (field(0x0101)?, field(0x0102)?);
    Some((at + start as u64, len as u64))
}

/// The pixel size of the JPEG at `offset..offset + len`, if it lies inside the file, starts with
/// `FF D8` and has a baseline or progressive 8-bit frame header before its first scan.
fn jpeg_candidate_size(src: &mut dyn Source, offset: u64, len: u64) -> Option<(u32, u32)> {
    let end = offset.checked_add(len)?;
    if len < 4 || offset == 0 || end > src.size() {
        return None;
    }
    let mut soi = [0u8; 2];
    if !src.read_at(offset, &mut soi) || soi != [0xFF, 0xD8] {
        return None;
    }
    let mut at = offset + 2;
    for _ in 0..MAX_MARKERS {
        let mut m = [0u8; 4];
        if at + 4 > end || !src.read_at(at, &mut m) || m[0] != 0xFF {
            return None;
        }
        match m[1] {
            // Fill byte before a marker.
            0xFF => at += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            0xC0..=0xC2 => {
                let mut sof = [0u8; 6];
                if at + 10 > end || !src.read_at(at + 4, &mut sof) {
                    return None;
                }
                let height = u16::from_be_bytes([sof[1], sof[2]]) as u32;
                let width = u16::from_be_bytes([sof[3], sof[4]]) as u32;
                let good = sof[0] == 8 && width > 0 && height > 0 && matches!(sof[5], 1 | 3 | 4);
                return good.then_some((width, height));
            }
            // Lossless, hierarchical or arithmetic-coded frames; a scan or the end before any
            // frame; a second start of image.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xD8 | 0xD9 | 0xDA => return None,
            _ => {
                let seg = u16::from_be_bytes([m[2], m[3]]) as u64;
                if seg < 2 {
                    return None;
                }
                at += 2 + seg;
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{ExtendedColorType, ImageEncoder, RgbImage};

    /// A baseline JPEG of `w`×`h` whose pixels depend on `seed`.
    pub(crate) fn jpeg(w: u32, h: u32, seed: u8) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8 ^ seed, (y * 5) as u8, seed.wrapping_mul(3)])
        });
        jpeg_of(&img)
    }

    pub(crate) fn jpeg_of(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    /// One IFD of a synthetic RAW: (tag, type, values); a value list is written inline when it
    /// fits in 4 bytes. `Blob` values are appended to the file and replaced by their offset.
    #[derive(Clone)]
    pub(crate) enum Val {
        Short(Vec<u16>),
        Long(Vec<u32>),
        Ascii(&'static str),
        /// Offset of a blob appended to the file (a LONG).
        BlobAt(usize),
        /// An UNDEFINED entry whose data is blob `n` (count = its length).
        Undefined(usize),
        /// Offset of IFD `n` (a LONG, or an array of them).
        Ifds(Vec<usize>),
        /// A raw LONG written as is (hostile offsets).
        RawLong(u32),
    }

    /// One IFD: its entries and the index of the next IFD in its chain.
    pub(crate) type Ifd = (Vec<(u16, Val)>, Option<usize>);

    /// A TIFF-structured synthetic RAW: IFDs (chained where `next` says so) and blobs.
    #[derive(Clone)]
    pub(crate) struct RawBuilder {
        pub le: bool,
        /// The 2 magic bytes after the byte order (`[42, 0]` little-endian TIFF).
        pub magic: [u8; 2],
        pub ifds: Vec<Ifd>,
        pub blobs: Vec<Vec<u8>>,
    }

    impl RawBuilder {
        pub fn new(le: bool) -> Self {
            RawBuilder {
                le,
                magic: if le { [42, 0] } else { [0, 42] },
                ifds: Vec::new(),
                blobs: Vec::new(),
            }
        }

        pub fn blob(&mut self, bytes: Vec<u8>) -> usize {
            self.blobs.push(bytes);
            self.blobs.len() - 1
        }

        pub fn ifd(&mut self, entries: Vec<(u16, Val)>) -> usize {
            self.ifds.push((entries, None));
            self.ifds.len() - 1
        }

        /// A NEF-like file: IFD0 (orientation, make, a small JPEG thumbnail via 0x0201) and a
        /// SubIFD holding the large preview via 0x0201, plus a strip of "raw data".
        pub fn nef_like(le: bool, thumb: Vec<u8>, preview: Vec<u8>, orientation: u16) -> Self {
            let mut b = RawBuilder::new(le);
            let thumb_len = thumb.len() as u32;
            let preview_len = preview.len() as u32;
            let t = b.blob(thumb);
            let p = b.blob(preview);
            let raw = b.blob(vec![0x5A; 64]);
            b.ifd(vec![
                (0x010F, Val::Ascii("NIKON CORPORATION")),
                (0x0110, Val::Ascii("NIKON Z 6")),
                (0x0112, Val::Short(vec![orientation])),
                (0x014A, Val::Ifds(vec![1, 2])),
                (0x0201, Val::BlobAt(t)),
                (0x0202, Val::Long(vec![thumb_len])),
            ]);
            b.ifd(vec![
                (0x0103, Val::Short(vec![6])),
                (0x0201, Val::BlobAt(p)),
                (0x0202, Val::Long(vec![preview_len])),
            ]);
            b.ifd(vec![
                (0x0103, Val::Short(vec![34713])),
                (0x0111, Val::BlobAt(raw)),
                (0x0117, Val::Long(vec![64])),
            ]);
            b
        }

        pub fn build(&self) -> Vec<u8> {
            let le = self.le;
            let u16b = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
            let u32b = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
            // Layout: header, IFDs, out-of-line values, blobs.
            let mut ifd_at = Vec::new();
            let mut at = 8usize;
            for (entries, _) in &self.ifds {
                ifd_at.push(at);
                at += 2 + 12 * entries.len() + 4;
            }
            let data_at = at;
            let mut data = Vec::new();
            let payloads: Vec<Vec<Vec<u8>>> = self
                .ifds
                .iter()
                .map(|(entries, _)| {
                    entries
                        .iter()
                        .map(|(_, v)| match v {
                            Val::Short(s) => s.iter().flat_map(|&x| u16b(x)).collect(),
                            Val::Long(l) => l.iter().flat_map(|&x| u32b(x)).collect(),
                            Val::Ascii(s) => {
                                let mut b = s.as_bytes().to_vec();
                                b.push(0);
                                b
                            }
                            Val::Ifds(list) => {
                                list.iter().flat_map(|&i| u32b(ifd_at[i] as u32)).collect()
                            }
                            Val::BlobAt(_) | Val::Undefined(_) | Val::RawLong(_) => vec![0; 4],
                        })
                        .collect()
                })
                .collect();
            let mut out_of_line = Vec::new();
            for entry_payloads in &payloads {
                let mut offs = Vec::new();
                for p in entry_payloads {
                    if p.len() > 4 {
                        offs.push(Some(data_at + data.len()));
                        data.extend(p);
                        if data.len() % 2 == 1 {
                            data.push(0);
                        }
                    } else {
                        offs.push(None);
                    }
                }
                out_of_line.push(offs);
            }
            let blobs_at = data_at + data.len();
            let mut blob_at = Vec::new();
            let mut at = blobs_at;
            for b in &self.blobs {
                blob_at.push(at);
                at += b.len();
            }
            let mut out = Vec::new();
            out.extend(if le { *b"II" } else { *b"MM" });
            out.extend(self.magic);
            out.extend(u32b(if self.ifds.is_empty() { 0 } else { 8 }));
            for (i, (entries, next)) in self.ifds.iter().enumerate() {
                out.extend(u16b(entries.len() as u16));
                for (j, (tag, v)) in entries.iter().enumerate() {
                    let payload = &payloads[i][j];
                    let (typ, count): (u16, u32) = match v {
                        Val::Short(s) => (3, s.len() as u32),
                        Val::Long(l) => (4, l.len() as u32),
                        Val::Ascii(_) => (2, payload.len() as u32),
                        Val::Ifds(l) => (4, l.len() as u32),
                        Val::BlobAt(_) | Val::RawLong(_) => (4, 1),
                        Val::Undefined(n) => (7, self.blobs[*n].len() as u32),
                    };
                    out.extend(u16b(*tag));
                    out.extend(u16b(typ));
                    out.extend(u32b(count));
                    match (v, out_of_line[i][j]) {
                        (Val::BlobAt(n) | Val::Undefined(n), _) => {
                            out.extend(u32b(blob_at[*n] as u32))
                        }
                        (Val::RawLong(x), _) => out.extend(u32b(*x)),
                        (_, Some(off)) => out.extend(u32b(off as u32)),
                        (_, None) => {
                            let mut inline = payload.clone();
                            inline.resize(4, 0);
                            out.extend(inline);
                        }
                    }
                }
                out.extend(u32b(next.map_or(0, |n| ifd_at[n] as u32)));
            }
            out.extend(data);
            for b in &self.blobs {
                out.extend(b);
            }
            out
        }
    }

    /// A RAF: header with the JPEG's offset and length at 84/88, the JPEG, then "raw data".
    pub(crate) fn raf(jpeg: &[u8]) -> Vec<u8> {
        let mut out = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
        out.resize(84, 0);
        out.extend(100u32.to_be_bytes());
        out.extend((jpeg.len() as u32).to_be_bytes());
        out.resize(100, 0);
        out.extend(jpeg);
        out.extend([0x11; 32]);
        out
    }

    #[test]
    fn picks_the_largest_preview_in_both_byte_orders() {
        for le in [true, false] {
            let (thumb, preview) = (jpeg(16, 8, 1), jpeg(64, 48, 2));
            let bytes = RawBuilder::nef_like(le, thumb, preview.clone(), 1).build();
            let p = find_preview(&bytes).unwrap_or_else(|| panic!("le={le}"));
            assert_eq!((p.width, p.height), (64, 48), "le={le}");
            assert_eq!(&bytes[p.range()], &preview[..], "le={le}");
            assert_eq!(p.container, RawContainer::Tiff);
        }
    }

    #[test]
    fn strips_with_jpeg_compression_count_and_lossless_ones_do_not() {
        // CR2-like: IFD0 holds the full-size JPEG as its one strip (compression 6); IFD1 a
        // thumbnail; IFD2 the raw data as lossless JPEG (SOF3), which must be ignored even
        // though it is larger and starts with FF D8.
        let mut b = RawBuilder::new(true);
        let big = jpeg(40, 30, 3);
        let big_len = big.len() as u32;
        let small = jpeg(8, 8, 4);
        let small_len = small.len() as u32;
        let mut lossless = jpeg(400, 300, 5);
        let sof = lossless.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        lossless[sof + 1] = 0xC3;
        let lossless_len = lossless.len() as u32;
        let (big, small, lossless) = (b.blob(big), b.blob(small), b.blob(lossless));
        b.ifd(vec![
            (0x0103, Val::Short(vec![6])),
            (0x0111, Val::BlobAt(big)),
            (0x0117, Val::Long(vec![big_len])),
        ]);
        b.ifd(vec![
            (0x0201, Val::BlobAt(small)),
            (0x0202, Val::Long(vec![small_len])),
        ]);
        b.ifd(vec![
            (0x0103, Val::Short(vec![6])),
            (0x0111, Val::BlobAt(lossless)),
            (0x0117, Val::Long(vec![lossless_len])),
        ]);
        b.ifds[0].1 = Some(1);
        b.ifds[1].1 = Some(2);
        let bytes = b.build();
        let p = find_preview(&bytes).unwrap();
        assert_eq!((p.width, p.height), (40, 30));

        // The same strip with compression 1 (uncompressed) is no JPEG candidate.
        b.ifds[0].0[0].1 = Val::Short(vec![1]);
        let p = find_preview(&b.build()).unwrap();
        assert_eq!((p.width, p.height), (8, 8));
        // Several strips: not a single JPEG.
        b.ifds[0].0[0].1 = Val::Short(vec![7]);
        b.ifds[0].0[2].1 = Val::Long(vec![big_len / 2, big_len / 2]);
        let p = find_preview(&b.build()).unwrap();
        assert_eq!((p.width, p.height), (8, 8));
    }

    #[test]
    fn exif_ifd_and_the_olympus_and_panasonic_magics() {
        // A preview referenced from the EXIF IFD, in an ORF (`IIRO`) and an `MMOR` file.
        for (le, magic) in [(true, *b"RO"), (true, *b"RS"), (false, *b"OR")] {
            let mut b = RawBuilder::new(le);
            b.magic = magic;
            let j = jpeg(24, 16, 6);
            let len = j.len() as u32;
            let j = b.blob(j);
            b.ifd(vec![(0x8769, Val::Ifds(vec![1]))]);
            b.ifd(vec![
                (0x0201, Val::BlobAt(j)),
                (0x0202, Val::Long(vec![len])),
            ]);
            let p = find_preview(&b.build()).unwrap_or_else(|| panic!("{magic:?}"));
            assert_eq!((p.width, p.height), (24, 16));
        }
        // RW2: JpgFromRaw (0x002E), an UNDEFINED blob.
        let mut b = RawBuilder::new(true);
        b.magic = [0x55, 0];
        let j = b.blob(jpeg(32, 24, 7));
        b.ifd(vec![(0x002E, Val::Undefined(j))]);
        let bytes = b.build();
        assert_eq!(&bytes[..4], b"IIU\0");
        let p = find_preview(&bytes).unwrap();
        assert_eq!((p.width, p.height), (32, 24));
        // Not a RW2: 0x002E means nothing.
        b.magic = [42, 0];
        assert_eq!(find_preview(&b.build()), None);
    }

    /// An Olympus (`OLYMPUS\0`) or OM System (`OM SYSTEM\0\0\0`) maker note whose
    /// CameraSettings IFD points at `jpeg`, offsets counted from the note's start.
    fn olympus_maker_note(le: bool, om: bool, jpeg: &[u8]) -> Vec<u8> {
        let u16b = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let u32b = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut out = if om {
            b"OM SYSTEM\0\0\0".to_vec()
        } else {
            b"OLYMPUS\0".to_vec()
        };
        out.extend(if le { *b"II" } else { *b"MM" });
        out.extend(u16b(if om { 4 } else { 3 }));
        let settings_at = out.len() as u32 + 18;
        out.extend(u16b(1));
        out.extend(u16b(0x2020));
        out.extend(u16b(13));
        out.extend(u32b(1));
        out.extend(u32b(settings_at));
        out.extend(u32b(0));
        let jpeg_at = settings_at + 30;
        out.extend(u16b(2));
        for (tag, v) in [(0x0101u16, jpeg_at), (0x0102, jpeg.len() as u32)] {
            out.extend(u16b(tag));
            out.extend(u16b(4));
            out.extend(u32b(1));
            out.extend(u32b(v));
        }
        out.extend(u32b(0));
        out.extend(jpeg);
        out
    }

    #[test]
    fn olympus_previews_are_found_in_the_maker_note() {
        for (le, note_le, om) in [
            (true, true, false),
            (true, false, true),
            (false, false, false),
        ] {
            let mut b = RawBuilder::new(le);
            b.magic = if le { *b"RO" } else { *b"OR" };
            let thumb = jpeg(16, 12, 1);
            let thumb_len = thumb.len() as u32;
            let thumb = b.blob(thumb);
            let note = b.blob(olympus_maker_note(note_le, om, &jpeg(64, 48, 2)));
            b.ifd(vec![
                (0x8769, Val::Ifds(vec![1])),
                (0x0201, Val::BlobAt(thumb)),
                (0x0202, Val::Long(vec![thumb_len])),
            ]);
            b.ifd(vec![(0x927C, Val::Undefined(note))]);
            let bytes = b.build();
            let p = find_preview(&bytes).unwrap_or_else(|| panic!("le={le} om={om}"));
            assert_eq!((p.width, p.height), (64, 48), "le={le} om={om}");
            // Another maker note: nothing read from it.
            let mut other = bytes.clone();
            let at = other
                .windows(7)
                .position(|w| w == b"OLYMPUS" || w == b"OM SYST");
            other[at.unwrap()] = b'X';
            let p = find_preview(&other).unwrap();
            assert_eq!((p.width, p.height), (16, 12));
            for cut in 0..bytes.len() {
                let _ = find_preview(&bytes[..cut]);
            }
        }
    }

    #[test]
    fn raf_header_points_at_the_jpeg() {
        let j = jpeg(48, 32, 8);
        let bytes = raf(&j);
        let p = find_preview(&bytes).unwrap();
        assert_eq!((p.offset, p.width, p.height), (100, 48, 32));
        assert_eq!(p.container, RawContainer::Raf);
        assert_eq!(&bytes[p.range()], &j[..]);
        // Length past the end of the file, or offset pointing at non-JPEG bytes: none.
        let mut bad = bytes.clone();
        bad[88..92].copy_from_slice(&(j.len() as u32 + 100).to_be_bytes());
        assert_eq!(find_preview(&bad), None);
        let mut bad = bytes.clone();
        bad[84..88].copy_from_slice(&96u32.to_be_bytes());
        assert_eq!(find_preview(&bad), None);
        assert_eq!(find_preview(&bytes[..90]), None);
    }

    #[test]
    fn is_raw_by_magic_or_tiff_with_a_raw_extension() {
        let tiff = RawBuilder::new(true).build();
        assert!(is_raw(&tiff, Path::new("a/IMG_1.NEF")));
        assert!(is_raw(&tiff, Path::new("x.dng")));
        assert!(!is_raw(&tiff, Path::new("x.tif")));
        assert!(is_raw(b"II*\0\x10\0\0\0CR\x02\0", Path::new("x.tif")));
        assert!(is_raw(&raf(&jpeg(8, 8, 0)), Path::new("x")));
        assert!(is_raw(b"IIU\0\x08\0\0\0", Path::new("x")));
        assert!(!is_raw(&jpeg(8, 8, 0), Path::new("x.NEF")));
    }

    #[test]
    fn files_on_disk_are_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let nef = dir.path().join("IMG_1.NEF");
        std::fs::write(
            &nef,
            RawBuilder::nef_like(true, jpeg(8, 8, 0), jpeg(32, 16, 1), 6).build(),
        )
        .unwrap();
        assert!(file_has_preview(&nef));
        let raf_path = dir.path().join("X.RAF");
        std::fs::write(&raf_path, raf(&jpeg(8, 8, 0))).unwrap();
        assert!(file_has_preview(&raf_path));
        let empty = dir.path().join("E.NEF");
        std::fs::write(&empty, b"II*\0\x08\0\0\0").unwrap();
        assert!(!file_has_preview(&empty));
        assert!(!file_has_preview(&dir.path().join("missing.NEF")));
    }

    #[test]
    fn hostile_files_end_quickly_without_panicking() {
        let good = RawBuilder::nef_like(true, jpeg(8, 8, 0), jpeg(32, 16, 1), 1).build();
        // Every truncation of a valid file.
        for cut in 0..good.len() {
            let _ = find_preview(&good[..cut]);
        }
        // Every single-byte corruption of the header and IFD area, two values each.
        let ifd_area = good.len().min(200);
        for i in 0..ifd_area {
            for v in [0x00, 0xFF] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = find_preview(&bad);
            }
        }

        // An IFD chained to itself, and SubIFDs pointing back to IFD0.
        let mut b = RawBuilder::new(true);
        b.ifd(vec![(0x014A, Val::Ifds(vec![0, 0, 0]))]);
        b.ifds[0].1 = Some(0);
        assert_eq!(find_preview(&b.build()), None);

        // A long chain of distinct IFDs, each with many SubIFDs: the visit cap ends it.
        let mut b = RawBuilder::new(false);
        for i in 0..200 {
            b.ifd(vec![(
                0x014A,
                Val::Ifds((0..40).map(|k| (i + k) % 200).collect()),
            )]);
            b.ifds[i].1 = Some((i + 1) % 200);
        }
        let start = std::time::Instant::now();
        assert_eq!(find_preview(&b.build()), None);
        assert!(start.elapsed().as_secs() < 2);

        // Offsets and lengths at the edges of u32; counts claiming billions of entries.
        let mut b = RawBuilder::new(true);
        b.ifd(vec![
            (0x0201, Val::RawLong(u32::MAX - 1)),
            (0x0202, Val::Long(vec![u32::MAX])),
            (0x8769, Val::RawLong(u32::MAX)),
            (0x0103, Val::Short(vec![7])),
            (0x0111, Val::RawLong(0)),
            (0x0117, Val::Long(vec![u32::MAX])),
        ]);
        let mut bytes = b.build();
        assert_eq!(find_preview(&bytes), None);
        // IFD0 entry count 0xFFFF on a tiny file.
        bytes[8..10].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(find_preview(&bytes), None);
        // SubIFDs with a count of 2^32-1 and an offset past the end.
        let mut b = RawBuilder::new(true);
        b.ifd(vec![(0x014A, Val::Ifds(vec![0, 0]))]);
        let mut bytes = b.build();
        // The entry's count field sits at 8 + 2 + 4.
        bytes[14..18].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(find_preview(&bytes), None);
        // A JPEG whose segments never reach a frame header: a segment length of 0, and a run
        // of empty APP segments longer than the marker cap.
        let mut j = vec![0xFF, 0xD8];
        for _ in 0..1000 {
            j.extend([0xFF, 0xE5, 0x00, 0x02]);
        }
        j.extend(&jpeg(8, 8, 0)[2..]);
        let mut b = RawBuilder::new(true);
        let len = j.len() as u32;
        let n = b.blob(j);
        b.ifd(vec![
            (0x0201, Val::BlobAt(n)),
            (0x0202, Val::Long(vec![len])),
        ]);
        assert_eq!(find_preview(&b.build()), None);
        assert_eq!(find_preview(b"II*\0"), None);
        assert_eq!(find_preview(b""), None);
        assert_eq!(find_preview(b"MM\0*\0\0\0\x08\0"), None);
    }
}
