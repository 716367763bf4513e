//! `run --once` on a library with camera RAW and HEIC files: there is no decoder for them yet, so
//! they are neither queued nor failed; the JPEG/PNG beside them is captioned.

use crate::support::{image, model, TestEnv};

#[test]
fn raw_and_heic_are_skipped_not_failed() {
    let env = TestEnv::new();
    let lib = env.work().join("photos");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(image("rgb_97x61.png"), lib.join("IMG_1.png")).unwrap();
    // A TIFF-based RAW by extension, a Canon CR2 by magic, and an HEIC by its ftyp box.
    std::fs::write(lib.join("IMG_1.NEF"), b"II*\0\x08\0\0\0rest of a raw file").unwrap();
    std::fs::write(lib.join("IMG_2.dat"), b"II*\0\x10\0\0\0CR\x02\0rest").unwrap();
    std::fs::write(
        lib.join("IMG_3.heic"),
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
    )
    .unwrap();
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
        run.stdout.contains("captioned 1, failed 0"),
        "expected the PNG captioned and nothing failed",
    );
}
