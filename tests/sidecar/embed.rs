//! Embedded XMP: off by default (originals stay byte-identical), JPEG and PNG when asked, never RAW.

use std::fs;

use captiond::sidecar::*;

use super::support::*;

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

/// Records what an [`EmbedObserver`] is told, and can refuse the replacement.
struct Recorder {
    refuse: bool,
    calls: std::cell::RefCell<Vec<String>>,
}

impl EmbedObserver for Recorder {
    fn before_replace(
        &self,
        image: &std::path::Path,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), SidecarError> {
        // Still the old bytes at this point.
        let now = blake3::hash(&fs::read(image).unwrap()).to_hex().to_string();
        assert_eq!(now, old_hash);
        self.calls
            .borrow_mut()
            .push(format!("before {old_hash} {new_hash}"));
        if self.refuse {
            return Err(SidecarError::Conflict {
                path: image.to_path_buf(),
            });
        }
        Ok(())
    }

    fn after_replace(&self, image: &std::path::Path, new_hash: &str, size: u64, mtime_ns: i64) {
        use std::os::unix::fs::MetadataExt;
        let bytes = fs::read(image).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), new_hash);
        let md = fs::metadata(image).unwrap();
        assert_eq!(
            (size, mtime_ns),
            (md.len(), md.mtime() * 1_000_000_000 + md.mtime_nsec())
        );
        self.calls.borrow_mut().push(format!("after {new_hash}"));
    }
}

#[test]
fn the_observer_hears_before_and_after_and_can_stop_the_embed() {
    let d = tempdir();
    let c = content(Some("A dog."), &["dog"], &[]);
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "a.jpg");
    let before = fs::read(&img).unwrap();
    let old = blake3::hash(&before).to_hex().to_string();

    let refusing = Recorder {
        refuse: true,
        calls: Default::default(),
    };
    assert!(embed_xmp_observed(&img, &c, &on(), &refusing).is_err());
    assert_eq!(fs::read(&img).unwrap(), before, "embedded although refused");
    assert_eq!(refusing.calls.borrow().len(), 1);
    assert!(temp_leftovers(d.path()).is_empty());

    let rec = Recorder {
        refuse: false,
        calls: Default::default(),
    };
    assert_eq!(
        embed_xmp_observed(&img, &c, &on(), &rec).unwrap(),
        WriteOutcome::Updated
    );
    let new = blake3::hash(&fs::read(&img).unwrap()).to_hex().to_string();
    assert_eq!(
        *rec.calls.borrow(),
        vec![format!("before {old} {new}"), format!("after {new}")]
    );
    // Nothing to change: not told anything. Embedding off: not told anything.
    rec.calls.borrow_mut().clear();
    assert_eq!(
        embed_xmp_observed(&img, &c, &on(), &rec).unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(
        embed_xmp_observed(&img, &c, &SidecarSettings::default(), &rec).unwrap(),
        WriteOutcome::Skipped(SkipReason::EmbedDisabled)
    );
    assert!(rec.calls.borrow().is_empty());
}
