//! `captiond doctor`: a healthy temp-dir setup passes (exit 0); each broken part is a FAIL line
//! with a `fix:` line and exit 1. Nothing is downloaded or written.

use captiond::catalog::Catalog;

use super::support::{healthy_config, Run, TestEnv};

fn doctor(env: &TestEnv, config: &std::path::Path, extra_env: &[(&str, &str)]) -> Run {
    env.run_env(
        extra_env,
        ["--config".as_ref(), config.as_os_str(), "doctor".as_ref()],
    )
}

/// Every stdout line is a check (`ok|warn|FAIL  name: detail`) or a `fix:` line.
#[track_caller]
fn well_formed(run: &Run) {
    for line in run.stdout.lines() {
        let ok = ["ok    ", "warn  ", "FAIL  "]
            .iter()
            .any(|p| line.starts_with(p) && line[6..].contains(": "))
            || line.starts_with("      fix: ");
        run.check(ok, format_args!("malformed line {line:?}"));
    }
}

#[test]
fn healthy_setup_passes() {
    let env = TestEnv::new();
    let config = healthy_config(&env);
    Catalog::open(&env.root().join("catalog/catalog.db")).unwrap();
    let run = doctor(&env, &config, &[]);
    run.expect_code(0);
    well_formed(&run);
    run.check(!run.stdout.contains("FAIL"), "no failures");
    for line in [
        "ok    config: ",
        "ok    library ",
        "ok    sidecars ",
        "ok    model: local folder ",
        "ok    device: cpu",
    ] {
        run.check(run.stdout.contains(line), format_args!("has {line:?}"));
    }
    run.check(
        run.stdout.contains("passes quick_check"),
        "the catalog is checked",
    );
    run.check(run.stdout.contains("  disk: "), "free space is checked");
    run.check(
        run.stdout.contains("ok    search index: ") && run.stdout.contains("is not built yet"),
        "the search index is reported",
    );
    // Doctor only reads: it did not build the index.
    run.check(
        !env.root().join("catalog/catalog.db-search").exists(),
        "no index was created",
    );
    if cfg!(target_os = "linux") {
        run.check(
            run.stdout
                .contains("1 folder to watch, fs.inotify.max_user_watches = "),
            "counts the folders against the inotify limit",
        );
    }
}

#[test]
fn missing_library_root_fails_with_a_fix() {
    let env = TestEnv::new();
    let config = healthy_config(&env);
    std::fs::remove_dir_all(env.root().join("photos")).unwrap();
    let run = doctor(&env, &config, &[]);
    run.expect_code(1);
    well_formed(&run);
    let photos = env.root().join("photos").display().to_string();
    run.check(
        run.stdout
            .contains(&format!("FAIL  library {photos}: does not exist")),
        "names the missing root",
    );
    run.check(run.stdout.contains("      fix: "), "says how to fix it");
    run.check(
        !env.root().join("photos").exists(),
        "doctor created nothing",
    );
}

#[test]
fn hub_model_not_cached_is_downloadable_unless_offline() {
    let env = TestEnv::new();
    let config = healthy_config(&env);
    let text = std::fs::read_to_string(&config).unwrap();
    let model_dir_line = text.lines().find(|l| l.starts_with("dir = ")).unwrap();
    std::fs::write(
        &config,
        text.replace(model_dir_line, "repo = \"example-org/Florence-2-none\""),
    )
    .unwrap();
    let before = env.tree();
    // An endpoint nobody listens on: doctor must not try it anyway.
    let unreachable = [("HF_ENDPOINT", "http://127.0.0.1:9")];
    let run = doctor(&env, &config, &unreachable);
    run.expect_code(0);
    run.check(
        run.stdout
            .contains("ok    model: example-org/Florence-2-none@main is not cached yet")
            && run.stdout.contains("downloads it from http://127.0.0.1:9"),
        "says the first run downloads it",
    );
    assert_eq!(env.tree(), before, "doctor wrote or downloaded something");

    let offline = [
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let run = doctor(&env, &config, &offline);
    run.expect_code(1);
    well_formed(&run);
    run.check(
        run.stdout.contains("FAIL  model: "),
        "offline and not cached fails",
    );
    run.check(run.stdout.contains("HF_HUB_OFFLINE"), "names the setting");
}

#[test]
fn broken_parts_fail() {
    let env = TestEnv::new();
    let config = healthy_config(&env);
    // Not a SQLite file.
    env.write(
        "catalog/catalog.db",
        b"this is not a database, just text long enough to have a header".repeat(20),
    );
    let run = doctor(&env, &config, &[]);
    run.expect_code(1);
    well_formed(&run);
    run.check(
        run.stdout.contains("FAIL  catalog: "),
        "a corrupt catalog fails",
    );

    // A local model folder without weights.
    let empty_model = env.root().join("model-without-weights");
    std::fs::create_dir_all(&empty_model).unwrap();
    let text = format!(
        "[[library]]\npath = {:?}\n[model]\ndir = {empty_model:?}\n",
        env.root().join("photos")
    );
    let config = env.write("config2.toml", text);
    let run = doctor(&env, &config, &[]);
    run.expect_code(1);
    run.check(
        run.stdout.contains("FAIL  model: "),
        "an incomplete model folder fails",
    );

    // A config that does not parse.
    let config = env.write("bad.toml", "[model]\nbeems = 3\n");
    let run = doctor(&env, &config, &[]);
    run.expect_code(1);
    well_formed(&run);
    run.check(run.stdout.contains("FAIL  config: "), "a bad config fails");
}

#[test]
fn gpu_device_without_backend_fails() {
    if cfg!(feature = "cuda") {
        return;
    }
    let env = TestEnv::new();
    let config = healthy_config(&env);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("device = \"cpu\"", "device = \"cuda\"");
    std::fs::write(&config, text).unwrap();
    let run = doctor(&env, &config, &[]);
    run.expect_code(1);
    run.check(
        run.stdout.contains("FAIL  device: ") && run.stdout.contains("--features cuda"),
        "says how to build with CUDA",
    );
}
