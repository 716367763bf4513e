//! New sidecars: every property read back by exiftool and exiv2, idempotence, escaping,
//! orientation, a person's edits between runs.

use std::fs;
use std::process::Command;

use captiond::sidecar::SidecarNaming;
use captiond::sidecar::*;
use serde_json::Value;

use super::support::*;

fn settings(mwg: bool) -> SidecarSettings {
    SidecarSettings {
        mwg_regions: mwg,
        ..SidecarSettings::default()
    }
}

#[test]
fn new_sidecar_has_every_property_and_readers_agree() {
    need_tools!();
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "IMG_1.JPG");
    let c = content(
        Some("A brown dog chasing a ball on a beach."),
        &["dog", "ball"],
        &[
            ("dog", [0.1, 0.2, 0.4, 0.7]),
            ("ball", [0.5, 0.1, 0.9, 0.9]),
        ],
    );
    assert_eq!(
        write_sidecar(&img, &c, &settings(true)).unwrap(),
        WriteOutcome::Created
    );
    let xmp = d.path().join("IMG_1.JPG.xmp");
    assert!(xmp.exists());
    let bytes = fs::read(&xmp).unwrap();
    assert!(!bytes.starts_with(b"\xEF\xBB\xBF"), "no BOM at the start");
    assert_validates(&xmp, &[]);

    let j = exiftool_json(&xmp);
    let ctx = dump(&xmp);
    assert_eq!(
        j["XMP-dc:Description"], "A brown dog chasing a ball on a beach.",
        "{ctx}"
    );
    assert_eq!(strings(j.get("XMP-dc:Subject")), ["dog", "ball"]);
    assert_eq!(
        strings(j.get("XMP-lr:HierarchicalSubject")),
        ["AI|dog", "AI|ball"]
    );
    assert_eq!(
        strings(j.get("XMP-digiKam:TagsList")),
        ["AI/dog", "AI/ball"]
    );
    assert_eq!(
        j["XMP-photoshop:CaptionWriter"],
        "Florence-2-base (captiond)"
    );
    assert!(j.contains_key("XMP-xmp:MetadataDate"), "{ctx}");
    assert!(!j.contains_key("XMP-iptcExt:DigitalSourceType"), "{ctx}");
    assert_eq!(j["XMP-captiond:Model"], "microsoft/Florence-2-base");
    assert!(j.contains_key("XMP-captiond:CaptionHash"));
    assert_eq!(strings(j.get("XMP-captiond:Keywords")), ["dog", "ball"]);

    let regions = j["XMP-iptcExt:ImageRegion"]
        .as_array()
        .expect("ImageRegion");
    assert_eq!(regions.len(), 2, "{ctx}");
    let dog = &regions[0];
    assert_eq!(dog["Name"], "dog");
    assert_eq!(dog["RId"], "captiond-1");
    let b = &dog["RegionBoundary"];
    assert_eq!(b["RbShape"], "rectangle");
    assert_eq!(b["RbUnit"], "relative");
    for (k, want) in [("RbX", 0.1), ("RbY", 0.2), ("RbW", 0.3), ("RbH", 0.5)] {
        assert!((num(b.get(k)) - want).abs() < 1e-6, "{k}: {b}");
    }
    assert_eq!(
        strings(dog["RRole"][0].get("Identifier")),
        ["http://cv.iptc.org/newscodes/imageregionrole/subjectArea"]
    );
    assert_eq!(
        strings(dog["RCtype"][0].get("Identifier")),
        ["http://cv.iptc.org/newscodes/imageregiontype/animal"]
    );

    let mwg = &j["XMP-mwg-rs:RegionInfo"];
    assert_eq!(mwg["AppliedToDimensions"]["W"], 120);
    assert_eq!(mwg["AppliedToDimensions"]["H"], 90);
    assert_eq!(mwg["AppliedToDimensions"]["Unit"], "pixel");
    let area = &mwg["RegionList"][0]["Area"];
    for (k, want) in [("X", 0.25), ("Y", 0.45), ("W", 0.3), ("H", 0.5)] {
        assert!((num(area.get(k)) - want).abs() < 1e-6, "{k}: {area}");
    }
    assert_eq!(area["Unit"], "normalized");
    assert_eq!(mwg["RegionList"][0]["Name"], "dog");

    let px = exiv2_px(&xmp);
    assert_eq!(
        exiv2_value(&px, "Xmp.dc.description").as_deref(),
        Some("lang=\"x-default\" A brown dog chasing a ball on a beach."),
        "{px:?}"
    );
    assert_eq!(
        exiv2_value(&px, "Xmp.dc.subject").as_deref(),
        Some("dog, ball")
    );
    assert_eq!(
        exiv2_value(&px, "Xmp.lr.hierarchicalSubject").as_deref(),
        Some("AI|dog, AI|ball")
    );
    assert_eq!(
        exiv2_value(&px, "Xmp.digiKam.TagsList").as_deref(),
        Some("AI/dog, AI/ball")
    );
    assert_eq!(
        exiv2_value(&px, "Xmp.photoshop.CaptionWriter").as_deref(),
        Some("Florence-2-base (captiond)")
    );
    assert_eq!(
        exiv2_value(
            &px,
            "Xmp.iptcExt.ImageRegion[1]/Iptc4xmpExt:RegionBoundary/Iptc4xmpExt:rbX"
        )
        .as_deref(),
        Some("0.1")
    );
    assert_eq!(
        exiv2_value(
            &px,
            "Xmp.mwg-rs.Regions/mwg-rs:RegionList[1]/mwg-rs:Area/stArea:x"
        )
        .as_deref(),
        Some("0.25")
    );
    assert!(exiv2_value(&px, "Xmp.xmp.MetadataDate").is_some());
    assert!(exiv2_value(&px, "Xmp.captiond.Model").is_some());
    // The image itself is never touched without `embed`.
    assert_eq!(
        fs::read(&img).unwrap(),
        fs::read(fixture("images/photo_120x90.jpg")).unwrap()
    );
}

#[test]
fn mwg_regions_only_on_request() {
    need_tools!();
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "a.jpg");
    let c = content(None, &["dog"], &[("dog", [0.1, 0.2, 0.4, 0.7])]);
    write_sidecar(&img, &c, &settings(false)).unwrap();
    let j = exiftool_json(&d.path().join("a.jpg.xmp"));
    assert!(j.contains_key("XMP-iptcExt:ImageRegion"));
    assert!(!j.contains_key("XMP-mwg-rs:RegionInfo"));
    assert!(!j.contains_key("XMP-dc:Description"));
    assert!(!j.contains_key("XMP-photoshop:CaptionWriter"));
}

#[test]
fn same_content_twice_leaves_the_file_byte_identical() {
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "IMG_2.jpg");
    let c = content(Some("A cat."), &["cat"], &[("cat", [0.0, 0.0, 0.5, 0.5])]);
    let s = settings(true);
    assert_eq!(write_sidecar(&img, &c, &s).unwrap(), WriteOutcome::Created);
    let xmp = d.path().join("IMG_2.jpg.xmp");
    let bytes = fs::read(&xmp).unwrap();
    let mtime = fs::metadata(&xmp).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        write_sidecar(&img, &c.clone(), &s).unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(fs::read(&xmp).unwrap(), bytes);
    assert_eq!(fs::metadata(&xmp).unwrap().modified().unwrap(), mtime);
    // Different content: updated; back to the first: updated again, same bytes bar MetadataDate.
    let c2 = content(Some("A dog."), &["dog"], &[]);
    assert_eq!(write_sidecar(&img, &c2, &s).unwrap(), WriteOutcome::Updated);
    assert_eq!(
        write_sidecar(&img, &c2, &s).unwrap(),
        WriteOutcome::Unchanged
    );
    assert!(temp_leftovers(d.path()).is_empty());
}

#[test]
fn nothing_to_write_creates_no_file() {
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "x.jpg");
    let c = content(None, &[], &[]);
    assert_eq!(
        write_sidecar(&img, &c, &settings(false)).unwrap(),
        WriteOutcome::Skipped(SkipReason::NothingToWrite)
    );
    assert!(!d.path().join("x.jpg.xmp").exists());
}

#[test]
fn special_characters_round_trip_through_exiftool_and_exiv2() {
    need_tools!();
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "s.jpg");
    let caption = "Tom & Jerry <b>bold</b> \"double\" 'single' 🐕‍🦺 café\u{1}\u{7}\u{1B}\u{FFFE} ]]> &amp; line\nnext";
    let want = "Tom & Jerry <b>bold</b> \"double\" 'single' 🐕‍🦺 café ]]> &amp; line\nnext";
    let c = content(
        Some(caption),
        &["a&b", "<tag>", "\"q\"", "🐶", "AC/DC", "x|y"],
        &[("hot <dog> & \"bun\"", [0.1, 0.1, 0.2, 0.2])],
    );
    write_sidecar(&img, &c, &settings(true)).unwrap();
    let xmp = d.path().join("s.jpg.xmp");
    assert_validates(&xmp, &[]);
    let j = exiftool_json(&xmp);
    assert_eq!(j["XMP-dc:Description"], want, "{}", dump(&xmp));
    assert_eq!(
        strings(j.get("XMP-dc:Subject")),
        ["a&b", "<tag>", "\"q\"", "🐶", "AC DC", "x y"]
    );
    assert_eq!(
        strings(j.get("XMP-lr:HierarchicalSubject")),
        ["AI|a&b", "AI|<tag>", "AI|\"q\"", "AI|🐶", "AI|AC DC", "AI|x y"]
    );
    assert_eq!(
        j["XMP-iptcExt:ImageRegion"][0]["Name"],
        "hot <dog> & \"bun\""
    );
    assert_eq!(
        j["XMP-mwg-rs:RegionInfo"]["RegionList"][0]["Name"],
        "hot <dog> & \"bun\""
    );
    let px = exiv2_px(&xmp);
    let desc = exiv2_value(&px, "Xmp.dc.description").unwrap();
    assert_eq!(
        desc,
        "lang=\"x-default\" Tom & Jerry <b>bold</b> \"double\" 'single' 🐕‍🦺 café ]]> &amp; line"
    );
    assert_eq!(
        exiv2_value(&px, "Xmp.dc.subject").as_deref(),
        Some("a&b, <tag>, \"q\", 🐶, AC DC, x y")
    );
    // Our own reader agrees, and a second write changes nothing.
    assert_eq!(
        write_sidecar(&img, &c, &settings(true)).unwrap(),
        WriteOutcome::Unchanged
    );
}

#[test]
fn orientations_3_6_8_keep_boxes_in_the_stored_frame() {
    need_tools!();
    for orientation in [3, 6, 8] {
        let d = tempdir();
        let img = copy_to(d.path(), "images/photo_120x90.jpg", "o.jpg");
        let out = Command::new("exiftool")
            .args([
                "-q",
                "-overwrite_original",
                &format!("-Orientation#={orientation}"),
            ])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(exiftool_json(&img)["IFD0:Orientation"], orientation);

        let box_ = [0.15f32, 0.05, 0.35, 0.6];
        let mut c = content(None, &["dog"], &[("dog", box_)]);
        // What the pipeline knows: the size as stored, before orientation.
        c.stored_size = Some(image::image_dimensions(&img).unwrap());
        assert_eq!(c.stored_size, Some((120, 90)));
        write_sidecar(&img, &c, &settings(true)).unwrap();

        let j = exiftool_json(&d.path().join("o.jpg.xmp"));
        let b = &j["XMP-iptcExt:ImageRegion"][0]["RegionBoundary"];
        let got = [
            num(b.get("RbX")),
            num(b.get("RbY")),
            num(b.get("RbW")),
            num(b.get("RbH")),
        ];
        let want = [0.15, 0.05, 0.2, 0.55];
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-6,
                "orientation {orientation}: {got:?} != {want:?}"
            );
        }
        let mwg = &j["XMP-mwg-rs:RegionInfo"];
        assert_eq!(
            mwg["AppliedToDimensions"]["W"], 120,
            "stored width, not rotated"
        );
        assert_eq!(mwg["AppliedToDimensions"]["H"], 90);
        let a = &mwg["RegionList"][0]["Area"];
        assert!((num(a.get("X")) - 0.25).abs() < 1e-6 && (num(a.get("Y")) - 0.325).abs() < 1e-6);
    }
}

#[test]
fn a_persons_caption_survives_and_a_rerun_replaces_only_ours() {
    need_tools!();
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "p.jpg");
    let xmp = d.path().join("p.jpg.xmp");
    let s = settings(false);
    write_sidecar(
        &img,
        &content(
            Some("A dog."),
            &["dog", "ball"],
            &[("dog", [0.1, 0.1, 0.5, 0.5])],
        ),
        &s,
    )
    .unwrap();

    // The person edits the caption and adds a keyword and a region in another tool.
    let out = Command::new("exiftool")
        .args([
            "-q",
            "-overwrite_original",
            "-XMP-dc:Description=Rex, our dog",
            "-XMP-dc:Subject+=holiday",
            "-XMP-lr:HierarchicalSubject+=Places|Beach",
            "-XMP-iptcExt:ImageRegion+={RId=face-1,Name=Ann,RegionBoundary={RbShape=rectangle,RbUnit=relative,RbX=0.6,RbY=0.1,RbW=0.2,RbH=0.2}}",
        ])
        .arg(&xmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let outcome = write_sidecar(
        &img,
        &content(Some("A cat."), &["cat"], &[("cat", [0.2, 0.2, 0.6, 0.6])]),
        &s,
    )
    .unwrap();
    assert_eq!(outcome, WriteOutcome::Updated);
    let j = exiftool_json(&xmp);
    let ctx = dump(&xmp);
    assert_eq!(j["XMP-dc:Description"], "Rex, our dog", "{ctx}");
    assert!(!j.contains_key("XMP-photoshop:CaptionWriter"), "{ctx}");
    assert_eq!(
        strings(j.get("XMP-dc:Subject")),
        ["holiday", "cat"],
        "{ctx}"
    );
    assert_eq!(
        strings(j.get("XMP-lr:HierarchicalSubject")),
        ["Places|Beach", "AI|cat"],
        "{ctx}"
    );
    let regions = j["XMP-iptcExt:ImageRegion"].as_array().unwrap();
    let names: Vec<&Value> = regions.iter().map(|r| &r["Name"]).collect();
    assert_eq!(names, ["cat", "Ann"], "{ctx}");
    assert_validates(&xmp, &[]);

    // No results any more: ours go, the person's stay.
    write_sidecar(&img, &content(None, &[], &[]), &s).unwrap();
    let j = exiftool_json(&xmp);
    assert_eq!(j["XMP-dc:Description"], "Rex, our dog");
    assert_eq!(strings(j.get("XMP-dc:Subject")), ["holiday"]);
    assert_eq!(j["XMP-iptcExt:ImageRegion"].as_array().unwrap().len(), 1);
}

#[test]
fn stem_naming_gives_a_raw_jpeg_pair_one_writer() {
    let d = tempdir();
    let raw = d.path().join("IMG_7.CR2");
    fs::write(&raw, b"not really a raw").unwrap();
    let jpg = copy_to(d.path(), "images/photo_120x90.jpg", "IMG_7.JPG");
    let s = SidecarSettings {
        naming: SidecarNaming::Stem,
        ..SidecarSettings::default()
    };
    let c = content(Some("x"), &["y"], &[]);
    // This "RAW" has no embedded preview, so captiond captions only the JPEG, which writes the
    // pair's sidecar; the RAW is skipped. (A RAW with a preview would write it: naming.rs.)
    assert_eq!(
        write_sidecar(&raw, &c, &s).unwrap(),
        WriteOutcome::Skipped(SkipReason::NotWriter {
            writer: jpg.clone()
        })
    );
    assert!(!d.path().join("IMG_7.xmp").exists());
    assert_eq!(write_sidecar(&jpg, &c, &s).unwrap(), WriteOutcome::Created);
    assert!(d.path().join("IMG_7.xmp").exists());
    assert_eq!(fs::read(&raw).unwrap(), b"not really a raw");
}

/// A JPEG whose person-written caption and keywords are embedded (XMP by one program, IPTC-IIM
/// by another, written here with exiftool): the sidecar we create starts from them, so an app
/// that reads the sidecar first shows the person's caption and keeps their keywords; ours are
/// added beside them.
#[test]
fn a_new_sidecar_keeps_the_photos_embedded_caption_and_keywords() {
    need_tools!();
    let d = tempdir();
    let c = content(Some("A dog on a beach."), &["dog"], &[]);
    let cases = [
        (
            "xmp.jpg",
            vec![
                "-XMP-dc:Description=Rex, our dog, at Brighton",
                "-XMP-dc:Subject=Rex",
                "-XMP-dc:Subject=holiday",
                "-XMP-xmp:Rating=4",
            ],
        ),
        (
            "iptc.jpg",
            vec![
                "-IPTC:Caption-Abstract=Rex, our dog, at Brighton",
                "-IPTC:Keywords=Rex",
                "-IPTC:Keywords=holiday",
                "-IPTC:CodedCharacterSet=UTF8",
            ],
        ),
    ];
    for (name, args) in cases {
        let img = copy_to(d.path(), "images/photo_120x90.jpg", name);
        let out = Command::new("exiftool")
            .arg("-overwrite_original")
            .args(&args)
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let original = fs::read(&img).unwrap();

        assert_eq!(
            write_sidecar(&img, &c, &SidecarSettings::default()).unwrap(),
            WriteOutcome::Created
        );
        let xmp = d.path().join(format!("{name}.xmp"));
        let j = exiftool_json(&xmp);
        let ctx = dump(&xmp);
        assert_eq!(
            j["XMP-dc:Description"], "Rex, our dog, at Brighton",
            "{name}: the person's caption, not ours\n{ctx}"
        );
        assert_eq!(
            strings(j.get("XMP-dc:Subject")),
            ["Rex", "holiday", "dog"],
            "{name}: the person's keywords kept, ours added\n{ctx}"
        );
        if name == "xmp.jpg" {
            assert_eq!(
                j["XMP-xmp:Rating"], 4,
                "{name}: everything else embedded\n{ctx}"
            );
        }
        assert_eq!(
            fs::read(&img).unwrap(),
            original,
            "{name}: the photo is untouched"
        );
    }
}
