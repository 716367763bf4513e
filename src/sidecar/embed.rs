//! XMP embedded in the image itself, for readers that ignore sidecars of JPEG/PNG (Lightroom).
//! Opt-in ([`super::SidecarSettings::embed`]); RAW files are never touched.
//!
//! - JPEG: the standard `APP1` segment (`http://ns.adobe.com/xap/1.0/\0` + packet, at most 65,502
//!   bytes of packet). An existing one is replaced where it is; otherwise ours goes after the leading
//!   `APP0`/`APP1` (JFIF, Exif) segments. Extended XMP segments are left as they are.
//! - PNG: an uncompressed `iTXt` chunk with keyword `XML:com.adobe.xmp`, replacing an existing one
//!   in place or going right after `IHDR`.
//!
//! Every other byte of the file is copied unchanged; the write is atomic like a sidecar's. Note
//! that embedding changes the file's bytes, so its content hash changes.

use std::path::Path;

use super::write::Change;
use super::xmp::{Packet, XmpError};
use super::SidecarError;

const JPEG_XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const PNG_SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
const PNG_XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
/// Padding spaces in embedded packets (room for in-place edits by other tools).
pub const EMBED_PADDING: usize = 2048;

/// The container formats we embed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedFormat {
    Jpeg,
    Png,
}

/// JPEG or PNG by magic bytes (never by extension alone: a `.jpg` may be anything).
pub fn embed_format(head: &[u8]) -> Option<EmbedFormat> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(EmbedFormat::Jpeg)
    } else if head.starts_with(PNG_SIG) {
        Some(EmbedFormat::Png)
    } else {
        None
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> SidecarError {
    SidecarError::Embed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Where the XMP sits in a file and the bytes around it.
struct Located<'a> {
    /// The existing packet, if any.
    packet: Option<&'a [u8]>,
    /// Byte range the new XMP segment/chunk replaces (empty range = insertion point).
    range: std::ops::Range<usize>,
}

fn locate_jpeg<'a>(path: &Path, data: &'a [u8]) -> Result<Located<'a>, SidecarError> {
    let mut pos = 2;
    let mut insert_at = 2;
    let mut leading = true;
    let mut found: Option<Located<'a>> = None;
    loop {
        if pos + 4 > data.len() || data[pos] != 0xFF {
            return Err(bad(path, format!("no JPEG segment at byte {pos}")));
        }
        let mut m = pos + 1;
        while m < data.len() && data[m] == 0xFF {
            m += 1;
        }
        let marker = *data.get(m).ok_or_else(|| bad(path, "truncated JPEG"))?;
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            pos = m + 1;
            continue;
        }
        let len_at = m + 1;
        if len_at + 2 > data.len() {
            return Err(bad(path, "truncated JPEG"));
        }
        let len = usize::from(u16::from_be_bytes([data[len_at], data[len_at + 1]]));
        let end = len_at + len;
        if len < 2 || end > data.len() {
            return Err(bad(path, format!("bad JPEG segment length at byte {pos}")));
        }
        let payload = &data[len_at + 2..end];
        if marker == 0xE1 && payload.starts_with(JPEG_XMP_SIG) {
            if found.is_some() {
                return Err(bad(path, "more than one XMP APP1 segment"));
            }
            found = Some(Located {
                packet: Some(&payload[JPEG_XMP_SIG.len()..]),
                range: pos..end,
            });
        }
        if leading && (marker == 0xE0 || marker == 0xE1) {
            insert_at = end;
        } else {
            leading = false;
        }
        pos = end;
    }
    Ok(found.unwrap_or(Located {
        packet: None,
        range: insert_at..insert_at,
    }))
}

fn jpeg_segment(path: &Path, packet: &[u8]) -> Result<Vec<u8>, SidecarError> {
    let len = 2 + JPEG_XMP_SIG.len() + packet.len();
    let len = u16::try_from(len).map_err(|_| {
        bad(
            path,
            format!(
                "the XMP packet ({} bytes) does not fit one JPEG segment",
                packet.len()
            ),
        )
    })?;
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(JPEG_XMP_SIG);
    seg.extend_from_slice(packet);
    Ok(seg)
}

/// CRC-32 (ISO 3309, as PNG uses it).
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn locate_png<'a>(path: &Path, data: &'a [u8]) -> Result<Located<'a>, SidecarError> {
    let mut pos = PNG_SIG.len();
    let mut after_ihdr = None;
    let mut found: Option<Located<'a>> = None;
    loop {
        if pos + 12 > data.len() {
            return Err(bad(path, "truncated PNG (no IEND)"));
        }
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let kind = &data[pos + 4..pos + 8];
        let end = pos
            .checked_add(12)
            .and_then(|v| v.checked_add(len))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| bad(path, format!("bad PNG chunk length at byte {pos}")))?;
        let body = &data[pos + 8..pos + 8 + len];
        if kind == b"IHDR" {
            after_ihdr = Some(end);
        }
        if kind == b"iTXt"
            && body.starts_with(PNG_XMP_KEYWORD)
            && body.get(PNG_XMP_KEYWORD.len()) == Some(&0)
        {
            let rest = &body[PNG_XMP_KEYWORD.len() + 1..];
            if rest.len() < 2 {
                return Err(bad(path, "truncated XMP iTXt chunk"));
            }
            if rest[0] != 0 {
                return Err(bad(
                    path,
                    "the XMP iTXt chunk is compressed (not supported)",
                ));
            }
            // Language tag and translated keyword, each NUL-terminated.
            let mut rest = &rest[2..];
            for _ in 0..2 {
                let nul = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| bad(path, "truncated XMP iTXt chunk"))?;
                rest = &rest[nul + 1..];
            }
            if found.is_some() {
                return Err(bad(path, "more than one XMP iTXt chunk"));
            }
            found = Some(Located {
                packet: Some(rest),
                range: pos..end,
            });
        }
        if kind == b"IEND" {
            break;
        }
        pos = end;
    }
    let at = after_ihdr.ok_or_else(|| bad(path, "PNG without IHDR"))?;
    Ok(found.unwrap_or(Located {
        packet: None,
        range: at..at,
    }))
}

fn png_chunk(packet: &[u8]) -> Vec<u8> {
    let mut body = PNG_XMP_KEYWORD.to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0]);
    body.extend_from_slice(packet);
    let mut chunk = (body.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"iTXt");
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&[b"iTXt", &body]).to_be_bytes());
    chunk
}

/// Rewrites the image bytes with `merge` applied to its embedded packet. `merge` gets the parsed
/// packet (empty if none) and returns the packet to write, or `None` to leave the file alone.
pub(crate) fn apply(
    path: &Path,
    data: &[u8],
    merge: impl FnOnce(Option<Packet>) -> Option<Packet>,
) -> Result<Change, SidecarError> {
    let format = embed_format(data).ok_or_else(|| bad(path, "not a JPEG or PNG file"))?;
    let located = match format {
        EmbedFormat::Jpeg => locate_jpeg(path, data)?,
        EmbedFormat::Png => locate_png(path, data)?,
    };
    let old = match located.packet {
        Some(bytes) => {
            Some(
                Packet::parse(bytes).map_err(|source: XmpError| SidecarError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let Some(mut packet) = merge(old) else {
        return Ok(Change::Keep);
    };
    packet.xpacket = true;
    let block = match format {
        EmbedFormat::Jpeg => jpeg_segment(path, &packet.serialize(EMBED_PADDING))
            // Too big with padding: try without before giving up.
            .or_else(|_| jpeg_segment(path, &packet.serialize(0)))?,
        EmbedFormat::Png => png_chunk(&packet.serialize(EMBED_PADDING)),
    };
    let mut out = Vec::with_capacity(data.len() + block.len());
    out.extend_from_slice(&data[..located.range.start]);
    out.extend_from_slice(&block);
    out.extend_from_slice(&data[located.range.end..]);
    Ok(Change::Write(out))
}

/// The embedded packet of a JPEG or PNG, if any (for tests and `doctor`-style checks).
pub fn read_embedded(path: &Path, data: &[u8]) -> Result<Option<Packet>, SidecarError> {
    let located = match embed_format(data) {
        Some(EmbedFormat::Jpeg) => locate_jpeg(path, data)?,
        Some(EmbedFormat::Png) => locate_png(path, data)?,
        None => return Ok(None),
    };
    located
        .packet
        .map(|b| {
            Packet::parse(b).map_err(|source| SidecarError::Parse {
                path: path.to_path_buf(),
                source,
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::xmp::{Node, NS_DC};

    #[test]
    fn crc_matches_png_reference() {
        // CRC of an empty IEND chunk.
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
    }

    fn tiny_jpeg() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x06, b'J', b'F', b'I', b'F']);
        v.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x03, 0x00]);
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 1, 2, 3, 0xFF, 0xD9]);
        v
    }

    #[test]
    fn jpeg_insert_then_replace_in_place() {
        let p = Path::new("t.jpg");
        let orig = tiny_jpeg();
        let add = |old: Option<Packet>| {
            let mut pk = old.unwrap_or_default();
            pk.set(NS_DC, "format", Node::text("image/jpeg"));
            Some(pk)
        };
        let Change::Write(once) = apply(p, &orig, add).unwrap() else {
            panic!()
        };
        assert_eq!(&once[..10], &orig[..10], "JFIF stays first");
        assert_eq!(&once[10..12], &[0xFF, 0xE1]);
        assert_eq!(&once[once.len() - 14..], &orig[orig.len() - 14..]);
        let read = read_embedded(p, &once).unwrap().unwrap();
        assert_eq!(
            read.get(NS_DC, "format").unwrap().as_text(),
            Some("image/jpeg")
        );
        let Change::Write(twice) = apply(p, &once, add).unwrap() else {
            panic!()
        };
        assert_eq!(once, twice);
    }

    #[test]
    fn png_chunk_goes_after_ihdr() {
        let p = Path::new("t.png");
        let mut png = PNG_SIG.to_vec();
        let chunk = |kind: &[u8], body: &[u8]| {
            let mut c = (body.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(body);
            c.extend_from_slice(&crc32(&[kind, body]).to_be_bytes());
            c
        };
        png.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
        png.extend(chunk(b"IDAT", &[1, 2, 3]));
        png.extend(chunk(b"IEND", &[]));
        let Change::Write(out) = apply(p, &png, |_| {
            let mut pk = Packet::default();
            pk.set(NS_DC, "format", Node::text("image/png"));
            Some(pk)
        })
        .unwrap() else {
            panic!()
        };
        assert_eq!(&out[33 + 4..33 + 8], b"iTXt");
        assert!(read_embedded(p, &out).unwrap().is_some());
    }
}
