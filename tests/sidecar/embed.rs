//! Embedded XMP: off by default (originals stay byte-identical), JPEG and PNG when asked, never RAW.

use std::fs;

use captiond::sidecar::*;

use crate::support::*;

fn on() -> SidecarSettings {
    SidecarSettings {
        embed: true,
        ..SidecarSettings::default()
    }
}

#[test]
fn off_by_default_and_originals_stay_byte_identical() {
    let d = tempdir();
    let c = content(Some("A dog."), &["dog"], &[("dog", [0.1, 0.1, 0.2, 0.2])]);
    for (from, name) in [
        ("images/photo_120x90.jpg", "a.jpg"),
        ("images/rgb_97x61.png", "b.png"),
    ] {
        let img = copy_to(d.path(), from, name);
        let before = fs::read(&img).unwrap();
        write_sidecar(&img, &c, &SidecarSettings::default()).unwrap();
        assert_eq!(
            embed_xmp(&img, &c, &SidecarSettings::default()).unwrap(),
            WriteOutcome::Skipped(SkipReason::EmbedDisabled)
        );
        assert_eq!(fs::read(&img).unwrap(), before, "{name}");
    }
}

#[test]
fn jpeg_and_png_carry_the_same_fields_and_still_decode() {
    need_tools!();
    let d = tempdir();
    let c = content(
        Some("A dog & a \"ball\"."),
        &["dog", "ball"],
        &[("dog", [0.1, 0.1, 0.2, 0.2])],
    );
    for (from, name) in [
        ("images/photo_120x90.jpg", "a.jpg"),
        ("images/rgb_97x61.png", "b.png"),
    ] {
        let img = copy_to(d.path(), from, name);
        let pixels = image::open(&img).unwrap().to_rgb8();
        let (_, warnings) = exiftool_validate(&img);
        assert_eq!(
            embed_xmp(&img, &c, &on()).unwrap(),
            WriteOutcome::Updated,
            "{name}"
        );
        let j = exiftool_json(&img);
        assert_eq!(j["XMP-dc:Description"], "A dog & a \"ball\".", "{name}");
        assert_eq!(strings(j.get("XMP-dc:Subject")), ["dog", "ball"]);
        assert_eq!(
            strings(j.get("XMP-digiKam:TagsList")),
            ["AI/dog", "AI/ball"]
        );
        assert_eq!(j["XMP-iptcExt:ImageRegion"][0]["Name"], "dog");
        assert_validates(&img, &warnings);
        let px = exiv2_px(&img);
        assert_eq!(
            exiv2_value(&px, "Xmp.dc.subject").as_deref(),
            Some("dog, ball"),
            "{name}"
        );
        assert_eq!(
            image::open(&img).unwrap().to_rgb8(),
            pixels,
            "{name}: pixels changed"
        );

        let bytes = fs::read(&img).unwrap();
        assert_eq!(
            embed_xmp(&img, &c, &on()).unwrap(),
            WriteOutcome::Unchanged,
            "{name}"
        );
        assert_eq!(fs::read(&img).unwrap(), bytes);
        let c2 = content(Some("A cat."), &["cat"], &[]);
        assert_eq!(embed_xmp(&img, &c2, &on()).unwrap(), WriteOutcome::Updated);
        let j = exiftool_json(&img);
        assert_eq!(j["XMP-dc:Description"], "A cat.");
        assert_eq!(strings(j.get("XMP-dc:Subject")), ["cat"]);
        assert_eq!(image::open(&img).unwrap().to_rgb8(), pixels);
    }
    assert!(temp_leftovers(d.path()).is_empty());
}

#[test]
fn a_persons_embedded_xmp_is_merged_not_replaced() {
    need_tools!();
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "p.jpg");
    let out = std::process::Command::new("exiftool")
        .args([
            "-q",
            "-overwrite_original",
            "-XMP-dc:Description=Mine",
            "-XMP-dc:Subject=holiday",
            "-XMP-xmp:Rating=5",
        ])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let before = exiftool_json(&img);
    assert_eq!(
        embed_xmp(&img, &content(Some("A dog."), &["dog"], &[]), &on()).unwrap(),
        WriteOutcome::Updated
    );
    let after = exiftool_json(&img);
    assert_preserved(&before, &after, &img);
    assert_eq!(after["XMP-dc:Description"], "Mine");
    assert_eq!(strings(after.get("XMP-dc:Subject")), ["holiday", "dog"]);
    assert_eq!(after["XMP-xmp:Rating"], 5);
}

#[test]
fn raw_and_other_formats_are_never_embedded_into() {
    let d = tempdir();
    let c = content(Some("x"), &["y"], &[]);
    let raw = d.path().join("IMG_1.CR2");
    fs::write(&raw, b"II*\0raw bytes").unwrap();
    let dng = copy_to(d.path(), "images/photo_120x90.jpg", "IMG_2.DNG");
    let gif = d.path().join("a.gif");
    fs::write(&gif, b"GIF89a....").unwrap();
    for p in [&raw, &dng, &gif] {
        let before = fs::read(p).unwrap();
        assert_eq!(
            embed_xmp(p, &c, &on()).unwrap(),
            WriteOutcome::Skipped(SkipReason::NotEmbeddable),
            "{}",
            p.display()
        );
        assert_eq!(fs::read(p).unwrap(), before);
    }
}
