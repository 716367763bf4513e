//! What kind of file a path holds, from its name ([`class_by_extension`]) and from its first
//! bytes ([`sniff_bytes`], [`sniff_image`]): never from the name alone where content can say.
//! The library walk, the RAW reader, the probe and the sidecar naming all ask here.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// What a file's name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    /// A photo extension (`.jpg`, `.heic`, `.dng`, …; any case).
    Image,
    /// No extension, or one we do not know: a candidate only if [`sniff_image`] says image.
    Unknown,
    /// Hidden, excluded, a sidecar (`.xmp`) or an obvious non-image (`.txt`, `.mov`, `.db`, …).
    Ignored,
}

/// Classifies by extension alone (case-insensitive).
pub fn class_by_extension(name: &OsStr) -> FileClass {
    let Some(ext) = Path::new(name).extension() else {
        return FileClass::Unknown;
    };
    let bytes = ext.as_encoded_bytes();
    let mut buf = [0u8; 12];
    if bytes.len() > buf.len() {
        return FileClass::Unknown;
    }
    for (d, s) in buf.iter_mut().zip(bytes) {
        *d = s.to_ascii_lowercase();
    }
    let Ok(lower) = std::str::from_utf8(&buf[..bytes.len()]) else {
        return FileClass::Unknown;
    };
    match lower {
        "jpg" | "jpeg" | "jpe" | "jfif" | "png" | "tif" | "tiff" | "webp" | "gif" | "bmp"
        | "dib" | "heic" | "heif" | "hif" | "avif" | "jxl" => FileClass::Image,
        _ if RAW_EXTENSIONS.contains(&lower) => FileClass::Image,
        // Sidecars and edit files.
        "xmp" | "pp3" | "dop" | "aae" | "on1" | "lrcat" | "lrdata" | "cos" | "arp"
        // Video and audio (their THM/LRV companions are thumbnails).
        | "mov" | "mp4" | "m4v" | "avi" | "mkv" | "mts" | "m2ts" | "3gp" | "wmv" | "mpg"
        | "mpeg" | "webm" | "thm" | "lrv" | "mp3" | "m4a" | "wav" | "aac" | "flac" | "ogg"
        // Text, documents, databases, archives, partial downloads.
        | "txt" | "json" | "xml" | "html" | "htm" | "md" | "csv" | "log" | "ini" | "cfg"
        | "pdf" | "doc" | "docx" | "db" | "sqlite" | "sqlite3" | "db-wal" | "db-shm"
        | "db-journal" | "zip" | "tar" | "gz" | "7z" | "rar" | "part" | "crdownload"
        | "download" | "tmp" | "swp" | "exe" | "dll" | "so" | "sh" | "py" | "js" | "css" => {
            FileClass::Ignored
        }
        _ => FileClass::Unknown,
    }
}

/// Camera raw extensions whose files are (mostly) TIFF containers or have their own magic.
/// Camera raw extensions (lower case).
pub const RAW_EXTENSIONS: &[&str] = &[
    "dng", "nef", "nrw", "cr2", "cr3", "crw", "arw", "srf", "sr2", "orf", "rw2", "raf", "pef",
    "srw", "x3f", "erf", "3fr", "mef", "mos", "iiq", "rwl", "kdc", "dcr",
];

/// Whether a file name has a camera-raw extension (case-insensitive).
pub fn has_raw_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| RAW_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A file type recognised from content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Jpeg,
    Png,
    /// A TIFF container with a non-raw extension.
    Tiff,
    /// Camera raw: TIFF-based raws (DNG, NEF, ARW, PEF, … by extension; CR2, ORF, RW2 by
    /// magic), Fujifilm RAF, Canon CR3.
    Raw,
    /// HEIF with HEVC (`.heic`) or a generic HEIF brand.
    Heic,
    Avif,
    WebP,
    Gif,
    Bmp,
    Jxl,
}

/// How many leading bytes [`sniff_image`] reads.
pub const SNIFF_LEN: usize = 64;

/// Reads the first bytes of `path` and says which image format it holds, if any. The extension
/// only refines a TIFF container into [`ImageKind::Raw`]. A short or empty file is `Ok(None)`.
pub fn sniff_image(path: &Path) -> io::Result<Option<ImageKind>> {
    let mut head = [0u8; SNIFF_LEN];
    let mut file = File::open(path)?;
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = sniff_bytes(&head[..len]);
    let raw_ext = path
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| RAW_EXTENSIONS.iter().any(|r| r.eq_ignore_ascii_case(e)));
    Ok(match kind {
        Some(ImageKind::Tiff) if raw_ext => Some(ImageKind::Raw),
        other => other,
    })
}

/// [`sniff_image`] on bytes already read (the first [`SNIFF_LEN`] are enough).
pub fn sniff_bytes(head: &[u8]) -> Option<ImageKind> {
    let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some(ImageKind::Jpeg);
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some(ImageKind::Png);
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
        // Canon CR2 marks itself at offset 8.
        return Some(if at(8, b"CR") {
            ImageKind::Raw
        } else {
            ImageKind::Tiff
        });
    }
    // Olympus ORF, Panasonic RW2: TIFF with their own magic.
    if at(0, b"IIRO") || at(0, b"IIRS") || at(0, b"MMOR") || at(0, b"IIU\0") {
        return Some(ImageKind::Raw);
    }
    if at(0, b"FUJIFILMCCD-RAW") {
        return Some(ImageKind::Raw);
    }
    if at(4, b"ftyp") {
        return sniff_ftyp(head);
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some(ImageKind::WebP);
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some(ImageKind::Gif);
    }
    // "BM", then file size, then two reserved u16 that writers leave zero.
    if at(0, b"BM") && at(6, &[0, 0, 0, 0]) {
        return Some(ImageKind::Bmp);
    }
    if at(0, &[0xFF, 0x0A]) || at(0, b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some(ImageKind::Jxl);
    }
    None
}

/// ISO base media `ftyp` box: major brand at 8, compatible brands from 16 to the box end.
fn sniff_ftyp(head: &[u8]) -> Option<ImageKind> {
    let brand = |b: &[u8]| -> Option<ImageKind> {
        match b {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"hevm" | b"hevs" => {
                Some(ImageKind::Heic)
            }
            b"avif" | b"avis" => Some(ImageKind::Avif),
            b"crx " => Some(ImageKind::Raw),
            _ => None,
        }
    };
    let major = head.get(8..12)?;
    if let Some(kind) = brand(major) {
        return Some(kind);
    }
    let box_len = u32::from_be_bytes(head[0..4].try_into().ok()?) as usize;
    let end = box_len.min(head.len());
    let compatible: Vec<&[u8]> = head.get(16..end)?.chunks_exact(4).collect();
    // A generic HEIF major brand (mif1/msf1/miaf) names the codec among the compatible ones.
    if let Some(kind) = compatible.iter().find_map(|b| brand(b)) {
        return Some(kind);
    }
    match major {
        b"mif1" | b"msf1" | b"miaf" => Some(ImageKind::Heic),
        _ => None, // mp4, mov, 3gp, …
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn sniffs_formats_from_content() {
        let cases: &[(&[u8], Option<ImageKind>)] = &[
            (JPEG, Some(ImageKind::Jpeg)),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some(ImageKind::Png)),
            (b"II*\0\x08\0\0\0", Some(ImageKind::Tiff)),
            (b"MM\0*\0\0\0\x08", Some(ImageKind::Tiff)),
            (b"II*\0\x10\0\0\0CR\x02\0", Some(ImageKind::Raw)),
            (b"IIRO\x08\0\0\0", Some(ImageKind::Raw)),
            (b"IIU\0\x18\0\0\0", Some(ImageKind::Raw)),
            (b"FUJIFILMCCD-RAW 0201", Some(ImageKind::Raw)),
            (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", Some(ImageKind::Heic)),
            (
                b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf",
                Some(ImageKind::Avif),
            ),
            (b"\0\0\0\x18ftypavif\0\0\0\0avifmif1", Some(ImageKind::Avif)),
            (
                b"\0\0\0\x18ftypcrx \0\0\0\x01crx isom",
                Some(ImageKind::Raw),
            ),
            (b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2", None),
            (b"\0\0\0\x14ftypqt  \0\0\x02\0qt  ", None),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some(ImageKind::WebP)),
            (b"RIFF\x24\0\0\0WAVEfmt ", None),
            (b"GIF89a\x01\0\x01\0", Some(ImageKind::Gif)),
            (b"BM\x3a\0\0\0\0\0\0\0\x36\0", Some(ImageKind::Bmp)),
            (b"BMW is a car", None),
            (b"\xff\x0a\xfa", Some(ImageKind::Jxl)),
            (b"", None),
            (b"\xff", None),
            (b"<?xpacket begin", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                sniff_bytes(bytes),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let dng = tmp.path().join("x.DNG");
        write(&dng, b"II*\0\x08\0\0\0");
        assert_eq!(sniff_image(&dng).unwrap(), Some(ImageKind::Raw));
        let tif = tmp.path().join("x.tif");
        write(&tif, b"II*\0\x08\0\0\0");
        assert_eq!(sniff_image(&tif).unwrap(), Some(ImageKind::Tiff));
        let empty = tmp.path().join("empty.jpg");
        write(&empty, b"");
        assert_eq!(sniff_image(&empty).unwrap(), None);
        assert!(sniff_image(&tmp.path().join("nope")).is_err());
    }
}
