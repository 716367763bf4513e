//! `run --once` on a library with camera RAW and HEIC files: a RAW is captioned from its embedded
//! JPEG preview; a RAW without one, and HEIC (no decoder), are neither queued nor failed; the
//! PNG beside them is captioned.

use crate::common::raw_file;

use super::support::{image, model, TestEnv};

#[test]
fn raw_with_a_preview_is_captioned_raw_without_one_and_heic_are_skipped_not_failed() {
    let env = TestEnv::new();
    let lib = env.work().join("photos");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(image("rgb_97x61.png"), lib.join("IMG_1.png")).unwrap();
    // Without a preview: a TIFF-based RAW by extension, a Canon CR2 by magic. An HEIC by its
    // ftyp box.
    std::fs::write(lib.join("IMG_1.NEF"), b"II*\0\x08\0\0\0rest of a raw file").unwrap();
    std::fs::write(lib.join("IMG_2.dat"), b"II*\0\x10\0\0\0CR\x02\0rest").unwrap();
    std::fs::write(
        lib.join("IMG_3.heic"),
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
    )
    .unwrap();
    // With a preview.
    let preview = std::fs::read(image("photo_120x90.jpg")).unwrap();
    let nef = raw_file::nef(&preview, &raw_file::jpeg(16, 12, 1), 6);
    std::fs::write(lib.join("IMG_4.NEF"), &nef).unwrap();
    let config = env.write(
        "config.toml",
        format!(
            "database = \"catalog.db\"\n[[library]]\npath = \"{}\"\nsidecars = false\n[model]\ndir = \"{}\"\ntasks = [\"<CAPTION>\"]\nbeams = 1\nmax_new_tokens = 8\n[daemon]\nsettle_ms = 0\n",
            lib.display(),
            model("tiny-a").display()
        ),
    );
    let run = env.run(["--config", config.to_str().unwrap(), "run", "--once"]);
    run.expect_code(0);
    run.check(
        run.stdout.contains("captioned 2, failed 0"),
        "expected the PNG and the NEF with a preview captioned and nothing failed",
    );
    let log = crate::common::strip_ansi(&run.stderr);
    run.check(
        log.contains("IMG_4.NEF}: captioned:") && !log.contains("IMG_1.NEF}"),
        "the NEF with a preview is the one captioned",
    );
    assert_eq!(std::fs::read(lib.join("IMG_4.NEF")).unwrap(), nef);
}
