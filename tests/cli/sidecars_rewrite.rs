//! `captiond sidecars rewrite [PATH]`: regenerates missing or outdated sidecars from the catalog
//! and leaves the others byte- and mtime-identical.

use std::path::Path;

use super::support::{image, model, TestEnv};

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn rewrite_restores_only_what_changed() {
    let env = TestEnv::new();
    let lib = env.work().join("photos");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    std::fs::copy(image("rgb_97x61.png"), lib.join("a.png")).unwrap();
    std::fs::copy(image("portrait_45x83.png"), lib.join("sub/b.png")).unwrap();
    let config = env.write(
        "config.toml",
        format!(
            "database = \"catalog.db\"\n[[library]]\npath = \"{}\"\n[model]\ndir = \"{}\"\ntasks = [\"<MORE_DETAILED_CAPTION>\", \"<OD>\"]\nbeams = 1\nmax_new_tokens = 24\n[daemon]\nsettle_ms = 0\n",
            lib.display(),
            model("tiny-a").display()
        ),
    );
    let config = config.to_str().unwrap().to_string();
    env.run(["--config", &config, "run", "--once"])
        .expect_code(0);
    let (a, b) = (lib.join("a.png.xmp"), lib.join("sub/b.png.xmp"));
    assert!(a.exists() && b.exists(), "run --once wrote no sidecars");
    let a_bytes = std::fs::read(&a).unwrap();
    let a_time = mtime(&a);

    std::fs::remove_file(&b).unwrap();
    let run = env.run([
        "--config",
        &config,
        "sidecars",
        "rewrite",
        lib.join("sub").to_str().unwrap(),
    ]);
    run.expect_code(0);
    run.check(
        b.exists(),
        "the deleted sidecar under PATH was not rewritten",
    );
    run.check(
        run.stdout.contains("1 written"),
        "expected exactly one sidecar written",
    );

    let run = env.run(["--config", &config, "sidecars", "rewrite"]);
    run.expect_code(0);
    run.check(
        run.stdout.contains("0 written, 2 unchanged"),
        "a second full rewrite should change nothing",
    );
    assert_eq!(
        std::fs::read(&a).unwrap(),
        a_bytes,
        "an up-to-date sidecar was rewritten"
    );
    assert_eq!(mtime(&a), a_time, "an up-to-date sidecar was touched");
}
