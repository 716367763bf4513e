//! Camera RAW files are captioned from their embedded JPEG preview: once, with their own sidecar
//! (`IMG_1.NEF.xmp`, or the pair's `IMG_1.xmp` under `stem` naming, written by the RAW), and
//! never modified.

use crate::common::raw_file;

use std::fs;

use super::support::*;

#[test]
fn a_raw_and_a_jpeg_are_each_captioned_once_and_the_raw_is_left_untouched() {
    let env = Env::new();
    env.write_config_with(&["<CAPTION>", "<OD>"], &tiny_model(), "sidecars = true");
    // The preview is a fixture photo, shown turned 90° (orientation 8): the tiny model has
    // something to say about it then ("mm").
    let preview = fixture_image("photo_120x90.jpg");
    let nef_bytes = raw_file::nef(&preview, &raw_file::jpeg(16, 12, 2), 8);
    let nef = env.put("IMG_0001.NEF", &nef_bytes);
    let jpg = env.put("IMG_0002.JPG", &preview);

    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (2, 0, 0), "2 captioned, nothing failed");
    for path in [&nef, &jpg] {
        run.check(
            captioned_count(&run.stderr, path) == 1,
            format!("{} captioned once", path.display()),
        );
    }
    assert_eq!(fs::read(&nef).unwrap(), nef_bytes, "the NEF was modified");

    // What the catalog knows of the RAW: the preview's size as stored, the RAW's orientation
    // and camera.
    let conn = env.sql().unwrap();
    let (w, h, orientation, make): (i64, i64, i64, String) = conn
        .query_row(
            "SELECT width, height, orientation, camera_make FROM contents WHERE hash = ?1",
            [blake3_hex(&nef_bytes)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (w, h, orientation, make.as_str()),
        (120, 90, 8, "NIKON CORPORATION")
    );
    let caption: String = conn
        .query_row(
            "SELECT clean_text FROM results WHERE hash = ?1 AND task = '<CAPTION>'",
            [blake3_hex(&nef_bytes)],
            |r| r.get(0),
        )
        .unwrap();

    let sidecar = env.lib().join("IMG_0001.NEF.xmp");
    run.check(sidecar.exists(), "IMG_0001.NEF.xmp written");
    run.check(
        env.lib().join("IMG_0002.JPG.xmp").exists(),
        "IMG_0002.JPG.xmp written",
    );
    assert_eq!(caption, "mm");
    if have_exiftool() {
        assert_eq!(exiftool_tag(&sidecar, "-XMP-dc:Description"), "mm");
    }

    // A second run: nothing to do.
    let again = env.run(&["run", "--once"]);
    again.expect_code(0);
    again.check(again.summary() == (0, 0, 2), "nothing captioned again");
    assert_eq!(fs::read(&nef).unwrap(), nef_bytes);
}

#[test]
fn under_stem_naming_the_raw_writes_the_pairs_sidecar() {
    let env = Env::new();
    env.write_config_with(
        &["<CAPTION>"],
        &tiny_model(),
        "sidecars = true\nnaming = \"stem\"",
    );
    // The RAW's preview gives the caption "mm" (see above), the JPEG beside it none: the
    // pair's sidecar says which of them wrote it.
    let preview = fixture_image("photo_120x90.jpg");
    let nef_bytes = raw_file::nef(&preview, &raw_file::jpeg(16, 12, 5), 8);
    let nef = env.put("IMG_0003.NEF", &nef_bytes);
    let jpg = env.put("IMG_0003.JPG", &preview);
    // A RAW without a preview (so not captioned) beside a PNG: the PNG writes.
    let lone = env.put("IMG_0004.NEF", b"II*\0\x08\0\0\0\0\0\0\0\0\0");
    env.put("IMG_0004.png", &fixture_image("rgba_64x48.png"));

    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (3, 0, 0), "3 captioned, nothing failed");
    run.check(
        captioned_count(&run.stderr, &nef) == 1 && captioned_count(&run.stderr, &jpg) == 1,
        "both of the pair captioned",
    );
    run.check(
        captioned_count(&run.stderr, &lone) == 0,
        "the RAW without a preview is skipped",
    );
    let mut names: Vec<String> = fs::read_dir(env.lib())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xmp"))
        .collect();
    names.sort();
    assert_eq!(names, ["IMG_0003.xmp", "IMG_0004.xmp"]);
    assert_eq!(fs::read(&nef).unwrap(), nef_bytes);
    if have_exiftool() {
        for stem in ["IMG_0003", "IMG_0004"] {
            let sidecar = env.lib().join(format!("{stem}.xmp"));
            assert_eq!(
                exiftool_tag(&sidecar, "-XMP-dc:Description"),
                "mm",
                "{stem}"
            );
        }
    }
}
