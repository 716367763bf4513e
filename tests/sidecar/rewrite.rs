//! `captiond sidecars rewrite` building block: regenerate from the catalog, touch only what changed.

use std::fs;

use captiond::catalog::{Catalog, MediaFacts, Priority, Region, TaskResult};
use captiond::sidecar::*;

use super::support::*;

fn result(
    task: &str,
    caption: Option<&str>,
    regions: Vec<Region>,
    keywords: &[&str],
) -> TaskResult {
    TaskResult {
        task: task.into(),
        model_repo: "microsoft/Florence-2-base".into(),
        model_revision: "r1".into(),
        raw_text: String::new(),
        clean_text: caption.map(str::to_string),
        result_json: serde_json::Value::Null,
        regions,
        keywords: keywords.iter().map(|s| s.to_string()).collect(),
        ocr_text: None,
    }
}

#[test]
fn rewrite_regenerates_from_the_catalog_and_skips_unchanged() {
    let d = tempdir();
    let root = d.path().join("photos");
    fs::create_dir(&root).unwrap();
    let img = copy_to(&root, "images/photo_120x90.jpg", "IMG_1.JPG");
    let other = copy_to(&root, "images/photo_120x90.jpg", "unknown.jpg");
    let cat = Catalog::open(&d.path().join("catalog.db")).unwrap();
    let lib = cat.upsert_library(&root).unwrap();
    let hash = "h1";
    cat.record_photo(lib, &img, 1, 1, hash, &MediaFacts::default())
        .unwrap();
    cat.enqueue(hash, "default", Priority::New).unwrap();
    let job = cat.claim("default", 1).unwrap().remove(0);
    cat.finish(
        job.id,
        hash,
        &[
            result("<MORE_DETAILED_CAPTION>", Some("A photo."), vec![], &[]),
            result(
                "<OD>",
                None,
                vec![Region {
                    label: "dog".into(),
                    bbox: [0.1, 0.2, 0.3, 0.4],
                }],
                &["dog"],
            ),
        ],
    )
    .unwrap();

    let s = SidecarSettings::default();
    let out = rewrite(&cat, &img, &s).unwrap();
    assert_eq!(out.sidecar, WriteOutcome::Created);
    assert_eq!(
        out.embedded,
        WriteOutcome::Skipped(SkipReason::EmbedDisabled)
    );
    let xmp = root.join("IMG_1.JPG.xmp");
    let p = Packet::parse(&fs::read(&xmp).unwrap()).unwrap();
    let text = String::from_utf8(p.serialize(0)).unwrap();
    assert!(
        text.contains("A photo.") && text.contains("AI|dog"),
        "{text}"
    );

    assert_eq!(
        rewrite(&cat, &other, &s).unwrap().sidecar,
        WriteOutcome::Skipped(SkipReason::NotInCatalog)
    );

    let mut seen = Vec::new();
    rewrite_under(
        &cat,
        Some(&root),
        |_| Some(s.clone()),
        |path, res| {
            seen.push((path.to_path_buf(), res.unwrap().sidecar));
        },
    )
    .unwrap();
    assert_eq!(seen, vec![(img.clone(), WriteOutcome::Unchanged)]);
}

fn stat(p: &std::path::Path) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(p).unwrap();
    (md.len(), md.mtime() * 1_000_000_000 + md.mtime_nsec())
}

fn blake3_file(p: &std::path::Path) -> String {
    blake3::hash(&fs::read(p).unwrap()).to_hex().to_string()
}

/// `embed = true`, `sidecars = false`: XMP goes into the JPEG and PNG only, and the catalog keeps
/// knowing each changed file as the content it was (alias before, new size and mtime after).
#[test]
fn embedding_without_sidecars_keeps_the_photos_identity() {
    let d = tempdir();
    let root = d.path().join("photos");
    fs::create_dir(&root).unwrap();
    let cat = Catalog::open(&d.path().join("catalog.db")).unwrap();
    let lib = cat.upsert_library(&root).unwrap();
    let jpg = copy_to(&root, "images/photo_120x90.jpg", "IMG_1.JPG");
    let png = copy_to(&root, "images/rgb_97x61.png", "b.png");
    // A RAW name (PNG bytes inside, so only the name says RAW), in the catalog: never embedded
    // into.
    let raw = copy_to(&root, "images/portrait_45x83.png", "IMG_3.CR2");
    let mut hashes = Vec::new();
    for p in [&jpg, &png, &raw] {
        let hash = blake3_file(p);
        let (size, mtime) = stat(p);
        cat.record_photo(lib, p, size, mtime, &hash, &MediaFacts::default())
            .unwrap();
        cat.enqueue(&hash, "default", Priority::New).unwrap();
        let job = cat.claim("default", 1).unwrap().remove(0);
        cat.finish(
            job.id,
            &job.hash,
            &[result(
                "<MORE_DETAILED_CAPTION>",
                Some("A photo."),
                vec![],
                &["dog"],
            )],
        )
        .unwrap();
        hashes.push(hash);
    }
    let s = SidecarSettings {
        sidecar: false,
        embed: true,
        ..SidecarSettings::default()
    };
    for (p, hash) in [(&jpg, &hashes[0]), (&png, &hashes[1])] {
        let out = rewrite(&cat, p, &s).unwrap();
        assert_eq!(
            out.sidecar,
            WriteOutcome::Skipped(SkipReason::SidecarDisabled)
        );
        assert_eq!(out.embedded, WriteOutcome::Updated, "{}", p.display());
        let now = blake3_file(p);
        assert_ne!(&now, hash, "{}: bytes unchanged", p.display());
        assert_eq!(cat.resolve_content(&now).unwrap().as_deref(), Some(&**hash));
        let row = cat.photo_by_path(p).unwrap().unwrap();
        assert_eq!(&row.hash, hash);
        assert_eq!((row.size, row.mtime_ns), stat(p), "{}", p.display());
        // Up to date: untouched.
        let bytes = fs::read(p).unwrap();
        assert_eq!(
            rewrite(&cat, p, &s).unwrap().embedded,
            WriteOutcome::Unchanged
        );
        assert_eq!(fs::read(p).unwrap(), bytes);
    }
    let raw_bytes = fs::read(&raw).unwrap();
    let out = rewrite(&cat, &raw, &s).unwrap();
    assert_eq!(
        out.embedded,
        WriteOutcome::Skipped(SkipReason::NotEmbeddable)
    );
    assert_eq!(fs::read(&raw).unwrap(), raw_bytes);
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xmp") || n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // A rescan that reads the embedded JPEG again (e.g. after a restart) records the old content.
    let (size, mtime) = stat(&jpg);
    let o = cat
        .record_photo(
            lib,
            &jpg,
            size,
            mtime,
            &blake3_file(&jpg),
            &MediaFacts::default(),
        )
        .unwrap();
    assert_eq!(o.hash, hashes[0]);
    assert!(!o.changed);
}

/// MWG regions carry the stored frame's size. A RAW's is the one the catalog recorded (its
/// preview's): the `image` crate cannot read a RAW header.
#[test]
fn mwg_regions_of_a_raw_use_the_catalogs_size() {
    let d = tempdir();
    let root = d.path().join("photos");
    fs::create_dir(&root).unwrap();
    let raw = root.join("IMG_7.NEF");
    fs::write(&raw, b"II*\0 not decodable by the image crate").unwrap();
    let cat = Catalog::open(&d.path().join("catalog.db")).unwrap();
    let lib = cat.upsert_library(&root).unwrap();
    let media = MediaFacts {
        width: Some(1620),
        height: Some(1080),
        ..MediaFacts::default()
    };
    cat.record_photo(lib, &raw, 1, 1, "raw7", &media).unwrap();
    cat.enqueue("raw7", "default", Priority::New).unwrap();
    let job = cat.claim("default", 1).unwrap().remove(0);
    let dog = Region {
        label: "dog".into(),
        bbox: [0.1, 0.2, 0.3, 0.4],
    };
    cat.finish(job.id, "raw7", &[result("<OD>", None, vec![dog], &["dog"])])
        .unwrap();
    let s = SidecarSettings {
        mwg_regions: true,
        ..SidecarSettings::default()
    };
    assert_eq!(
        rewrite(&cat, &raw, &s).unwrap().sidecar,
        WriteOutcome::Created
    );
    let text = fs::read_to_string(root.join("IMG_7.NEF.xmp")).unwrap();
    assert!(text.contains("mwg-rs:Regions"), "{text}");
    assert!(
        text.contains("1620") && text.contains("1080"),
        "AppliedToDimensions from the catalog: {text}"
    );
}
