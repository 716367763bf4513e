//! Merges our content into a [`Packet`] without touching anyone else's data.
//!
//! Input: the packet as read (or empty), the [`Clean`] content and the settings. Output: the packet
//! with our fields updated. Ownership is recorded in our namespace ([`NS_CAPTIOND`]) and only
//! what it records is ever replaced or removed:
//!
//! - caption (`dc:description`, x-default): written when it is empty or still hashes to
//!   `captiond:CaptionHash`; otherwise a person's caption stays (and a `photoshop:CaptionWriter`
//!   naming us is dropped, since the caption is no longer ours);
//! - keywords: each container (`dc:subject`, `lr:hierarchicalSubject`, `digiKam:TagsList`, plus
//!   `MicrosoftPhoto:LastKeywordXMP` and `mediapro:CatalogSets` when present) keeps a
//!   `captiond:Added…` list of the entries we put there; entries a person already had are never
//!   claimed. A new `digiKam:TagsList` is seeded with the person's tags from the container digiKam
//!   would otherwise have read, so that adding ours does not hide theirs;
//! - IPTC regions: ours carry `rId`s listed in `captiond:RegionIds`; MWG regions (opt-in) are
//!   recognised by the fingerprints in `captiond:MwgRegions`. Ours are replaced in place, so a
//!   re-run with the same content changes nothing.
//!
//! `xmp:MetadataDate` is set by the caller, only when this changed something.

use std::collections::HashSet;

use super::content::{Clean, CleanRegion};
use super::xmp::*;
use super::SidecarSettings;

/// IPTC region role: "the region contains a subject" (IPTC Image Region Role NewsCodes).
pub const ROLE_SUBJECT_AREA: &str = "http://cv.iptc.org/newscodes/imageregionrole/subjectArea";
const REGION_TYPE_CV: &str = "http://cv.iptc.org/newscodes/imageregiontype/";
/// Prefix of the `rId`s we give our IPTC regions.
pub const RID_PREFIX: &str = "captiond-";

/// A keyword container and how our keywords look in it.
struct Container {
    ns: &'static str,
    /// Another spelling of the namespace URI seen in the wild (matched too, kept as found).
    alt_ns: Option<&'static str>,
    local: &'static str,
    kind: ArrayKind,
    /// Hierarchy separator; `None` for the flat `dc:subject`.
    sep: Option<&'static str>,
    /// Created when absent (else only updated when present).
    create: bool,
    /// Our provenance field listing what we added here.
    record: &'static str,
}

const CONTAINERS: &[Container] = &[
    Container {
        ns: NS_DC,
        alt_ns: None,
        local: "subject",
        kind: ArrayKind::Bag,
        sep: None,
        create: true,
        record: "AddedSubject",
    },
    Container {
        ns: NS_LR,
        alt_ns: None,
        local: "hierarchicalSubject",
        kind: ArrayKind::Bag,
        sep: Some("|"),
        create: true,
        record: "AddedHierarchicalSubject",
    },
    Container {
        ns: NS_DIGIKAM,
        alt_ns: None,
        local: "TagsList",
        kind: ArrayKind::Seq,
        sep: Some("/"),
        create: true,
        record: "AddedTagsList",
    },
    Container {
        ns: NS_MICROSOFT_PHOTO,
        alt_ns: Some(NS_MICROSOFT_PHOTO_EXIFTOOL),
        local: "LastKeywordXMP",
        kind: ArrayKind::Bag,
        sep: Some("/"),
        create: false,
        record: "AddedLastKeywordXMP",
    },
    Container {
        ns: NS_MEDIAPRO,
        alt_ns: None,
        local: "CatalogSets",
        kind: ArrayKind::Bag,
        sep: Some("|"),
        create: false,
        record: "AddedCatalogSets",
    },
];

/// A 128-bit blake3 of the caption we wrote (hex).
pub fn caption_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
}

/// Formats a normalised coordinate: at most 6 decimals, no trailing zeros.
pub fn fmt_coord(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Unix ms → `YYYY-MM-DDThh:mm:ssZ`.
pub fn xmp_date(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn texts(node: Option<&Node>) -> Vec<String> {
    match node.map(|n| &n.value) {
        Some(Value::Array(_, items)) => items
            .iter()
            .filter_map(|i| i.as_text().map(str::to_string))
            .collect(),
        Some(Value::Text(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn ours(packet: &Packet, local: &str) -> Vec<String> {
    texts(packet.get(NS_CAPTIOND, local))
}

fn set_or_remove_list(packet: &mut Packet, local: &str, kind: ArrayKind, items: &[String]) {
    if items.is_empty() {
        packet.remove(NS_CAPTIOND, local);
    } else {
        packet.set(
            NS_CAPTIOND,
            local,
            Node::array(kind, items.iter().map(Node::text).collect()),
        );
    }
}

fn set_or_remove_text(packet: &mut Packet, ns: &str, local: &str, text: &str) {
    if text.is_empty() {
        packet.remove(ns, local);
    } else {
        packet.set(ns, local, Node::text(text));
    }
}

/// Ownership lists to write once every merge step has read the old ones.
type Records = Vec<(&'static str, Vec<String>)>;

/// Applies `content` to `packet`. Our provenance fields go at the end, in a fixed order, when
/// first written; later runs update them in place.
pub(crate) fn merge(packet: &mut Packet, content: &Clean, settings: &SidecarSettings) {
    let mut records = Records::new();
    let hash = merge_caption(packet, content);
    merge_keywords(packet, content, &mut records);
    merge_iptc_regions(packet, content, &mut records);
    merge_mwg_regions(packet, content, settings.mwg_regions, &mut records);

    let p = &content.provenance;
    set_or_remove_text(packet, NS_CAPTIOND, "Model", &p.model);
    set_or_remove_text(packet, NS_CAPTIOND, "Revision", &p.revision);
    set_or_remove_list(packet, "Tasks", ArrayKind::Seq, &p.tasks);
    let time = if p.time > 0 {
        xmp_date(p.time)
    } else {
        String::new()
    };
    set_or_remove_text(packet, NS_CAPTIOND, "Time", &time);
    set_or_remove_text(
        packet,
        NS_CAPTIOND,
        "CaptionHash",
        hash.as_deref().unwrap_or(""),
    );
    set_or_remove_list(packet, "Keywords", ArrayKind::Bag, &content.leaves);
    for (local, items) in records {
        set_or_remove_list(packet, local, ArrayKind::Bag, &items);
    }
}

// ------------------------------------------------------------------------------------------------
// Caption

fn is_default_lang(n: &Node) -> bool {
    n.lang
        .as_deref()
        .is_some_and(|l| l.eq_ignore_ascii_case("x-default"))
}

/// The caption as readers see it: the x-default item, else the first item.
fn current_caption(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Text(s) => Some(s),
        Value::Array(_, items) => items
            .iter()
            .find(|i| is_default_lang(i))
            .or(items.first())
            .and_then(|i| i.as_text()),
        _ => None,
    }
}

fn caption_is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Text(s) => s.trim().is_empty(),
        Value::Array(_, items) => items
            .iter()
            .all(|i| i.as_text().is_some_and(|t| t.trim().is_empty())),
        _ => false,
    }
}

/// Returns the hash to record: `Some` when the caption in the packet is ours afterwards.
fn merge_caption(packet: &mut Packet, content: &Clean) -> Option<String> {
    let recorded = ours(packet, "CaptionHash").into_iter().next();
    let existing = packet.get(NS_DC, "description");
    let empty = existing.is_none_or(caption_is_empty);
    let is_ours = match (existing, &recorded) {
        (Some(node), Some(h)) => current_caption(node).is_some_and(|c| caption_hash(c) == *h),
        _ => false,
    };
    let writer_is_ours = packet
        .get(NS_PHOTOSHOP, "CaptionWriter")
        .and_then(Node::as_text)
        .is_some_and(|w| w == content.writer);
    match &content.caption {
        Some(caption) if empty || is_ours => {
            let node = packet.get_mut(NS_DC, "description");
            match node {
                Some(Node {
                    value: Value::Array(ArrayKind::Alt, items),
                    ..
                }) => match items.iter_mut().find(|i| is_default_lang(i)) {
                    Some(item) => *item = Node::lang_text("x-default", caption.clone()),
                    None => items.insert(0, Node::lang_text("x-default", caption.clone())),
                },
                _ => packet.set(NS_DC, "description", Node::alt_default(caption.clone())),
            }
            packet.set(
                NS_PHOTOSHOP,
                "CaptionWriter",
                Node::text(content.writer.clone()),
            );
            Some(caption_hash(caption))
        }
        Some(_) => {
            // A person's caption: leave it, and do not claim to have written it.
            if recorded.is_some() && writer_is_ours {
                packet.remove(NS_PHOTOSHOP, "CaptionWriter");
            }
            None
        }
        None => {
            if is_ours {
                let mut now_empty = true;
                if let Some(Node {
                    value: Value::Array(_, items),
                    ..
                }) = packet.get_mut(NS_DC, "description")
                {
                    match items.iter().position(is_default_lang) {
                        Some(i) => {
                            items.remove(i);
                        }
                        None => items.clear(),
                    }
                    now_empty = items.is_empty();
                }
                if now_empty {
                    packet.remove(NS_DC, "description");
                }
            }
            if recorded.is_some() && writer_is_ours {
                packet.remove(NS_PHOTOSHOP, "CaptionWriter");
            }
            None
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Keywords

impl Container {
    /// The namespace spelling this packet uses for the container.
    fn ns_in(&self, packet: &Packet) -> &'static str {
        match self.alt_ns {
            Some(alt)
                if packet.get(self.ns, self.local).is_none()
                    && packet.get(alt, self.local).is_some() =>
            {
                alt
            }
            _ => self.ns,
        }
    }
}

fn keyword_form(c: &Container, parent: &[String], leaf: &str) -> String {
    match c.sep {
        None => leaf.to_string(),
        Some(sep) if parent.is_empty() => {
            let _ = sep;
            leaf.to_string()
        }
        Some(sep) => format!("{}{sep}{leaf}", parent.join(sep)),
    }
}

/// Tags digiKam would show if `digiKam:TagsList` did not exist: the first non-empty container in
/// its reading order, as `/` paths, without the entries we added there.
fn digikam_seed(packet: &Packet) -> Vec<String> {
    let ms = CONTAINERS[3].ns_in(packet);
    let order: [(&str, &str, Option<&str>, &str); 4] = [
        (ms, "LastKeywordXMP", None, "AddedLastKeywordXMP"),
        (
            NS_LR,
            "hierarchicalSubject",
            Some("|"),
            "AddedHierarchicalSubject",
        ),
        (NS_MEDIAPRO, "CatalogSets", Some("|"), "AddedCatalogSets"),
        (NS_DC, "subject", None, "AddedSubject"),
    ];
    for (ns, local, sep, record) in order {
        let added: HashSet<String> = ours(packet, record).into_iter().collect();
        let tags: Vec<String> = texts(packet.get(ns, local))
            .into_iter()
            .filter(|t| !t.trim().is_empty() && !added.contains(t))
            .map(|t| match sep {
                Some(sep) => t.replace(sep, "/"),
                None => t,
            })
            .collect();
        if !tags.is_empty() {
            return tags;
        }
    }
    Vec::new()
}

fn merge_keywords(packet: &mut Packet, content: &Clean, records: &mut Records) {
    let seed = if packet.get(NS_DIGIKAM, "TagsList").is_none() {
        digikam_seed(packet)
    } else {
        Vec::new()
    };
    for c in CONTAINERS {
        let ns = c.ns_in(packet);
        let mut desired: Vec<String> = Vec::new();
        for leaf in &content.leaves {
            let form = keyword_form(c, &content.parent, leaf);
            if !desired.contains(&form) {
                desired.push(form);
            }
        }
        let prev: HashSet<String> = ours(packet, c.record).into_iter().collect();
        let mut added: Vec<String> = Vec::new();
        let existing = packet.get(ns, c.local);
        let (kind, items, lang, quals) = match existing {
            None if !c.create || desired.is_empty() => {
                records.push((c.record, added));
                continue;
            }
            None => {
                let items = if c.ns == NS_DIGIKAM {
                    seed.iter().map(Node::text).collect()
                } else {
                    Vec::new()
                };
                (c.kind, items, None, Vec::new())
            }
            Some(Node {
                value: Value::Array(kind, items),
                lang,
                quals,
            }) => (*kind, items.clone(), lang.clone(), quals.clone()),
            Some(Node {
                value: Value::Text(s),
                lang,
                quals,
            }) => {
                let items = if s.is_empty() {
                    Vec::new()
                } else {
                    vec![Node::text(s.clone())]
                };
                (c.kind, items, lang.clone(), quals.clone())
            }
            Some(_) => {
                // A struct or URI where a list belongs: not ours to fix (and nothing of ours in it).
                records.push((c.record, added));
                continue;
            }
        };
        let mut new_items: Vec<Node> = items
            .iter()
            .filter(|i| {
                !i.as_text()
                    .is_some_and(|t| prev.contains(t) && !desired.contains(&t.to_string()))
            })
            .cloned()
            .collect();
        for d in &desired {
            let present = new_items.iter().any(|i| i.as_text() == Some(d.as_str()));
            if !present {
                new_items.push(Node::text(d.clone()));
                added.push(d.clone());
            } else if prev.contains(d) {
                added.push(d.clone());
            }
        }
        let unchanged = matches!(existing, Some(Node { value: Value::Array(k, old), .. }) if *k == kind && *old == new_items);
        if !unchanged {
            if new_items.is_empty() {
                packet.remove(ns, c.local);
            } else {
                packet.set(
                    ns,
                    c.local,
                    Node {
                        value: Value::Array(kind, new_items),
                        lang,
                        quals,
                    },
                );
            }
        }
        records.push((c.record, added));
    }
}

// ------------------------------------------------------------------------------------------------
// Regions

/// An IPTC region type for labels we can place with confidence (IPTC Image Region Type NewsCodes).
fn iptc_region_type(label: &str) -> Option<&'static str> {
    const HUMAN: &[&str] = &[
        "person", "man", "woman", "boy", "girl", "child", "baby", "people", "human", "lady",
    ];
    const ANIMAL: &[&str] = &[
        "animal", "dog", "cat", "bird", "horse", "cow", "sheep", "elephant", "bear", "zebra",
        "giraffe", "duck", "fish", "puppy", "kitten", "goat", "pig", "deer", "monkey", "lion",
        "tiger", "rabbit", "squirrel", "chicken",
    ];
    const PLANT: &[&str] = &[
        "plant",
        "tree",
        "flower",
        "houseplant",
        "potted plant",
        "bush",
    ];
    let l = label.trim().to_lowercase();
    if HUMAN.contains(&l.as_str()) {
        Some("human")
    } else if ANIMAL.contains(&l.as_str()) {
        Some("animal")
    } else if PLANT.contains(&l.as_str()) {
        Some("plant")
    } else {
        None
    }
}

fn entity(uri: &str, name: &str) -> Node {
    Node::structure(vec![
        Property::new(
            NS_XMP,
            "Identifier",
            Node::array(ArrayKind::Bag, vec![Node::text(uri)]),
        ),
        Property::new(NS_IPTC_EXT, "Name", Node::alt_default(name)),
    ])
}

fn iptc_region(id: &str, r: &CleanRegion) -> Node {
    let e = |l: &str, v: String| Property::new(NS_IPTC_EXT, l, Node::text(v));
    let mut fields = vec![
        Property::new(
            NS_IPTC_EXT,
            "RegionBoundary",
            Node::structure(vec![
                e("rbShape", "rectangle".into()),
                e("rbUnit", "relative".into()),
                e("rbX", fmt_coord(r.x)),
                e("rbY", fmt_coord(r.y)),
                e("rbW", fmt_coord(r.w)),
                e("rbH", fmt_coord(r.h)),
            ]),
        ),
        e("rId", id.to_string()),
    ];
    if !r.name.is_empty() {
        fields.push(Property::new(
            NS_IPTC_EXT,
            "Name",
            Node::alt_default(r.name.clone()),
        ));
    }
    if let Some(t) = iptc_region_type(&r.name) {
        fields.push(Property::new(
            NS_IPTC_EXT,
            "rCtype",
            Node::array(
                ArrayKind::Bag,
                vec![entity(&format!("{REGION_TYPE_CV}{t}"), t)],
            ),
        ));
    }
    fields.push(Property::new(
        NS_IPTC_EXT,
        "rRole",
        Node::array(
            ArrayKind::Bag,
            vec![entity(ROLE_SUBJECT_AREA, "subject area")],
        ),
    ));
    Node::structure(fields)
}

/// Replaces our items in `items` by `new` in place: our i-th slot gets the i-th new item, extra
/// slots are dropped, extra new items go at the end. Others' items keep their positions.
fn replace_ours(items: &[Node], is_ours: impl Fn(&Node) -> bool, new: Vec<Node>) -> Vec<Node> {
    let mut new = new.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if is_ours(item) {
            if let Some(n) = new.next() {
                out.push(n);
            }
        } else {
            out.push(item.clone());
        }
    }
    out.extend(new);
    out
}

fn merge_iptc_regions(packet: &mut Packet, content: &Clean, records: &mut Records) {
    let prev: HashSet<String> = ours(packet, "RegionIds").into_iter().collect();
    let rid = |n: &Node| {
        n.field(NS_IPTC_EXT, "rId")
            .and_then(Node::as_text)
            .map(str::to_string)
    };
    let existing = packet.get(NS_IPTC_EXT, "ImageRegion");
    let (kind, items) = match existing {
        None => (ArrayKind::Bag, Vec::new()),
        Some(Node {
            value: Value::Array(kind, items),
            ..
        }) => (*kind, items.clone()),
        Some(_) => {
            records.push(("RegionIds", ours(packet, "RegionIds")));
            return;
        }
    };
    let is_ours = |n: &Node| rid(n).is_some_and(|id| prev.contains(&id));
    let taken: HashSet<String> = items
        .iter()
        .filter(|n| !is_ours(n))
        .filter_map(rid)
        .collect();
    let mut ids = Vec::new();
    let mut new = Vec::new();
    let mut n = 0;
    for r in &content.regions {
        let id = loop {
            n += 1;
            let id = format!("{RID_PREFIX}{n}");
            if !taken.contains(&id) {
                break id;
            }
        };
        new.push(iptc_region(&id, r));
        ids.push(id);
    }
    let out = replace_ours(&items, is_ours, new);
    if out != items {
        if out.is_empty() {
            packet.remove(NS_IPTC_EXT, "ImageRegion");
        } else {
            match packet.get_mut(NS_IPTC_EXT, "ImageRegion") {
                Some(node) => node.value = Value::Array(kind, out),
                None => packet.set(NS_IPTC_EXT, "ImageRegion", Node::array(kind, out)),
            }
        }
    }
    records.push(("RegionIds", ids));
}

fn mwg_region(r: &CleanRegion) -> Node {
    let a = |l: &str, v: String| Property::new(NS_ST_AREA, l, Node::text(v));
    let mut fields = vec![Property::new(
        NS_MWG_RS,
        "Area",
        Node::structure(vec![
            a("x", fmt_coord(r.x + r.w / 2.0)),
            a("y", fmt_coord(r.y + r.h / 2.0)),
            a("w", fmt_coord(r.w)),
            a("h", fmt_coord(r.h)),
            a("unit", "normalized".into()),
        ]),
    )];
    if !r.name.is_empty() {
        fields.push(Property::new(NS_MWG_RS, "Name", Node::text(r.name.clone())));
    }
    fields.push(Property::new(NS_MWG_RS, "Type", Node::text("Focus")));
    fields.push(Property::new(
        NS_MWG_RS,
        "FocusUsage",
        Node::text("EvaluatedNotUsed"),
    ));
    Node::structure(fields)
}

/// Identifies an MWG region by its name and area as written.
fn mwg_fingerprint(n: &Node) -> Option<String> {
    let area = n.field(NS_MWG_RS, "Area")?;
    let f = |l: &str| {
        area.field(NS_ST_AREA, l)
            .and_then(Node::as_text)
            .unwrap_or("")
    };
    let name = n
        .field(NS_MWG_RS, "Name")
        .and_then(Node::as_text)
        .unwrap_or("");
    Some(format!(
        "{name}|{}|{}|{}|{}",
        f("x"),
        f("y"),
        f("w"),
        f("h")
    ))
}

fn merge_mwg_regions(packet: &mut Packet, content: &Clean, enabled: bool, records: &mut Records) {
    let prev: HashSet<String> = ours(packet, "MwgRegions").into_iter().collect();
    let is_ours = |n: &Node| mwg_fingerprint(n).is_some_and(|f| prev.contains(&f));
    let existing = packet.get(NS_MWG_RS, "Regions");
    let keep = |records: &mut Records| records.push(("MwgRegions", ours(packet, "MwgRegions")));
    let fields = match existing {
        None => Vec::new(),
        Some(Node {
            value: Value::Struct(fields),
            ..
        }) => fields.clone(),
        Some(_) => return keep(records),
    };
    let (list_kind, items) = match find(&fields, NS_MWG_RS, "RegionList").map(|n| &n.value) {
        None => (ArrayKind::Bag, Vec::new()),
        Some(Value::Array(kind, items)) => (*kind, items.clone()),
        Some(_) => return keep(records),
    };
    let has_dims = find(&fields, NS_MWG_RS, "AppliedToDimensions").is_some();
    let writable = enabled && (has_dims || content.stored_size.is_some());
    let new: Vec<Node> = if writable {
        content.regions.iter().map(mwg_region).collect()
    } else {
        Vec::new()
    };
    let fps: Vec<String> = new.iter().filter_map(mwg_fingerprint).collect();
    let out = replace_ours(&items, is_ours, new);
    if out != items {
        if out.is_empty() {
            // Regions without regions mean nothing: drop the struct with our last one.
            packet.remove(NS_MWG_RS, "Regions");
        } else {
            let mut fields = fields;
            if !has_dims {
                let (w, h) = content.stored_size.unwrap_or((0, 0));
                fields.insert(
                    0,
                    Property::new(
                        NS_MWG_RS,
                        "AppliedToDimensions",
                        Node::structure(vec![
                            Property::new(NS_ST_DIM, "w", Node::text(w.to_string())),
                            Property::new(NS_ST_DIM, "h", Node::text(h.to_string())),
                            Property::new(NS_ST_DIM, "unit", Node::text("pixel")),
                        ]),
                    ),
                );
            }
            let list = Node::array(list_kind, out);
            match fields
                .iter_mut()
                .find(|p| p.name.is(NS_MWG_RS, "RegionList"))
            {
                Some(p) => p.node.value = list.value,
                None => fields.push(Property::new(NS_MWG_RS, "RegionList", list)),
            }
            match packet.get_mut(NS_MWG_RS, "Regions") {
                Some(node) => node.value = Value::Struct(fields),
                None => packet.set(NS_MWG_RS, "Regions", Node::structure(fields)),
            }
        }
    }
    records.push(("MwgRegions", fps));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::content::Provenance;

    fn content(caption: Option<&str>, leaves: &[&str], regions: Vec<CleanRegion>) -> Clean {
        Clean {
            caption: caption.map(str::to_string),
            writer: "Florence-2-base (captiond)".into(),
            leaves: leaves.iter().map(|s| s.to_string()).collect(),
            parent: vec!["AI".into()],
            regions,
            provenance: Provenance {
                model: "microsoft/Florence-2-base".into(),
                revision: "r1".into(),
                tasks: vec!["<OD>".into()],
                time: 1_700_000_000_000,
            },
            stored_size: Some((4000, 3000)),
        }
    }

    fn settings(mwg: bool) -> SidecarSettings {
        SidecarSettings {
            mwg_regions: mwg,
            ..SidecarSettings::default()
        }
    }

    fn region(name: &str, x: f64) -> CleanRegion {
        CleanRegion {
            name: name.into(),
            x,
            y: 0.25,
            w: 0.5,
            h: 0.5,
        }
    }

    fn list(p: &Packet, ns: &str, local: &str) -> Vec<String> {
        texts(p.get(ns, local))
    }

    #[test]
    fn caption_written_when_empty_replaced_when_ours_kept_when_a_persons() {
        let mut p = Packet::default();
        merge(
            &mut p,
            &content(Some("A dog."), &[], vec![]),
            &settings(false),
        );
        assert_eq!(
            current_caption(p.get(NS_DC, "description").unwrap()),
            Some("A dog.")
        );
        assert!(p.get(NS_PHOTOSHOP, "CaptionWriter").is_some());

        merge(
            &mut p,
            &content(Some("A cat."), &[], vec![]),
            &settings(false),
        );
        assert_eq!(
            current_caption(p.get(NS_DC, "description").unwrap()),
            Some("A cat.")
        );

        // A person edits it: it stays, and CaptionWriter no longer names us.
        p.set(NS_DC, "description", Node::alt_default("Rex at the beach"));
        merge(
            &mut p,
            &content(Some("A bird."), &[], vec![]),
            &settings(false),
        );
        assert_eq!(
            current_caption(p.get(NS_DC, "description").unwrap()),
            Some("Rex at the beach")
        );
        assert!(p.get(NS_PHOTOSHOP, "CaptionWriter").is_none());
        assert!(p.get(NS_CAPTIOND, "CaptionHash").is_none());
    }

    #[test]
    fn caption_removed_only_when_ours() {
        let mut p = Packet::default();
        merge(
            &mut p,
            &content(Some("A dog."), &[], vec![]),
            &settings(false),
        );
        merge(&mut p, &content(None, &[], vec![]), &settings(false));
        assert!(p.get(NS_DC, "description").is_none());
        assert!(p.get(NS_PHOTOSHOP, "CaptionWriter").is_none());

        p.set(NS_DC, "description", Node::alt_default("mine"));
        merge(&mut p, &content(None, &[], vec![]), &settings(false));
        assert_eq!(
            current_caption(p.get(NS_DC, "description").unwrap()),
            Some("mine")
        );
    }

    #[test]
    fn keywords_only_ours_replaced_and_persons_never_claimed() {
        let mut p = Packet::default();
        p.set(
            NS_DC,
            "subject",
            Node::array(
                ArrayKind::Bag,
                vec![Node::text("dog"), Node::text("holiday")],
            ),
        );
        p.set(
            NS_LR,
            "hierarchicalSubject",
            Node::array(ArrayKind::Bag, vec![Node::text("Places|Beach")]),
        );
        merge(
            &mut p,
            &content(None, &["dog", "ball"], vec![]),
            &settings(false),
        );
        assert_eq!(list(&p, NS_DC, "subject"), ["dog", "holiday", "ball"]);
        assert_eq!(
            list(&p, NS_LR, "hierarchicalSubject"),
            ["Places|Beach", "AI|dog", "AI|ball"]
        );
        // digiKam would have read lr:hierarchicalSubject: the new TagsList keeps those tags.
        assert_eq!(
            list(&p, NS_DIGIKAM, "TagsList"),
            ["Places/Beach", "AI/dog", "AI/ball"]
        );
        assert_eq!(list(&p, NS_CAPTIOND, "AddedSubject"), ["ball"]);

        // The model no longer sees a dog or a ball: "dog" was the person's and stays.
        merge(&mut p, &content(None, &["cat"], vec![]), &settings(false));
        assert_eq!(list(&p, NS_DC, "subject"), ["dog", "holiday", "cat"]);
        assert_eq!(
            list(&p, NS_LR, "hierarchicalSubject"),
            ["Places|Beach", "AI|cat"]
        );
        assert_eq!(list(&p, NS_DIGIKAM, "TagsList"), ["Places/Beach", "AI/cat"]);

        let before = p.clone();
        merge(&mut p, &content(None, &["cat"], vec![]), &settings(false));
        assert_eq!(p, before);
    }

    #[test]
    fn existing_optional_containers_are_updated_absent_ones_not_created() {
        let mut p = Packet::default();
        p.set(
            NS_MICROSOFT_PHOTO,
            "LastKeywordXMP",
            Node::array(ArrayKind::Bag, vec![Node::text("Family/Ann")]),
        );
        merge(&mut p, &content(None, &["dog"], vec![]), &settings(false));
        assert_eq!(
            list(&p, NS_MICROSOFT_PHOTO, "LastKeywordXMP"),
            ["Family/Ann", "AI/dog"]
        );
        assert!(p.get(NS_MEDIAPRO, "CatalogSets").is_none());
        assert_eq!(list(&p, NS_DIGIKAM, "TagsList"), ["Family/Ann", "AI/dog"]);
    }

    #[test]
    fn microsoft_photo_matched_under_either_uri_spelling() {
        let mut p = Packet::default();
        p.set(
            NS_MICROSOFT_PHOTO_EXIFTOOL,
            "LastKeywordXMP",
            Node::array(ArrayKind::Bag, vec![Node::text("Family/Ann")]),
        );
        merge(&mut p, &content(None, &["dog"], vec![]), &settings(false));
        assert_eq!(
            list(&p, NS_MICROSOFT_PHOTO_EXIFTOOL, "LastKeywordXMP"),
            ["Family/Ann", "AI/dog"]
        );
        assert!(p.get(NS_MICROSOFT_PHOTO, "LastKeywordXMP").is_none());
        assert_eq!(list(&p, NS_DIGIKAM, "TagsList"), ["Family/Ann", "AI/dog"]);
    }

    #[test]
    fn regions_replaced_in_place_persons_kept() {
        let mut p = Packet::default();
        let face = Node::structure(vec![
            Property::new(NS_IPTC_EXT, "rId", Node::text("face-1")),
            Property::new(NS_IPTC_EXT, "Name", Node::alt_default("Ann")),
        ]);
        p.set(
            NS_IPTC_EXT,
            "ImageRegion",
            Node::array(ArrayKind::Bag, vec![face.clone()]),
        );
        merge(
            &mut p,
            &content(None, &[], vec![region("dog", 0.1), region("ball", 0.2)]),
            &settings(true),
        );
        let Value::Array(_, items) = &p.get(NS_IPTC_EXT, "ImageRegion").unwrap().value else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], face);
        let regions = p.get(NS_MWG_RS, "Regions").unwrap();
        assert!(regions.field(NS_MWG_RS, "AppliedToDimensions").is_some());

        // A person's region is added after ours; a re-run keeps every position.
        if let Some(Node {
            value: Value::Array(_, items),
            ..
        }) = p.get_mut(NS_IPTC_EXT, "ImageRegion")
        {
            items.push(face.clone());
        }
        let before = p.clone();
        merge(
            &mut p,
            &content(None, &[], vec![region("dog", 0.1), region("ball", 0.2)]),
            &settings(true),
        );
        assert_eq!(p, before);

        merge(
            &mut p,
            &content(None, &[], vec![region("cat", 0.3)]),
            &settings(false),
        );
        let Value::Array(_, items) = &p.get(NS_IPTC_EXT, "ImageRegion").unwrap().value else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], face);
        assert_eq!(items[2], face);
        assert!(
            p.get(NS_MWG_RS, "Regions").is_none(),
            "MWG off: ours removed"
        );
    }

    #[test]
    fn coordinates_format() {
        assert_eq!(fmt_coord(0.1f32 as f64), "0.1");
        assert_eq!(fmt_coord(0.0), "0");
        assert_eq!(fmt_coord(1.0), "1");
        assert_eq!(fmt_coord(0.123_456_78), "0.123457");
        assert_eq!(xmp_date(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
