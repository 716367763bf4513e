//! The XMP data model, an RDF/XML parser for it and a canonical serialiser, on quick-xml.
//!
//! Input: the bytes of a sidecar or of an embedded packet. Output: a [`Packet`] (the properties of
//! the one resource `rdf:about` describes), and back to bytes with [`Packet::serialize`].
//!
//! The parser accepts every RDF form the XMP specification (Part 1, §7 and Annex C) allows and photo
//! managers write: an optional `<?xpacket?>` wrapper and `x:xmpmeta`/`x:xapmeta` element (or a bare
//! `rdf:RDF`), several top-level `rdf:Description` nodes, simple properties as attributes
//! (darktable), `rdf:parseType="Resource"`, nested `rdf:Description` nodes, structs written as
//! attributes of an empty property element, `rdf:Bag`/`Seq`/`Alt` with `xml:lang`, `rdf:resource`
//! URIs, and qualifiers (`rdf:value`). Names are matched by namespace URI, never by prefix; unknown
//! namespaces and properties are kept. Refused with an [`XmpError`] (so that the file is never
//! rewritten): DTDs and any entity other than the five predefined ones and character references
//! (no expansion, no external fetch), non-UTF-8 input, truncated or ill-formed XML, RDF shapes that
//! XMP does not define (`rdf:parseType="Literal"`, typed nodes, mixed content) and a property given
//! twice.
//!
//! The serialiser writes one canonical form: one `rdf:Description`, properties as elements,
//! structs as `rdf:parseType="Resource"`, one-space indentation, double-quoted attributes, original
//! prefixes where they are valid and unambiguous. It is a pure function of the model, so
//! `parse(serialize(p)) == p` and serialising the same model twice gives the same bytes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use quick_xml::XmlVersion;

/// `rdf:`.
pub const NS_RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
/// `xml:` (for `xml:lang`).
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// `x:` of the `x:xmpmeta` wrapper.
pub const NS_X: &str = "adobe:ns:meta/";
pub const NS_DC: &str = "http://purl.org/dc/elements/1.1/";
pub const NS_XMP: &str = "http://ns.adobe.com/xap/1.0/";
pub const NS_PHOTOSHOP: &str = "http://ns.adobe.com/photoshop/1.0/";
pub const NS_LR: &str = "http://ns.adobe.com/lightroom/1.0/";
pub const NS_DIGIKAM: &str = "http://www.digikam.org/ns/1.0/";
/// `MicrosoftPhoto:` as Exiv2 (digiKam) writes it.
pub const NS_MICROSOFT_PHOTO: &str = "http://ns.microsoft.com/photo/1.0/";
/// `MicrosoftPhoto:` as exiftool and Windows write it (no trailing slash).
pub const NS_MICROSOFT_PHOTO_EXIFTOOL: &str = "http://ns.microsoft.com/photo/1.0";
pub const NS_MEDIAPRO: &str = "http://ns.iview-multimedia.com/mediapro/1.0/";
pub const NS_IPTC_EXT: &str = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
pub const NS_MWG_RS: &str = "http://www.metadataworkinggroup.com/schemas/regions/";
pub const NS_ST_AREA: &str = "http://ns.adobe.com/xmp/sType/Area#";
pub const NS_ST_DIM: &str = "http://ns.adobe.com/xap/1.0/sType/Dimensions#";
/// Our provenance namespace (prefix `captiond`).
pub const NS_CAPTIOND: &str = "http://ns.captiond.dev/xmp/1.0/";

/// Prefixes used for namespaces the file did not name (or named with a clashing prefix).
const WELL_KNOWN: &[(&str, &str)] = &[
    (NS_DC, "dc"),
    (NS_XMP, "xmp"),
    ("http://ns.adobe.com/xap/1.0/mm/", "xmpMM"),
    ("http://ns.adobe.com/xap/1.0/rights/", "xmpRights"),
    ("http://ns.adobe.com/xap/1.0/sType/ResourceEvent#", "stEvt"),
    ("http://ns.adobe.com/xap/1.0/sType/ResourceRef#", "stRef"),
    (NS_ST_DIM, "stDim"),
    (NS_ST_AREA, "stArea"),
    (NS_PHOTOSHOP, "photoshop"),
    (NS_LR, "lr"),
    ("http://ns.adobe.com/camera-raw-settings/1.0/", "crs"),
    ("http://ns.adobe.com/tiff/1.0/", "tiff"),
    ("http://ns.adobe.com/exif/1.0/", "exif"),
    ("http://ns.adobe.com/exif/1.0/aux/", "aux"),
    ("http://cipa.jp/exif/1.0/", "exifEX"),
    ("http://ns.adobe.com/xmp/note/", "xmpNote"),
    (
        "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
        "Iptc4xmpCore",
    ),
    (NS_IPTC_EXT, "Iptc4xmpExt"),
    (NS_DIGIKAM, "digiKam"),
    (NS_MICROSOFT_PHOTO, "MicrosoftPhoto"),
    (NS_MICROSOFT_PHOTO_EXIFTOOL, "MicrosoftPhoto"),
    (NS_MEDIAPRO, "mediapro"),
    (NS_MWG_RS, "mwg-rs"),
    ("http://darktable.sf.net/", "darktable"),
    (NS_CAPTIOND, "captiond"),
];

/// Largest sidecar we parse. Real ones are kilobytes; Lightroom's with long histories reach a few MB.
pub const MAX_PACKET_BYTES: usize = 32 << 20;
/// Deepest element nesting we follow (real XMP stays under 20).
const MAX_DEPTH: usize = 128;
/// Most namespace declarations on one element, and most attributes: real XMP has a few dozen;
/// a file with more is hostile or broken and is refused (left untouched) before it costs time.
const MAX_DECLARATIONS: usize = 4096;
const MAX_ATTRIBUTES: usize = 4096;

/// Why a packet could not be read. `offset` is the byte position in the input where known.
#[derive(Debug, thiserror::Error)]
pub enum XmpError {
    #[error("document type declarations (DTD) are refused: no entities are expanded or fetched")]
    Dtd,
    #[error("undefined entity `&{name};` at byte {offset} (only the five XML entities and character references are allowed)")]
    Entity { name: String, offset: u64 },
    #[error("not UTF-8 text (byte {offset})")]
    NotUtf8 { offset: u64 },
    #[error(
        "{size} bytes is larger than the {MAX_PACKET_BYTES} bytes an XMP packet may have here"
    )]
    TooLarge { size: usize },
    #[error("the file ends inside <{open}>: truncated")]
    Truncated { open: String },
    #[error("ill-formed XML at byte {offset}")]
    Xml {
        offset: u64,
        #[source]
        source: quick_xml::Error,
    },
    #[error("ill-formed XML at byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
    #[error("not XMP: {message}")]
    NotXmp { message: String },
    #[error("RDF that XMP does not allow at byte {offset}: {message}")]
    Rdf { offset: u64, message: String },
}

/// An expanded name: namespace URI + local name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XmpName {
    pub ns: String,
    pub local: String,
}

impl XmpName {
    pub fn new(ns: &str, local: &str) -> XmpName {
        XmpName {
            ns: ns.to_string(),
            local: local.to_string(),
        }
    }

    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }
}

/// The kind of an XMP array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayKind {
    Bag,
    Seq,
    Alt,
}

impl ArrayKind {
    fn element(self) -> &'static str {
        match self {
            ArrayKind::Bag => "rdf:Bag",
            ArrayKind::Seq => "rdf:Seq",
            ArrayKind::Alt => "rdf:Alt",
        }
    }
}

/// A value with its qualifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// The `xml:lang` qualifier (language alternatives).
    pub lang: Option<String>,
    /// Other qualifiers (written with `rdf:value`), in file order.
    pub quals: Vec<Property>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// `rdf:resource="…"`.
    Uri(String),
    Struct(Vec<Property>),
    Array(ArrayKind, Vec<Node>),
}

/// A named value: a top-level property, a struct field or a qualifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: XmpName,
    pub node: Node,
}

impl Node {
    pub fn text(s: impl Into<String>) -> Node {
        Node {
            value: Value::Text(s.into()),
            lang: None,
            quals: Vec::new(),
        }
    }

    pub fn lang_text(lang: &str, s: impl Into<String>) -> Node {
        Node {
            value: Value::Text(s.into()),
            lang: Some(lang.to_string()),
            quals: Vec::new(),
        }
    }

    pub fn array(kind: ArrayKind, items: Vec<Node>) -> Node {
        Node {
            value: Value::Array(kind, items),
            lang: None,
            quals: Vec::new(),
        }
    }

    pub fn structure(fields: Vec<Property>) -> Node {
        Node {
            value: Value::Struct(fields),
            lang: None,
            quals: Vec::new(),
        }
    }

    /// A lang-alt with one `x-default` item.
    pub fn alt_default(s: impl Into<String>) -> Node {
        Node::array(ArrayKind::Alt, vec![Node::lang_text("x-default", s)])
    }

    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn field(&self, ns: &str, local: &str) -> Option<&Node> {
        match &self.value {
            Value::Struct(fields) => find(fields, ns, local),
            _ => None,
        }
    }
}

impl Property {
    pub fn new(ns: &str, local: &str, node: Node) -> Property {
        Property {
            name: XmpName::new(ns, local),
            node,
        }
    }
}

/// The first property named `ns:local` in a list.
pub fn find<'a>(props: &'a [Property], ns: &str, local: &str) -> Option<&'a Node> {
    props.iter().find(|p| p.name.is(ns, local)).map(|p| &p.node)
}

/// The XMP of one resource, plus what the file said about how it was written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Packet {
    /// `rdf:about` (normally empty).
    pub about: String,
    /// Top-level properties in file order.
    pub props: Vec<Property>,
    /// The file had an `<?xpacket?>` wrapper (kept when it is written back).
    pub xpacket: bool,
    /// `x:xmptk` of the `x:xmpmeta` element.
    pub toolkit: Option<String>,
    /// Prefix the file used for each namespace URI (the first declaration wins); a hint for
    /// serialising, not part of the data.
    pub prefixes: Vec<(String, String)>,
}

impl Packet {
    pub fn get(&self, ns: &str, local: &str) -> Option<&Node> {
        find(&self.props, ns, local)
    }

    pub fn get_mut(&mut self, ns: &str, local: &str) -> Option<&mut Node> {
        self.props
            .iter_mut()
            .find(|p| p.name.is(ns, local))
            .map(|p| &mut p.node)
    }

    /// Sets a property, in place if it exists, else at the end.
    pub fn set(&mut self, ns: &str, local: &str, node: Node) {
        match self.get_mut(ns, local) {
            Some(n) => *n = node,
            None => self.props.push(Property::new(ns, local, node)),
        }
    }

    pub fn remove(&mut self, ns: &str, local: &str) -> Option<Node> {
        let i = self.props.iter().position(|p| p.name.is(ns, local))?;
        Some(self.props.remove(i).node)
    }

    /// The data without the serialisation hints (what "unchanged" compares).
    pub fn same_data(&self, other: &Packet) -> bool {
        self.about == other.about && self.props == other.props
    }
}

// ------------------------------------------------------------------------------------------------
// Characters and escaping

/// Whether XML 1.0 allows a character at all.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Drops characters XML cannot carry (C0 controls other than tab/LF/CR, U+FFFE, U+FFFF).
pub fn strip_illegal(s: &str) -> String {
    s.chars().filter(|&c| is_xml_char(c)).collect()
}

fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
}

fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------------------------------------
// XML → element tree

#[derive(Debug)]
struct Attr {
    name: XmpName,
    value: String,
}

#[derive(Debug)]
struct Elem {
    name: XmpName,
    /// The qualified name as written, for messages.
    qname: String,
    attrs: Vec<Attr>,
    children: Vec<Elem>,
    /// All character data directly inside, concatenated.
    text: String,
    offset: u64,
}

struct TreeBuilder {
    /// Namespace scopes, one per open element: prefix → uri ("" is the default namespace).
    /// Hash maps, so a file with many declarations costs linear time, not quadratic.
    scopes: Vec<HashMap<String, String>>,
    stack: Vec<Elem>,
    root: Option<Elem>,
    prefixes: Vec<(String, String)>,
    /// The URIs in `prefixes`.
    declared: HashSet<String>,
    xpacket: bool,
}

impl TreeBuilder {
    fn resolve(&self, prefix: &str, offset: u64) -> Result<String, XmpError> {
        if prefix == "xml" {
            return Ok(NS_XML.to_string());
        }
        for scope in self.scopes.iter().rev() {
            if let Some(uri) = scope.get(prefix) {
                return Ok(uri.clone());
            }
        }
        if prefix.is_empty() {
            Ok(String::new())
        } else {
            Err(XmpError::Syntax {
                offset,
                message: format!("undeclared namespace prefix `{prefix}`"),
            })
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, offset: u64) -> Result<(), XmpError> {
        if self.root.is_some() {
            return Err(XmpError::Syntax {
                offset,
                message: "a second root element".into(),
            });
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(XmpError::Syntax {
                offset,
                message: format!("elements nested deeper than {MAX_DEPTH}"),
            });
        }
        let mut scope = HashMap::new();
        let mut raw_attrs = Vec::new();
        for attr in e.attributes() {
            if scope.len() >= MAX_DECLARATIONS || raw_attrs.len() >= MAX_ATTRIBUTES {
                return Err(XmpError::Syntax {
                    offset,
                    message: format!(
                        "more than {MAX_DECLARATIONS} namespace declarations or \
                         {MAX_ATTRIBUTES} attributes on one element"
                    ),
                });
            }
            let attr = attr.map_err(|err| XmpError::Xml {
                offset,
                source: err.into(),
            })?;
            let key = attr.key.as_ref().to_string();
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| entity_error(err, offset))?
                .into_owned();
            // A prefix declared twice on one element is not XML; the last one wins, as before.
            if key == "xmlns" {
                scope.insert(String::new(), value);
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                if self.declared.insert(value.clone()) {
                    self.prefixes.push((value.clone(), prefix.to_string()));
                }
                scope.insert(prefix.to_string(), value);
            } else {
                raw_attrs.push((key, value));
            }
        }
        self.scopes.push(scope);
        let qname = e.name().as_ref().to_string();
        let (prefix, local) = split_qname(&qname);
        let name = XmpName {
            ns: self.resolve(prefix, offset)?,
            local: local.to_string(),
        };
        let mut attrs = Vec::with_capacity(raw_attrs.len());
        for (key, value) in raw_attrs {
            let (prefix, local) = split_qname(&key);
            // Unprefixed attributes have no namespace (the default namespace does not apply).
            let ns = if prefix.is_empty() {
                String::new()
            } else {
                self.resolve(prefix, offset)?
            };
            attrs.push(Attr {
                name: XmpName {
                    ns,
                    local: local.to_string(),
                },
                value,
            });
        }
        self.stack.push(Elem {
            name,
            qname,
            attrs,
            children: Vec::new(),
            text: String::new(),
            offset,
        });
        Ok(())
    }

    fn end(&mut self) {
        self.scopes.pop();
        if let Some(done) = self.stack.pop() {
            match self.stack.last_mut() {
                Some(parent) => parent.children.push(done),
                None => self.root = Some(done),
            }
        }
    }

    fn text(&mut self, s: &str, offset: u64) -> Result<(), XmpError> {
        match self.stack.last_mut() {
            Some(e) => e.text.push_str(s),
            None if s.chars().all(char::is_whitespace) => {}
            None => {
                return Err(XmpError::Syntax {
                    offset,
                    message: "text outside the root element".into(),
                })
            }
        }
        Ok(())
    }
}

fn entity_error(err: quick_xml::Error, offset: u64) -> XmpError {
    if let quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(_, name)) =
        &err
    {
        return XmpError::Entity {
            name: name.clone(),
            offset,
        };
    }
    XmpError::Xml {
        offset,
        source: err,
    }
}

fn split_qname(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

/// A parsed document: the root element, the file's (uri, prefix) declarations, xpacket seen.
struct Tree {
    root: Elem,
    prefixes: Vec<(String, String)>,
    xpacket: bool,
}

fn build_tree(text: &str) -> Result<Tree, XmpError> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    let mut b = TreeBuilder {
        scopes: Vec::new(),
        stack: Vec::new(),
        root: None,
        prefixes: Vec::new(),
        declared: HashSet::new(),
        xpacket: false,
    };
    loop {
        let offset = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(e) => e,
            // A tag, comment or PI cut off by the end of the input.
            Err(quick_xml::Error::Syntax(_)) if reader.buffer_position() as usize >= text.len() => {
                return Err(XmpError::Truncated {
                    open: b
                        .stack
                        .last()
                        .map_or_else(|| "the document".to_string(), |e| e.qname.clone()),
                })
            }
            Err(source) => {
                return Err(XmpError::Xml {
                    offset: reader.error_position(),
                    source,
                })
            }
        };
        match event {
            Event::DocType(_) => return Err(XmpError::Dtd),
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|err| XmpError::Xml {
                        offset,
                        source: err.into(),
                    })?;
                    let enc = enc.to_ascii_lowercase();
                    if enc != "utf-8" && enc != "utf8" {
                        return Err(XmpError::NotXmp {
                            message: format!("declared encoding {enc} (only UTF-8 is read)"),
                        });
                    }
                }
            }
            Event::PI(pi) => {
                if pi.target() == "xpacket" {
                    b.xpacket = true;
                }
            }
            Event::Start(e) => b.start(&e, offset)?,
            Event::Empty(e) => {
                b.start(&e, offset)?;
                b.end();
            }
            Event::End(_) => b.end(),
            Event::Text(t) => b.text(&t.xml10_content(), offset)?,
            Event::CData(t) => b.text(&t.xml10_content(), offset)?,
            Event::GeneralRef(r) => {
                let c = match r
                    .resolve_char_ref()
                    .map_err(|source| XmpError::Xml { offset, source })?
                {
                    Some(c) => c,
                    None => match &*r.xml10_content() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(XmpError::Entity {
                                name: other.to_string(),
                                offset,
                            })
                        }
                    },
                };
                let mut buf = [0u8; 4];
                b.text(c.encode_utf8(&mut buf), offset)?;
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = b.stack.last() {
        return Err(XmpError::Truncated {
            open: open.qname.clone(),
        });
    }
    let root = b.root.ok_or_else(|| XmpError::NotXmp {
        message: "no XML element (empty or truncated file)".into(),
    })?;
    Ok(Tree {
        root,
        prefixes: b.prefixes,
        xpacket: b.xpacket,
    })
}

// ------------------------------------------------------------------------------------------------
// Element tree → XMP model

fn rdf_err(e: &Elem, message: impl Into<String>) -> XmpError {
    XmpError::Rdf {
        offset: e.offset,
        message: format!("<{}>: {}", e.qname, message.into()),
    }
}

fn is_blank(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

impl Packet {
    /// Parses a sidecar or an embedded packet. A leading UTF-8 BOM and trailing NULs/padding are
    /// accepted.
    pub fn parse(bytes: &[u8]) -> Result<Packet, XmpError> {
        if bytes.len() > MAX_PACKET_BYTES {
            return Err(XmpError::TooLarge { size: bytes.len() });
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let bytes = &bytes[..end];
        if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
            return Err(XmpError::NotXmp {
                message: "UTF-16 text (only UTF-8 is read)".into(),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| XmpError::NotUtf8 {
            offset: e.valid_up_to() as u64,
        })?;
        let Tree {
            root,
            prefixes,
            xpacket,
        } = build_tree(text)?;
        let mut packet = Packet {
            xpacket,
            prefixes,
            ..Packet::default()
        };
        let rdf = if root.name.ns == NS_X
            && (root.name.local == "xmpmeta" || root.name.local == "xapmeta")
        {
            packet.toolkit = root
                .attrs
                .iter()
                .find(|a| a.name.is(NS_X, "xmptk") || a.name.is(NS_X, "xaptk"))
                .map(|a| a.value.clone());
            let mut rdfs = root.children.iter().filter(|c| c.name.is(NS_RDF, "RDF"));
            let rdf = rdfs.next();
            if rdfs.next().is_some() {
                return Err(rdf_err(&root, "more than one rdf:RDF"));
            }
            match rdf {
                Some(rdf) => rdf,
                None => return Ok(packet),
            }
        } else if root.name.is(NS_RDF, "RDF") {
            &root
        } else {
            return Err(XmpError::NotXmp {
                message: format!(
                    "the root element is <{}>, not x:xmpmeta or rdf:RDF",
                    root.qname
                ),
            });
        };
        let mut about: Option<String> = None;
        let mut seen = HashSet::new();
        for desc in &rdf.children {
            if !desc.name.is(NS_RDF, "Description") {
                return Err(rdf_err(
                    desc,
                    "only rdf:Description may appear inside rdf:RDF",
                ));
            }
            for a in &desc.attrs {
                if a.name.is(NS_RDF, "about") || a.name.is("", "about") {
                    match &about {
                        Some(prev)
                            if !prev.is_empty() && !a.value.is_empty() && *prev != a.value =>
                        {
                            return Err(rdf_err(
                                desc,
                                format!(
                                    "describes `{}` and `{prev}`: one resource per packet",
                                    a.value
                                ),
                            ))
                        }
                        Some(prev) if !prev.is_empty() => {}
                        _ => about = Some(a.value.clone()),
                    }
                }
            }
            if !is_blank(&desc.text) {
                return Err(rdf_err(desc, "text inside rdf:Description"));
            }
            for prop in node_element_props(desc)? {
                if !seen.insert(prop.name.clone()) {
                    return Err(rdf_err(
                        desc,
                        format!("property {}{} appears twice", prop.name.ns, prop.name.local),
                    ));
                }
                packet.props.push(prop);
            }
        }
        packet.about = about.unwrap_or_default();
        Ok(packet)
    }
}

/// The properties of an `rdf:Description` (attributes, then child elements).
fn node_element_props(desc: &Elem) -> Result<Vec<Property>, XmpError> {
    let mut props = Vec::new();
    for a in &desc.attrs {
        if a.name.ns == NS_RDF {
            match a.name.local.as_str() {
                "about" | "ID" | "nodeID" => continue,
                other => return Err(rdf_err(desc, format!("unsupported attribute rdf:{other}"))),
            }
        }
        if a.name.ns == NS_XML || a.name.ns.is_empty() {
            // xml:lang/xml:space on a node, or the legacy unqualified `about`.
            continue;
        }
        props.push(Property {
            name: a.name.clone(),
            node: Node::text(a.value.clone()),
        });
    }
    for child in &desc.children {
        props.push(Property {
            name: property_name(child)?,
            node: property_element(child)?,
        });
    }
    Ok(props)
}

fn property_name(e: &Elem) -> Result<XmpName, XmpError> {
    if e.name.ns.is_empty() {
        return Err(rdf_err(e, "a property without a namespace"));
    }
    if e.name.ns == NS_RDF && e.name.local != "value" {
        return Err(rdf_err(e, "an RDF keyword where a property belongs"));
    }
    Ok(e.name.clone())
}

/// A struct whose fields include `rdf:value` is a qualified value.
fn struct_or_qualified(fields: Vec<Property>, lang: Option<String>) -> Node {
    if let Some(i) = fields.iter().position(|p| p.name.is(NS_RDF, "value")) {
        let mut fields = fields;
        let value = fields.remove(i).node;
        return Node {
            value: value.value,
            lang: value.lang.or(lang),
            quals: fields,
        };
    }
    Node {
        value: Value::Struct(fields),
        lang,
        quals: Vec::new(),
    }
}

/// The value of a property element (or `rdf:li`), in any of RDF's forms.
fn property_element(e: &Elem) -> Result<Node, XmpError> {
    let mut lang = None;
    let mut parse_type = None;
    let mut resource = None;
    let mut value_attr = None;
    let mut prop_attrs = Vec::new();
    for a in &e.attrs {
        if a.name.ns == NS_XML {
            if a.name.local == "lang" {
                lang = Some(a.value.clone());
            }
            continue;
        }
        if a.name.ns == NS_RDF {
            match a.name.local.as_str() {
                "parseType" => parse_type = Some(a.value.as_str()),
                "resource" => resource = Some(a.value.clone()),
                "value" => value_attr = Some(a.value.clone()),
                "datatype" | "ID" | "nodeID" | "about" => {}
                other => return Err(rdf_err(e, format!("unsupported attribute rdf:{other}"))),
            }
            continue;
        }
        if a.name.ns.is_empty() {
            return Err(rdf_err(
                e,
                format!("attribute `{}` has no namespace", a.name.local),
            ));
        }
        prop_attrs.push(Property {
            name: a.name.clone(),
            node: Node::text(a.value.clone()),
        });
    }
    let has_children = !e.children.is_empty();
    if has_children && !is_blank(&e.text) {
        return Err(rdf_err(e, "mixed text and elements"));
    }
    match parse_type {
        Some("Resource") => {
            if !is_blank(&e.text) {
                return Err(rdf_err(e, "text inside rdf:parseType=\"Resource\""));
            }
            let mut fields = prop_attrs;
            for child in &e.children {
                fields.push(Property {
                    name: property_name(child)?,
                    node: property_element(child)?,
                });
            }
            return Ok(struct_or_qualified(fields, lang));
        }
        Some(other) => {
            return Err(rdf_err(
                e,
                format!("rdf:parseType=\"{other}\" is not used by XMP"),
            ))
        }
        None => {}
    }
    if let Some(uri) = resource {
        if has_children || !is_blank(&e.text) {
            return Err(rdf_err(e, "rdf:resource on a non-empty element"));
        }
        return Ok(Node {
            value: Value::Uri(uri),
            lang,
            quals: prop_attrs,
        });
    }
    if let Some(v) = value_attr {
        if has_children || !is_blank(&e.text) {
            return Err(rdf_err(e, "rdf:value attribute on a non-empty element"));
        }
        return Ok(Node {
            value: Value::Text(v),
            lang,
            quals: prop_attrs,
        });
    }
    if has_children {
        if !prop_attrs.is_empty() {
            return Err(rdf_err(
                e,
                "property attributes on an element with children",
            ));
        }
        if e.children.len() > 1 {
            return Err(rdf_err(
                e,
                "several child elements (rdf:parseType=\"Resource\" missing?)",
            ));
        }
        let child = &e.children[0];
        if child.name.ns == NS_RDF {
            let kind = match child.name.local.as_str() {
                "Bag" => Some(ArrayKind::Bag),
                "Seq" => Some(ArrayKind::Seq),
                "Alt" => Some(ArrayKind::Alt),
                "Description" => None,
                other => return Err(rdf_err(child, format!("unexpected rdf:{other}"))),
            };
            if !is_blank(&child.text) {
                return Err(rdf_err(child, "text inside a node element"));
            }
            if let Some(kind) = kind {
                let mut items = Vec::with_capacity(child.children.len());
                for li in &child.children {
                    if !li.name.is(NS_RDF, "li") {
                        return Err(rdf_err(li, "an array item that is not rdf:li"));
                    }
                    items.push(property_element(li)?);
                }
                return Ok(Node {
                    value: Value::Array(kind, items),
                    lang,
                    quals: Vec::new(),
                });
            }
            let fields = node_element_props(child)?;
            return Ok(struct_or_qualified(fields, lang));
        }
        return Err(rdf_err(
            child,
            "a typed node or a property directly inside a property",
        ));
    }
    if !prop_attrs.is_empty() {
        if !is_blank(&e.text) {
            return Err(rdf_err(e, "property attributes on an element with text"));
        }
        return Ok(Node {
            value: Value::Struct(prop_attrs),
            lang,
            quals: Vec::new(),
        });
    }
    Ok(Node {
        value: Value::Text(e.text.clone()),
        lang,
        quals: Vec::new(),
    })
}

// ------------------------------------------------------------------------------------------------
// XMP model → bytes

fn is_ncname(p: &str) -> bool {
    let mut chars = p.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !p.to_ascii_lowercase().starts_with("xml")
}

struct Prefixes {
    by_uri: HashMap<String, String>,
    /// Declaration order (first use).
    order: Vec<String>,
}

impl Prefixes {
    fn assign(packet: &Packet) -> Prefixes {
        let mut uris = Vec::new();
        let mut seen = HashSet::new();
        fn walk<'a>(props: &'a [Property], seen: &mut HashSet<&'a str>, uris: &mut Vec<&'a str>) {
            for p in props {
                if p.name.ns != NS_RDF && seen.insert(p.name.ns.as_str()) {
                    uris.push(p.name.ns.as_str());
                }
                walk_node(&p.node, seen, uris);
            }
        }
        fn walk_node<'a>(n: &'a Node, seen: &mut HashSet<&'a str>, uris: &mut Vec<&'a str>) {
            walk(&n.quals, seen, uris);
            match &n.value {
                Value::Struct(fields) => walk(fields, seen, uris),
                Value::Array(_, items) => {
                    for i in items {
                        walk_node(i, seen, uris);
                    }
                }
                Value::Text(_) | Value::Uri(_) => {}
            }
        }
        walk(&packet.props, &mut seen, &mut uris);

        let hints: HashMap<&str, &str> = packet
            .prefixes
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        let well_known: HashMap<&str, &str> = WELL_KNOWN.iter().copied().collect();
        let mut taken: HashSet<String> = ["x", "rdf", "xml", "xmlns"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut by_uri = HashMap::new();
        let mut order = Vec::new();
        let mut n = 0;
        for uri in uris {
            let candidates = [hints.get(uri).copied(), well_known.get(uri).copied()];
            let prefix = match candidates
                .into_iter()
                .flatten()
                .find(|p| is_ncname(p) && !taken.contains(*p))
            {
                Some(p) => p.to_string(),
                None => loop {
                    n += 1;
                    let p = format!("ns{n}");
                    if !taken.contains(&p) {
                        break p;
                    }
                },
            };
            taken.insert(prefix.clone());
            by_uri.insert(uri.to_string(), prefix);
            order.push(uri.to_string());
        }
        Prefixes { by_uri, order }
    }

    fn qname(&self, name: &XmpName) -> String {
        if name.ns == NS_RDF {
            return format!("rdf:{}", name.local);
        }
        format!("{}:{}", self.by_uri[&name.ns], name.local)
    }
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push(' ');
    }
}

fn lang_attr(out: &mut String, lang: &Option<String>) {
    if let Some(l) = lang {
        out.push_str(" xml:lang=\"");
        escape_attr(out, l);
        out.push('"');
    }
}

fn write_prop(out: &mut String, level: usize, qname: &str, node: &Node, p: &Prefixes) {
    if !node.quals.is_empty() {
        indent(out, level);
        let _ = writeln!(out, "<{qname} rdf:parseType=\"Resource\">");
        let bare = Node {
            value: node.value.clone(),
            lang: node.lang.clone(),
            quals: Vec::new(),
        };
        write_prop(out, level + 1, "rdf:value", &bare, p);
        for q in &node.quals {
            write_prop(out, level + 1, &p.qname(&q.name), &q.node, p);
        }
        indent(out, level);
        let _ = writeln!(out, "</{qname}>");
        return;
    }
    indent(out, level);
    out.push('<');
    out.push_str(qname);
    lang_attr(out, &node.lang);
    match &node.value {
        Value::Text(s) if s.is_empty() => out.push_str("/>\n"),
        Value::Text(s) => {
            out.push('>');
            escape_text(out, s);
            let _ = writeln!(out, "</{qname}>");
        }
        Value::Uri(u) => {
            out.push_str(" rdf:resource=\"");
            escape_attr(out, u);
            out.push_str("\"/>\n");
        }
        Value::Struct(fields) if fields.is_empty() => {
            out.push_str(" rdf:parseType=\"Resource\"/>\n");
        }
        Value::Struct(fields) => {
            out.push_str(" rdf:parseType=\"Resource\">\n");
            for f in fields {
                write_prop(out, level + 1, &p.qname(&f.name), &f.node, p);
            }
            indent(out, level);
            let _ = writeln!(out, "</{qname}>");
        }
        Value::Array(kind, items) => {
            out.push_str(">\n");
            indent(out, level + 1);
            if items.is_empty() {
                let _ = writeln!(out, "<{}/>", kind.element());
            } else {
                let _ = writeln!(out, "<{}>", kind.element());
                for item in items {
                    write_prop(out, level + 2, "rdf:li", item, p);
                }
                indent(out, level + 1);
                let _ = writeln!(out, "</{}>", kind.element());
            }
            indent(out, level);
            let _ = writeln!(out, "</{qname}>");
        }
    }
}

impl Packet {
    /// The canonical bytes of this packet (UTF-8, no BOM, trailing newline). With `xpacket`, the
    /// `<?xpacket?>` wrapper (read-only `end="w"`) surrounds it; `padding` spaces are added
    /// before the trailer (for embedded packets that may be edited in place).
    pub fn serialize(&self, padding: usize) -> Vec<u8> {
        let p = Prefixes::assign(self);
        let mut out = String::with_capacity(1024);
        if self.xpacket {
            out.push_str("<?xpacket begin=\"\u{FEFF}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n");
        }
        out.push_str("<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"");
        if let Some(tk) = &self.toolkit {
            out.push_str(" x:xmptk=\"");
            escape_attr(&mut out, tk);
            out.push('"');
        }
        out.push_str(">\n");
        let _ = writeln!(out, " <rdf:RDF xmlns:rdf=\"{NS_RDF}\">");
        out.push_str("  <rdf:Description rdf:about=\"");
        escape_attr(&mut out, &self.about);
        out.push('"');
        for uri in &p.order {
            out.push_str("\n    xmlns:");
            out.push_str(&p.by_uri[uri]);
            out.push_str("=\"");
            escape_attr(&mut out, uri);
            out.push('"');
        }
        if self.props.is_empty() {
            out.push_str("/>\n");
        } else {
            out.push_str(">\n");
            for prop in &self.props {
                write_prop(&mut out, 3, &p.qname(&prop.name), &prop.node, &p);
            }
            out.push_str("  </rdf:Description>\n");
        }
        out.push_str(" </rdf:RDF>\n</x:xmpmeta>\n");
        if self.xpacket {
            for i in 0..padding {
                out.push(if i % 100 == 99 { '\n' } else { ' ' });
            }
            out.push_str("<?xpacket end=\"w\"?>\n");
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Packet {
        Packet::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    fn roundtrip(p: &Packet) {
        let bytes = p.serialize(0);
        let again = Packet::parse(&bytes).unwrap_or_else(|e| {
            panic!("{e}\n{}", String::from_utf8_lossy(&bytes));
        });
        assert!(again.same_data(p), "{p:#?}\n{again:#?}");
        assert_eq!(again.serialize(0), bytes, "serialising twice differs");
    }

    const LR: &str = r#"<?xpacket begin="﻿" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   xmp:Rating="3"
   crs:Exposure2012="+0.50">
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
   <crs:Look>
    <rdf:Description crs:Name="Adobe Color">
     <crs:Parameters>
      <rdf:Description crs:Version="15.0"/>
     </crs:Parameters>
    </rdf:Description>
   </crs:Look>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:DC="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">
   <DC:description><rdf:Alt><rdf:li xml:lang="x-default">Tom &amp; Jerry &#x263A; &lt;b&gt;</rdf:li><rdf:li xml:lang="de">Tom</rdf:li></rdf:Alt></DC:description>
   <DC:creator><rdf:Seq><rdf:li>Ann</rdf:li></rdf:Seq></DC:creator>
   <DC:rights rdf:parseType="Resource"><rdf:value>CC</rdf:value><xmp:Label>q</xmp:Label></DC:rights>
   <DC:source rdf:resource="http://example.com/a?b=1&amp;c=2"/>
   <DC:type></DC:type>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"#;

    #[test]
    fn lightroom_shape_parses_by_namespace_not_prefix() {
        let p = parse(LR);
        assert!(p.xpacket);
        assert_eq!(p.toolkit.as_deref(), Some("Adobe XMP Core 7.0"));
        assert_eq!(p.get(NS_XMP, "Rating").unwrap().as_text(), Some("3"));
        let desc = p.get(NS_DC, "description").unwrap();
        let Value::Array(ArrayKind::Alt, items) = &desc.value else {
            panic!("{desc:?}")
        };
        assert_eq!(items[0].as_text(), Some("Tom & Jerry ☺ <b>"));
        assert_eq!(items[0].lang.as_deref(), Some("x-default"));
        let look = p
            .get("http://ns.adobe.com/camera-raw-settings/1.0/", "Look")
            .unwrap();
        let params = look
            .field("http://ns.adobe.com/camera-raw-settings/1.0/", "Parameters")
            .unwrap();
        assert!(params
            .field("http://ns.adobe.com/camera-raw-settings/1.0/", "Version")
            .is_some());
        let rights = p.get(NS_DC, "rights").unwrap();
        assert_eq!(rights.as_text(), Some("CC"));
        assert_eq!(rights.quals.len(), 1);
        assert_eq!(
            p.get(NS_DC, "source").unwrap().value,
            Value::Uri("http://example.com/a?b=1&c=2".into())
        );
        assert_eq!(p.get(NS_DC, "type").unwrap().as_text(), Some(""));
        roundtrip(&p);
        // The file's prefix is kept when it is valid and free.
        let out = String::from_utf8(p.serialize(0)).unwrap();
        assert!(
            out.contains("xmlns:DC=\"http://purl.org/dc/elements/1.1/\""),
            "{out}"
        );
        assert!(!out.starts_with('\u{FEFF}'));
    }

    #[test]
    fn darktable_attributes_without_xpacket() {
        let s = r#"<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:darktable="http://darktable.sf.net/"
    darktable:xmp_version="5" darktable:history_end="2">
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="exposure" darktable:enabled="1"/>
     <rdf:li darktable:num="1" darktable:operation="colorin" darktable:enabled="1"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"#;
        let p = parse(s);
        assert!(!p.xpacket);
        let Value::Array(ArrayKind::Seq, items) =
            &p.get("http://darktable.sf.net/", "history").unwrap().value
        else {
            panic!()
        };
        assert_eq!(
            items[1]
                .field("http://darktable.sf.net/", "operation")
                .unwrap()
                .as_text(),
            Some("colorin")
        );
        roundtrip(&p);
        assert!(!String::from_utf8(p.serialize(0))
            .unwrap()
            .contains("xpacket"));
    }

    #[test]
    fn bare_rdf_and_default_namespace() {
        let s = r#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description about="" xmlns="http://purl.org/dc/elements/1.1/"><title><rdf:Alt><rdf:li xml:lang="x-default">t</rdf:li></rdf:Alt></title></rdf:Description></rdf:RDF>"#;
        let p = parse(s);
        assert!(p.get(NS_DC, "title").is_some());
        roundtrip(&p);
    }

    #[test]
    fn prefix_clash_gets_a_fresh_prefix() {
        let s = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:a="urn:one" a:p="1"/>
<rdf:Description rdf:about="" xmlns:a="urn:two" a:p="2"/>
<rdf:Description rdf:about="" xmlns:x="urn:three" x:p="3"/>
</rdf:RDF></x:xmpmeta>"#;
        let p = parse(s);
        assert_eq!(p.get("urn:one", "p").unwrap().as_text(), Some("1"));
        assert_eq!(p.get("urn:two", "p").unwrap().as_text(), Some("2"));
        assert_eq!(p.get("urn:three", "p").unwrap().as_text(), Some("3"));
        roundtrip(&p);
    }

    #[test]
    fn empty_forms_and_whitespace_values_round_trip() {
        let mut p = Packet::default();
        p.props
            .push(Property::new("urn:t", "empty", Node::text("")));
        p.props
            .push(Property::new("urn:t", "spaces", Node::text("  \n ")));
        p.props.push(Property::new(
            "urn:t",
            "cr",
            Node::text("a\r\nb\tc \"q\" 'a'"),
        ));
        p.props
            .push(Property::new("urn:t", "s", Node::structure(Vec::new())));
        p.props.push(Property::new(
            "urn:t",
            "b",
            Node::array(ArrayKind::Bag, Vec::new()),
        ));
        p.props.push(Property::new(
            "urn:t",
            "nested",
            Node::array(
                ArrayKind::Seq,
                vec![Node::array(ArrayKind::Bag, vec![Node::text("x")])],
            ),
        ));
        p.props.push(Property::new(
            "urn:t",
            "q",
            Node {
                value: Value::Uri("urn:x".into()),
                lang: Some("en".into()),
                quals: vec![Property::new("urn:q", "k", Node::text("v"))],
            },
        ));
        roundtrip(&p);
        p.xpacket = true;
        roundtrip(&p);
    }

    #[test]
    fn illegal_characters_are_dropped_on_output() {
        let mut p = Packet::default();
        p.props.push(Property::new(
            NS_DC,
            "x",
            Node::text("a\u{1}b\u{FFFE}c\u{0}d"),
        ));
        let again = Packet::parse(&p.serialize(0)).unwrap();
        assert_eq!(again.get(NS_DC, "x").unwrap().as_text(), Some("abcd"));
    }

    fn err(s: &str) -> XmpError {
        match Packet::parse(s.as_bytes()) {
            Ok(p) => panic!("parsed: {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn refuses_dtds_entities_and_broken_input() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="&lol2;"/></rdf:RDF></x:xmpmeta>"#;
        assert!(matches!(err(bomb), XmpError::Dtd));
        let ext = r#"<!DOCTYPE x SYSTEM "http://example.com/x.dtd"><x:xmpmeta xmlns:x="adobe:ns:meta/"/>"#;
        assert!(matches!(err(ext), XmpError::Dtd));
        let undefined = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:format>&lol;</dc:format></rdf:Description></rdf:RDF></x:xmpmeta>"#;
        assert!(
            matches!(err(undefined), XmpError::Entity { .. }),
            "{}",
            err(undefined)
        );
        let in_attr = undefined
            .replace("<dc:format>&lol;</dc:format>", "")
            .replace("rdf:about=\"\"", "rdf:about=\"\" dc:format=\"&lol;\"");
        assert!(
            matches!(err(&in_attr), XmpError::Entity { .. }),
            "{}",
            err(&in_attr)
        );
        let truncated = &LR[..LR.len() / 2];
        let e = err(truncated);
        assert!(
            matches!(e, XmpError::Truncated { .. } | XmpError::Xml { .. }),
            "{e}"
        );
        assert!(matches!(err(""), XmpError::NotXmp { .. }));
        assert!(matches!(err("<html/>"), XmpError::NotXmp { .. }));
        let dup = r#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:a="urn:a" a:p="1"/><rdf:Description rdf:about="" xmlns:b="urn:a" b:p="2"/></rdf:RDF>"#;
        assert!(matches!(err(dup), XmpError::Rdf { .. }));
        let literal = r#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:a="urn:a"><a:p rdf:parseType="Literal"><b/></a:p></rdf:Description></rdf:RDF>"#;
        assert!(matches!(err(literal), XmpError::Rdf { .. }));
        assert!(matches!(
            Packet::parse(b"\xFF\xFE<\x00x\x00"),
            Err(XmpError::NotXmp { .. })
        ));
        assert!(matches!(
            Packet::parse(b"<a>\xC3</a>"),
            Err(XmpError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn bom_and_trailing_nuls_are_accepted() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(LR.as_bytes());
        bytes.extend_from_slice(b"\n\0\0\0");
        assert!(Packet::parse(&bytes).is_ok());
    }

    /// Many namespace declarations (hostile or generated): resolved through hash maps, the
    /// file's data kept; past the per-element cap, refused without a change.
    #[test]
    fn many_namespace_declarations_parse_and_too_many_are_refused() {
        let mut doc = String::from(
            r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">"#,
        );
        for d in 0..40 {
            doc.push_str("<rdf:Description rdf:about=\"\"");
            for i in 0..1000 {
                doc.push_str(&format!(" xmlns:p{d}x{i}=\"urn:test:{d}:{i}\""));
            }
            doc.push_str(&format!(" p{d}x999:v=\"{d}\"/>"));
        }
        doc.push_str("</rdf:RDF></x:xmpmeta>");
        let packet = Packet::parse(doc.as_bytes()).unwrap();
        assert!(find(&packet.props, "urn:test:39:999", "v").is_some());

        let mut hostile = String::from(
            r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description"#,
        );
        for i in 0..=MAX_DECLARATIONS {
            hostile.push_str(&format!(" xmlns:p{i}=\"urn:h:{i}\""));
        }
        hostile.push_str("/></rdf:RDF></x:xmpmeta>");
        let err = Packet::parse(hostile.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("namespace declarations"), "{err}");
    }
}
