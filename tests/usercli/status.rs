//! `captiond status`: the `--json` counts match the catalog, libraries and daemon detection.

use captiond::catalog::QueueCounts;
use captiond::daemon::RunLock;

use super::support::{counts_of, TestEnv};

#[test]
fn json_counts_match_the_catalog() {
    let env = TestEnv::new();
    let cat = env.corpus();
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    run.check(
        counts_of(&v) == cat.queue_counts(None).unwrap(),
        "pending/running/done/failed as in the catalog",
    );
    run.check(v["captioned_last_hour"] == 6, "six finished just now");
    run.check(v["daemon_running"] == false, "no daemon");
    run.check(v["daemon_pid"].is_null(), "no pid");
    run.check(v["eta_seconds"].is_null(), "no ETA without a daemon");
    run.check(
        v["database"] == env.db().display().to_string(),
        "the catalog path",
    );
    let libs = v["libraries"].as_array().unwrap();
    run.check(libs.len() == 1, "one library");
    let lib = &libs[0];
    run.check(
        lib["root"] == env.library().display().to_string(),
        "library root",
    );
    // Present photos: six captioned, three queued.
    run.check(lib["photos"] == 9, "photos in the library");
    run.check(lib["online"] == true, "the root exists");
    run.check(lib["configured"] == true, "from the config");
    run.check(
        v["model"]["source"] == "florence-community/Florence-2-base@main",
        "the default model",
    );
    run.check(v["model"]["device"] == "auto", "device from the config");

    // Counts follow the catalog as it changes.
    let jobs = cat.claim(super::support::PROFILE, 10).unwrap();
    run.check(jobs.len() == 1, "the pending job is claimable");
    let run = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    run.check(
        counts_of(&v) == cat.queue_counts(None).unwrap(),
        "counts after a claim",
    );
    run.check(
        v["running"] == 2 && v["pending"] == 0,
        "2 running, 0 pending",
    );
}

#[test]
fn daemon_lock_is_seen_and_not_disturbed() {
    let env = TestEnv::new();
    env.corpus();
    // The lock the daemon holds for its whole run (taken here as `captiond run` takes it).
    let lock = RunLock::acquire(&env.db()).unwrap();
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    run.check(v["daemon_running"] == true, "daemon seen");
    run.check(
        v["daemon_pid"] == std::process::id(),
        "pid from the lock file",
    );
    // 6 done in the last hour, 1 pending: 1/6 h = 600 s.
    run.check(v["eta_seconds"] == 600, "ETA at last hour's rate");
    let run = env.run(&["status"]);
    run.expect_code(0);
    run.check(
        run.stdout
            .contains(&format!("running (pid {})", std::process::id())),
        "human output names the daemon",
    );
    drop(lock);
    // The probe let go: a daemon can take the lock right away.
    let again = RunLock::acquire(&env.db());
    assert!(again.is_ok(), "lock free after status: {again:?}");
}

#[test]
fn human_output() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["status"]);
    run.expect_code(0);
    for needle in [
        "1 pending, 1 running, 6 done, 1 failed",
        "not running",
        "online, ",
        "9 photos",
        "6 photos captioned in the last hour",
        "captiond retry",
        "IMG_0102.JPG: cannot decode: truncated JPEG",
    ] {
        run.check(
            run.stdout.contains(needle),
            format_args!("shows {needle:?}"),
        );
    }
}

/// A fresh install, before the first scan: the configured libraries are listed as not scanned,
/// every count is 0, exit 0, and nothing is created.
#[test]
fn before_the_first_scan_status_lists_the_libraries_as_not_scanned() {
    let env = TestEnv::new();
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    let v = run.single_row();
    assert_eq!(v["catalog_exists"], false, "{v}");
    assert_eq!(counts_of(&v), QueueCounts::default(), "{v}");
    let libs = v["libraries"].as_array().unwrap();
    assert_eq!(libs.len(), 1, "{v}");
    assert_eq!(libs[0]["root"], env.library().display().to_string(), "{v}");
    assert_eq!(libs[0]["photos"], 0, "{v}");
    assert_eq!(libs[0]["scanned"], false, "{v}");
    assert_eq!(libs[0]["last_scan"], serde_json::Value::Null, "{v}");
    assert_eq!(v["daemon_running"], false, "{v}");

    let run = env.run(&["status"]);
    run.expect_code(0);
    for needle in [
        "not created yet",
        "captiond run",
        "not scanned yet",
        "0 pending",
    ] {
        run.check(
            run.stdout.contains(needle),
            format_args!("shows {needle:?}"),
        );
    }
    run.check(!env.db().exists(), "status never creates a catalog");
}
