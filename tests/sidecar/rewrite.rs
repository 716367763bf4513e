//! `captiond sidecars rewrite` building block: regenerate from the catalog, touch only what changed.

use std::fs;

use captiond::catalog::{Catalog, MediaFacts, Priority, Region, TaskResult};
use captiond::sidecar::*;

use crate::support::*;

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
