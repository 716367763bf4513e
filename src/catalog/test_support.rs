//! Test helpers shared by the catalog's unit tests: a catalog in a temp dir with one library,
//! content hashes, and results as a job would hand them to `finish`.

use std::path::{Path, PathBuf};

use super::{Catalog, MediaFacts, Priority, Region, TaskResult};

pub fn hash_of(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

pub fn caption(text: &str, labels: &[&str]) -> Vec<TaskResult> {
    vec![
        TaskResult {
            task: "<MORE_DETAILED_CAPTION>".into(),
            model_repo: "microsoft/Florence-2-base".into(),
            model_revision: "abc".into(),
            raw_text: format!("</s><s>{text}</s>"),
            clean_text: Some(text.into()),
            result_json: serde_json::json!({ "<MORE_DETAILED_CAPTION>": text }),
            regions: vec![],
            keywords: vec![],
            ocr_text: None,
        },
        TaskResult {
            task: "<OD>".into(),
            model_repo: "microsoft/Florence-2-base".into(),
            model_revision: "abc".into(),
            raw_text: "<loc_1>".into(),
            clean_text: None,
            result_json: serde_json::json!({ "<OD>": { "bboxes": [], "labels": labels } }),
            regions: labels
                .iter()
                .map(|l| Region {
                    label: l.to_string(),
                    bbox: [0.1, 0.2, 0.5, 0.6],
                })
                .collect(),
            keywords: labels.iter().map(|l| l.to_string()).collect(),
            ocr_text: None,
        },
    ]
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub cat: Catalog,
    pub lib: i64,
    pub db: PathBuf,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    let cat = Catalog::open(&db).unwrap();
    let lib = cat.upsert_library(Path::new("/photos")).unwrap();
    Fixture {
        _dir: dir,
        cat,
        lib,
        db,
    }
}

pub const PROFILE: &str = "microsoft/Florence-2-base@abc|<MORE_DETAILED_CAPTION>,<OD>";

/// Records `path` with content `content`, enqueues, claims and finishes it with `text`.
pub fn add_captioned(
    f: &Fixture,
    path: &str,
    content: &str,
    media: MediaFacts,
    text: &str,
    labels: &[&str],
) -> String {
    let hash = hash_of(content);
    f.cat
        .record_photo(f.lib, Path::new(path), 10, 1, &hash, &media)
        .unwrap();
    f.cat.enqueue(&hash, PROFILE, Priority::New).unwrap();
    let jobs = f.cat.claim(PROFILE, 100).unwrap();
    for j in jobs {
        f.cat.finish(j.id, &j.hash, &caption(text, labels)).unwrap();
    }
    hash
}
