//! Sidecars we must not touch: truncated, DTD/entity tricks. The file stays byte-for-byte as it
//! was, the error names it and its cause, no temp file is left, and other photos go on.

use std::error::Error as _;
use std::fs;

use captiond::sidecar::*;

use super::support::*;

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn refused(fixture_name: &str, cause: &str) {
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "IMG_9.JPG");
    let xmp = copy_to(d.path(), &format!("xmp/{fixture_name}"), "IMG_9.JPG.xmp");
    let before = fs::read(&xmp).unwrap();
    let mtime = fs::metadata(&xmp).unwrap().modified().unwrap();
    let c = content(Some("A dog."), &["dog"], &[("dog", [0.1, 0.1, 0.2, 0.2])]);
    let settings = SidecarSettings {
        mwg_regions: true,
        embed: true,
        ..SidecarSettings::default()
    };

    let err = write_sidecar(&img, &c, &settings).expect_err(fixture_name);
    let text = chain(&err);
    assert!(matches!(err, SidecarError::Parse { .. }), "{text}");
    assert!(
        text.contains(&xmp.display().to_string()),
        "names the file: {text}"
    );
    assert!(text.contains("left untouched"), "{text}");
    assert!(
        text.to_lowercase().contains(cause),
        "{fixture_name}: `{cause}` not in: {text}"
    );
    assert!(err.source().is_some());
    assert_eq!(fs::read(&xmp).unwrap(), before, "{fixture_name} changed");
    assert_eq!(fs::metadata(&xmp).unwrap().modified().unwrap(), mtime);
    assert!(temp_leftovers(d.path()).is_empty());

    // The run goes on: the next photo in the folder is written.
    let other = copy_to(d.path(), "images/photo_120x90.jpg", "IMG_10.JPG");
    assert_eq!(
        write_sidecar(&other, &c, &settings).unwrap(),
        WriteOutcome::Created
    );
}

#[test]
fn truncated_sidecar_is_left_untouched() {
    refused("truncated.xmp", "truncated");
}

#[test]
fn entity_bomb_is_refused_without_expansion() {
    refused("entity-bomb.xmp", "dtd");
}

#[test]
fn external_entity_is_refused_without_fetching() {
    refused("external-entity.xmp", "dtd");
}

#[test]
fn non_xmp_and_undefined_entities_are_refused() {
    let d = tempdir();
    let img = copy_to(d.path(), "images/photo_120x90.jpg", "a.jpg");
    let xmp = d.path().join("a.jpg.xmp");
    let c = content(Some("x"), &[], &[]);
    for bad in [
        &b""[..],
        b"<html><body>not xmp</body></html>",
        b"\xFF\xFE<\x00x\x00",
        b"<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" dc:format=\"&nbsp;\"/></rdf:RDF></x:xmpmeta>",
    ] {
        fs::write(&xmp, bad).unwrap();
        let err = write_sidecar(&img, &c, &SidecarSettings::default()).unwrap_err();
        assert!(matches!(err, SidecarError::Parse { .. }), "{}", chain(&err));
        assert_eq!(fs::read(&xmp).unwrap(), bad);
    }
    assert!(temp_leftovers(d.path()).is_empty());
}
