//! The IPTC-IIM caption and keywords a JPEG carries in its APP13 "Photoshop 3.0" segment
//! (resource 0x0404), where Lightroom, Photo Mechanic, exiftool and older tools write
//! `Caption-Abstract` (2:120) and `Keywords` (2:25). Read-only: captiond never writes IIM. A new
//! sidecar starts from them when the photo's XMP lacks a caption or keywords, as exiftool's MWG
//! rules and digiKam do, so a person's words are not hidden behind ours.
//!
//! Hand-written because the few Rust IPTC readers are unmaintained or pull in a whole image stack;
//! the format is a flat list of `0x1C record dataset length value` records.

/// What the IIM block says about the picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IptcText {
    /// 2:120 Caption-Abstract.
    pub caption: Option<String>,
    /// 2:25 Keywords, in file order.
    pub keywords: Vec<String>,
}

/// Reads the IIM caption and keywords of a JPEG (`None` when it has no IIM block, or is no
/// JPEG). Malformed blocks give what could be read before the damage.
pub fn read_jpeg_iptc(data: &[u8]) -> Option<IptcText> {
    let block = photoshop_iptc(data)?;
    Some(parse_iim(block))
}

/// The IIM bytes of the first APP13 segment's resource 0x0404.
fn photoshop_iptc(data: &[u8]) -> Option<&[u8]> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // image data: no metadata segments after this
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        let body = data.get(i + 4..i + 2 + len)?;
        if marker == 0xED {
            if let Some(resources) = body.strip_prefix(b"Photoshop 3.0\0") {
                if let Some(iim) = resource(resources, 0x0404) {
                    return Some(iim);
                }
            }
        }
        i += 2 + len.max(2);
    }
    None
}

/// One Photoshop image resource (`8BIM`, id, even-padded Pascal name, size, even-padded data).
fn resource(mut data: &[u8], wanted: u16) -> Option<&[u8]> {
    while data.len() >= 12 && &data[..4] == b"8BIM" {
        let id = u16::from_be_bytes([data[4], data[5]]);
        let name_len = data[6] as usize;
        let name_total = (1 + name_len).next_multiple_of(2);
        let at = 6 + name_total;
        let size = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        let start = at + 4;
        let value = data.get(start..start.checked_add(size)?)?;
        if id == wanted {
            return Some(value);
        }
        data = data.get(start + size.next_multiple_of(2)..)?;
    }
    None
}

/// The caption and keywords among the IIM datasets. Text is UTF-8 when the block says so
/// (1:90 = ESC % G) or when it decodes as UTF-8; otherwise Latin-1, IIM's old default.
fn parse_iim(mut data: &[u8]) -> IptcText {
    let mut raw_caption = None;
    let mut raw_keywords = Vec::new();
    let mut utf8_declared = false;
    while data.len() >= 5 && data[0] == 0x1C {
        let (record, dataset) = (data[1], data[2]);
        let len = u16::from_be_bytes([data[3], data[4]]) as usize;
        if len & 0x8000 != 0 {
            break; // extended lengths: not used for text, and not worth trusting here
        }
        let Some(value) = data.get(5..5 + len) else {
            break;
        };
        match (record, dataset) {
            (1, 90) => utf8_declared = value == b"\x1b%G",
            (2, 120) => raw_caption = Some(value),
            (2, 25) => raw_keywords.push(value),
            _ => {}
        }
        data = &data[5 + len..];
    }
    let text = |v: &[u8]| -> Option<String> {
        let s = match std::str::from_utf8(v) {
            Ok(s) => s.to_owned(),
            Err(_) if utf8_declared => String::from_utf8_lossy(v).into_owned(),
            Err(_) => v.iter().map(|&b| b as char).collect(),
        };
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| s.to_owned())
    };
    IptcText {
        caption: raw_caption.and_then(text),
        keywords: raw_keywords.into_iter().filter_map(text).collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn dataset(record: u8, number: u8, value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x1C, record, number];
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
        v.extend_from_slice(value);
        v
    }

    /// A JPEG with an APP13 IIM block holding `datasets` (as exiftool writes one).
    pub(crate) fn jpeg_with_iim(datasets: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let iim: Vec<u8> = datasets
            .iter()
            .flat_map(|(r, n, v)| dataset(*r, *n, v))
            .collect();
        let mut res = b"8BIM".to_vec();
        res.extend_from_slice(&0x0404u16.to_be_bytes());
        res.extend_from_slice(&[0, 0]); // empty name, padded
        res.extend_from_slice(&(iim.len() as u32).to_be_bytes());
        res.extend_from_slice(&iim);
        if iim.len() % 2 == 1 {
            res.push(0);
        }
        let mut body = b"Photoshop 3.0\0".to_vec();
        body.extend_from_slice(&res);
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x06, b'J', b'F', b'I', b'F'];
        out.extend_from_slice(&[0xFF, 0xED]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 1, 2, 0xFF, 0xD9]);
        out
    }

    #[test]
    fn caption_and_keywords_are_read() {
        let jpeg = jpeg_with_iim(&[
            (1, 90, b"\x1b%G"),
            (2, 0, &[0, 4]),
            (2, 120, "Grand-mère à la plage".as_bytes()),
            (2, 25, b"beach"),
            (2, 25, "été".as_bytes()),
            (2, 25, b"  "),
        ]);
        assert_eq!(
            read_jpeg_iptc(&jpeg),
            Some(IptcText {
                caption: Some("Grand-mère à la plage".into()),
                keywords: vec!["beach".into(), "été".into()],
            })
        );
    }

    #[test]
    fn latin1_without_a_declaration_and_broken_blocks() {
        let jpeg = jpeg_with_iim(&[(2, 120, b"caf\xe9")]);
        assert_eq!(
            read_jpeg_iptc(&jpeg).unwrap().caption.as_deref(),
            Some("café")
        );
        // A dataset running past the block: what came before is kept.
        let mut jpeg = jpeg_with_iim(&[(2, 25, b"kept"), (2, 120, b"cut")]);
        let at = jpeg.windows(3).position(|w| w == b"cut").unwrap();
        jpeg[at - 1] = 200;
        let got = read_jpeg_iptc(&jpeg).unwrap();
        assert_eq!(got.keywords, ["kept"]);
        assert_eq!(got.caption, None);
        assert_eq!(read_jpeg_iptc(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(read_jpeg_iptc(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
    }
}
