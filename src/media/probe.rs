//! What a file's bytes say about a photo without decoding its pixels: whether it is an image we can
//! caption, its content hash, its pixel size from the header and its EXIF facts. Discovery asks
//! this once per settled file ([`probe_file`]); the worker decodes later.
//!
//! Memory stays small whatever the file: the content is hashed as it streams past and only the
//! head ([`HEAD_BYTES`]) is kept for the header and EXIF. Camera RAW files (whose preview can sit
//! anywhere) and the rare header that lies past the head (a TIFF's first IFD) are read whole,
//! under a budget shared by all discovery threads ([`WHOLE_READ_BUDGET`]).

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::{Condvar, Mutex};

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

/// How much of a file's start is kept for its header and EXIF (a JPEG's APP segments are at most
/// 64 KiB each; PNG, WebP, GIF and BMP headers are at the start).
pub const HEAD_BYTES: usize = 1 << 20;

/// Bytes of whole files held at once by all discovery threads together (a larger single file
/// still goes through, alone).
pub const WHOLE_READ_BUDGET: u64 = 1 << 30;

/// Files larger than this are not read whole to find a header the head lacks (their size is then
/// unknown until decoded).
const WHOLE_READ_MAX: u64 = 512 << 20;

/// What [`probe_file`] read: the verdict and how many bytes the hash covered (compare with the
/// size the walk saw: a mismatch means the file changed while it was read).
#[derive(Debug)]
pub struct ProbedFile {
    pub probe: Probe,
    pub bytes_read: u64,
}

/// Probes a file on disk: [`probe`]'s verdict, with the hash streamed over the whole content and
/// only the head (or, for camera RAW and headers past the head, the whole file under the shared
/// budget) held in memory.
pub fn probe_file(path: &Path) -> io::Result<ProbedFile> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = Vec::with_capacity(HEAD_BYTES.min(size as usize));
    (&mut file).take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    let complete = (head.len() as u64) < HEAD_BYTES as u64;
    match classify(&head, path) {
        Class::NotImage => {
            return Ok(ProbedFile {
                probe: Probe::NotImage,
                bytes_read: head.len() as u64,
            })
        }
        Class::RawLike(_) if !complete => return read_whole(head, &mut file, size, path),
        Class::RawLike(_) => {}
        Class::Ordinary if complete => {}
        Class::Ordinary => return stream_large(head, &mut file, path),
    }
    let bytes_read = head.len() as u64;
    Ok(ProbedFile {
        probe: probe(&head, path),
        bytes_read,
    })
}

/// A large ordinary image: the rest is hashed as it streams past; size and EXIF come from the
/// head, or from the whole file when its header lies past the head.
fn stream_large(head: Vec<u8>, file: &mut File, path: &Path) -> io::Result<ProbedFile> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head);
    let bytes_read = head.len() as u64 + stream_into(&mut hasher, file)?;
    let mut size_found = header_size(&head);
    let mut exif = read_exif(&head);
    if size_found.is_none() && bytes_read <= WHOLE_READ_MAX {
        // The header lies past the head (a TIFF whose first IFD is at its end): read it whole.
        let _held = BUDGET.acquire(bytes_read);
        let whole = std::fs::read(path)?;
        size_found = header_size(&whole);
        exif = read_exif(&whole);
    }
    Ok(ProbedFile {
        probe: Probe::Photo(Probed {
            hash: hasher.finalize().to_hex().to_string(),
            size: size_found,
            exif,
        }),
        bytes_read,
    })
}

/// A RAW (or HEIF-family) file read whole under the shared budget, then [`probe`]d.
fn read_whole(
    mut head: Vec<u8>,
    file: &mut File,
    size: u64,
    path: &Path,
) -> io::Result<ProbedFile> {
    let _held = BUDGET.acquire(size);
    head.reserve(size.saturating_sub(head.len() as u64) as usize);
    file.read_to_end(&mut head)?;
    let bytes_read = head.len() as u64;
    Ok(ProbedFile {
        probe: probe(&head, path),
        bytes_read,
    })
}

/// Bytes of whole files in memory across threads; [`ByteBudget::acquire`] waits for room.
struct ByteBudget {
    in_flight: Mutex<u64>,
    room: Condvar,
}

static BUDGET: ByteBudget = ByteBudget {
    in_flight: Mutex::new(0),
    room: Condvar::new(),
};

/// Room taken in the budget, given back on drop.
struct Held(u64);

impl ByteBudget {
    fn acquire(&'static self, bytes: u64) -> Held {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // A file over the whole budget goes alone.
        while *in_flight > 0 && *in_flight + bytes > WHOLE_READ_BUDGET {
            in_flight = self.room.wait(in_flight).unwrap_or_else(|e| e.into_inner());
        }
        *in_flight += bytes;
        Held(bytes)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut in_flight = BUDGET.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *in_flight -= self.0;
        BUDGET.room.notify_all();
    }
}

/// Streams the rest of `reader` into `hasher`; returns how many bytes that was.
pub(crate) fn stream_into(hasher: &mut blake3::Hasher, reader: &mut impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// What a file's name and first bytes make of it.
enum Class {
    /// A name we do not know and no image magic.
    NotImage,
    /// Camera RAW (captioned from its embedded preview, which can sit anywhere in the file) or a
    /// format without a decoder here: the whole file is needed to tell.
    RawLike(Option<ImageKind>),
    /// Any other image: its header and EXIF are at the start.
    Ordinary,
}

fn classify(head: &[u8], path: &Path) -> Class {
    let by_name = path
        .file_name()
        .map_or(FileClass::Unknown, class_by_extension);
    let kind = sniff_bytes(head);
    if by_name != FileClass::Image && kind.is_none() {
        return Class::NotImage;
    }
    let raw_like = has_raw_extension(path)
        || matches!(
            kind,
            Some(ImageKind::Raw | ImageKind::Heic | ImageKind::Avif | ImageKind::Jxl)
        );
    if raw_like {
        Class::RawLike(kind)
    } else {
        Class::Ordinary
    }
}

/// Probes a whole file's `bytes`; `path` is its name (the extension refines a TIFF into a RAW
/// and lets a known image name through even when its bytes are broken, so its failure shows).
pub fn probe(bytes: &[u8], path: &Path) -> Probe {
    let hash = || blake3::hash(bytes).to_hex().to_string();
    match classify(bytes, path) {
        Class::NotImage => Probe::NotImage,
        // Camera RAW is captioned from its embedded JPEG preview (media::raw): a RAW's own IFD0
        // is often a thumbnail, and the `image` crate reads no RAW header.
        Class::RawLike(kind) => match raw_facts(bytes, path) {
            Some((preview, exif)) => Probe::Photo(Probed {
                hash: hash(),
                size: Some((preview.width, preview.height)),
                exif,
            }),
            None => Probe::NoDecoder(kind),
        },
        Class::Ordinary => Probe::Photo(Probed {
            hash: hash(),
            size: header_size(bytes),
            exif: read_exif(bytes),
        }),
    }
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

    /// A large file: the head gives size and EXIF, the hash covers every byte, streamed.
    #[test]
    fn a_large_file_is_hashed_whole_and_probed_by_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = png(9, 4);
        bytes.resize(bytes.len() + 3 * HEAD_BYTES + 17, 0x5a); // trailing data after IEND
        let path = dir.path().join("big.png");
        std::fs::write(&path, &bytes).unwrap();
        let got = probe_file(&path).unwrap();
        assert_eq!(got.bytes_read, bytes.len() as u64);
        let Probe::Photo(p) = got.probe else {
            panic!("not a photo")
        };
        assert_eq!(p.hash, blake3::hash(&bytes).to_hex().to_string());
        assert_eq!(p.size, Some((9, 4)));
        // Small files and non-images give what `probe` gives.
        let small = dir.path().join("s.png");
        std::fs::write(&small, png(3, 2)).unwrap();
        assert_eq!(probe_file(&small).unwrap().probe, probe(&png(3, 2), &small));
        let text = dir.path().join("notes.dat");
        std::fs::write(&text, vec![b'x'; 2 * HEAD_BYTES]).unwrap();
        assert_eq!(probe_file(&text).unwrap().probe, Probe::NotImage);
    }

    /// A TIFF whose first IFD sits after a large strip: its size is found by reading it whole.
    #[test]
    fn a_header_past_the_head_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (1024u32, 1100u32); // 8-bit gray: the strip alone is over HEAD_BYTES
        let strip = vec![7u8; (w * h) as usize];
        let mut t = b"II*\0".to_vec();
        let ifd_at = 8 + strip.len() as u32;
        t.extend_from_slice(&ifd_at.to_le_bytes());
        t.extend_from_slice(&strip);
        let entries: [(u16, u16, u32, u32); 8] = [
            (256, 4, 1, w),
            (257, 4, 1, h),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, 8),
            (278, 4, 1, h),
            (279, 4, 1, w * h),
        ];
        t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, ty, count, value) in entries {
            t.extend_from_slice(&tag.to_le_bytes());
            t.extend_from_slice(&ty.to_le_bytes());
            t.extend_from_slice(&count.to_le_bytes());
            t.extend_from_slice(&value.to_le_bytes());
        }
        t.extend_from_slice(&0u32.to_le_bytes());
        let path = dir.path().join("scan.tif");
        std::fs::write(&path, &t).unwrap();
        assert_eq!(
            header_size(&t[..HEAD_BYTES]),
            None,
            "the head alone does not say"
        );
        let Probe::Photo(p) = probe_file(&path).unwrap().probe else {
            panic!("not a photo")
        };
        assert_eq!(p.size, Some((w, h)));
        assert_eq!(p.hash, blake3::hash(&t).to_hex().to_string());
    }
}
