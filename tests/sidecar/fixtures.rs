//! Merging into sidecars in the shapes digiKam, darktable, Lightroom and exiftool write: every
//! property exiftool reads before is still there after (ours aside), people's captions, keywords
//! and regions stay, a second run changes nothing.

use std::fs;
use std::path::PathBuf;

use captiond::sidecar::SidecarNaming;
use captiond::sidecar::*;
use serde_json::{Map, Value};

use super::support::*;

struct Merged {
    _dir: tempfile::TempDir,
    image: PathBuf,
    xmp: PathBuf,
    before: Map<String, Value>,
    after: Map<String, Value>,
}

/// Puts `fixture` next to an image as its sidecar, merges `c` into it and checks what every
/// merge must keep.
fn merge_fixture(
    fixture_name: &str,
    image_name: &str,
    xmp_name: &str,
    settings: &SidecarSettings,
    c: &SidecarContent,
) -> Merged {
    let dir = tempdir();
    let image = copy_to(dir.path(), "images/photo_120x90.jpg", image_name);
    let xmp = copy_to(dir.path(), &format!("xmp/{fixture_name}"), xmp_name);
    let before = exiftool_json(&xmp);
    let (_, warnings_before) = exiftool_validate(&xmp);

    let outcome = write_sidecar(&image, c, settings).unwrap();
    assert_eq!(outcome, WriteOutcome::Updated, "{fixture_name}");
    let after = exiftool_json(&xmp);
    assert_preserved(&before, &after, &xmp);
    assert_validates(&xmp, &warnings_before);
    assert!(exiv2_value(&exiv2_px(&xmp), "Xmp.captiond.Model").is_some());

    // Second run with the same content: not touched at all.
    let bytes = fs::read(&xmp).unwrap();
    assert_eq!(
        write_sidecar(&image, c, settings).unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(fs::read(&xmp).unwrap(), bytes);
    assert!(temp_leftovers(dir.path()).is_empty());
    Merged {
        _dir: dir,
        image,
        xmp,
        before,
        after,
    }
}

fn ext() -> SidecarSettings {
    SidecarSettings::default()
}

fn rerun(m: &Merged, c: &SidecarContent, s: &SidecarSettings) -> Map<String, Value> {
    assert_eq!(
        write_sidecar(&m.image, c, s).unwrap(),
        WriteOutcome::Updated
    );
    let after = exiftool_json(&m.xmp);
    assert_preserved(&m.before, &after, &m.xmp);
    after
}

fn has_face(j: &Map<String, Value>, name: &str) -> bool {
    j["XMP-mwg-rs:RegionInfo"]["RegionList"]
        .as_array()
        .is_some_and(|l| l.iter().any(|r| r["Name"] == name && r["Type"] == "Face"))
}

#[test]
fn digikam() {
    need_tools!();
    let c = content(
        Some("A woman on a beach."),
        &["person", "dog"],
        &[("dog", [0.1, 0.5, 0.3, 0.9])],
    );
    let s = SidecarSettings {
        mwg_regions: true,
        ..ext()
    };
    let m = merge_fixture("digikam.xmp", "IMG_0001.JPG", "IMG_0001.JPG.xmp", &s, &c);
    let a = &m.after;
    let ctx = dump(&m.xmp);
    // Every keyword container that existed is updated, in its own form.
    assert_eq!(
        strings(a.get("XMP-digiKam:TagsList")),
        ["Family/Ann", "Places/Beach", "AI/person", "AI/dog"],
        "{ctx}"
    );
    assert_eq!(
        strings(a.get("XMP-microsoft:LastKeywordXMP")),
        ["Family/Ann", "Places/Beach", "AI/person", "AI/dog"]
    );
    assert_eq!(
        strings(a.get("XMP-lr:HierarchicalSubject")),
        ["Family|Ann", "Places|Beach", "AI|person", "AI|dog"]
    );
    assert_eq!(
        strings(a.get("XMP-mediapro:CatalogSets")),
        ["Family|Ann", "Places|Beach", "AI|person", "AI|dog"]
    );
    assert_eq!(
        strings(a.get("XMP-dc:Subject")),
        ["Ann", "Beach", "person", "dog"]
    );
    assert_eq!(a["XMP-dc:Description"], "A woman on a beach.");
    // The face stays a face, ours is added beside it, dimensions untouched.
    assert!(has_face(a, "Ann"), "{ctx}");
    let list = a["XMP-mwg-rs:RegionInfo"]["RegionList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["Name"], "dog");

    // The model changes its mind: only our entries move.
    let a = rerun(&m, &content(Some("A woman."), &["person"], &[]), &s);
    assert_eq!(
        strings(a.get("XMP-digiKam:TagsList")),
        ["Family/Ann", "Places/Beach", "AI/person"]
    );
    assert_eq!(strings(a.get("XMP-dc:Subject")), ["Ann", "Beach", "person"]);
    assert!(has_face(&a, "Ann"));
    assert_eq!(
        a["XMP-mwg-rs:RegionInfo"]["RegionList"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(a["XMP-dc:Description"], "A woman.");
}

#[test]
fn darktable() {
    need_tools!();
    let c = content(None, &["dog"], &[("dog", [0.1, 0.5, 0.3, 0.9])]);
    let m = merge_fixture(
        "darktable.xmp",
        "IMG_0001.CR2",
        "IMG_0001.CR2.xmp",
        &ext(),
        &c,
    );
    let a = &m.after;
    assert_eq!(strings(a.get("XMP-dc:Subject")), ["holiday", "dog"]);
    assert_eq!(
        strings(a.get("XMP-lr:HierarchicalSubject")),
        ["darktable|format|cr2", "holiday", "AI|dog"]
    );
    let history = a["XMP-darktable:History"].as_array().expect("history kept");
    assert_eq!(history.len(), 3);
    assert_eq!(history[2]["Multi_name"], "&mine");
    // No xpacket was there, none is added.
    let text = fs::read_to_string(&m.xmp).unwrap();
    assert!(!text.contains("<?xpacket"), "{text}");
    // darktable's own reader: exiv2.
    let px = exiv2_px(&m.xmp);
    assert_eq!(
        exiv2_value(&px, "Xmp.darktable.history_end").as_deref(),
        Some("3")
    );
    assert_eq!(
        exiv2_value(&px, "Xmp.dc.subject").as_deref(),
        Some("holiday, dog")
    );
}

#[test]
fn lightroom_stem_sidecar_with_a_persons_caption() {
    need_tools!();
    let s = SidecarSettings {
        naming: SidecarNaming::Stem,
        ..ext()
    };
    let c = content(Some("A child on a beach."), &["dog", "child"], &[]);
    let m = merge_fixture("lightroom.xmp", "IMG_0001.CR2", "IMG_0001.xmp", &s, &c);
    let a = &m.after;
    let ctx = dump(&m.xmp);
    assert_eq!(
        a["XMP-dc:Description"], "Ann building a sandcastle",
        "{ctx}"
    );
    assert!(!a.contains_key("XMP-photoshop:CaptionWriter"), "{ctx}");
    assert!(!a.contains_key("XMP-captiond:CaptionHash"), "{ctx}");
    // "dog" was the person's keyword: kept, never claimed as ours.
    assert_eq!(
        strings(a.get("XMP-dc:Subject")),
        ["beach", "Ann", "dog", "child"]
    );
    assert_eq!(strings(a.get("XMP-captiond:AddedSubject")), ["child"]);
    assert_eq!(
        strings(a.get("XMP-lr:HierarchicalSubject")),
        ["People|Ann", "Places|beach", "AI|dog", "AI|child"]
    );
    // digiKam would have read lr:hierarchicalSubject: the new TagsList keeps those tags.
    assert_eq!(
        strings(a.get("XMP-digiKam:TagsList")),
        ["People/Ann", "Places/beach", "AI/dog", "AI/child"]
    );
    assert!(fs::read_to_string(&m.xmp).unwrap().starts_with("<?xpacket"));

    // With a camera JPEG beside it (the file captiond captions), the JPEG owns the shared
    // sidecar and the RAW no longer writes it.
    let jpg = m.image.with_extension("JPG");
    fs::copy(&m.image, &jpg).unwrap();
    let before = fs::read(&m.xmp).unwrap();
    assert!(matches!(
        write_sidecar(&m.image, &content(Some("other"), &["x"], &[]), &s).unwrap(),
        WriteOutcome::Skipped(SkipReason::NotWriter { .. })
    ));
    assert_eq!(fs::read(&m.xmp).unwrap(), before);
    fs::remove_file(&jpg).unwrap();

    // Next run without "dog": the person's dc:subject "dog" stays.
    let a = rerun(&m, &content(Some("A child."), &["child"], &[]), &s);
    assert_eq!(
        strings(a.get("XMP-dc:Subject")),
        ["beach", "Ann", "dog", "child"]
    );
    assert_eq!(
        strings(a.get("XMP-lr:HierarchicalSubject")),
        ["People|Ann", "Places|beach", "AI|child"]
    );
    assert_eq!(a["XMP-dc:Description"], "Ann building a sandcastle");
}

#[test]
fn exiftool_written() {
    need_tools!();
    let c = content(
        Some("A pier at sunset."),
        &["pier", "boat"],
        &[("boat", [0.2, 0.6, 0.4, 0.8])],
    );
    let m = merge_fixture("exiftool.xmp", "DSC_1.jpg", "DSC_1.jpg.xmp", &ext(), &c);
    let a = &m.after;
    assert_eq!(a["XMP-dc:Description"], "A pier at sunset.");
    assert_eq!(strings(a.get("XMP-dc:Subject")), ["pier", "sunset", "boat"]);
    let regions = a["XMP-iptcExt:ImageRegion"].as_array().unwrap();
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0]["RId"], "face-1");
    assert_eq!(regions[0]["Name"], "Ann");
    assert_eq!(regions[1]["Name"], "boat");
    // A DigitalSourceType someone else set is kept as it was (we never write one).
    assert_eq!(
        a["XMP-iptcExt:DigitalSourceType"],
        m.before["XMP-iptcExt:DigitalSourceType"]
    );
    let a = rerun(&m, &content(Some("A pier."), &[], &[]), &ext());
    assert_eq!(a["XMP-iptcExt:ImageRegion"].as_array().unwrap().len(), 1);
    assert_eq!(strings(a.get("XMP-dc:Subject")), ["pier", "sunset"]);
    assert_eq!(a["XMP-dc:Description"], "A pier.");
}

#[test]
fn every_fixture_round_trips_through_our_model() {
    // No external tools: parse → serialise → parse is stable for every shape.
    for name in [
        "digikam.xmp",
        "darktable.xmp",
        "lightroom.xmp",
        "exiftool.xmp",
    ] {
        let bytes = fs::read(fixture(&format!("xmp/{name}"))).unwrap();
        let p = Packet::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.props.is_empty(), "{name}");
        let out = p.serialize(0);
        let again = Packet::parse(&out).unwrap();
        assert!(again.same_data(&p), "{name}");
        assert_eq!(again.serialize(0), out, "{name}");
    }
}
