//! Integration tests of `captiond run` and `captiond run --once`: the real binary as a child process
//! on real files in temp dirs, with the tiny fixture model; every wait is bounded and polls the
//! catalog. `discovery_speed` (ignored) measures discovery on 100k files in-process.

mod support;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use captiond::catalog::{Catalog, SearchQuery};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn copies_while_running_are_captioned_once_and_a_second_run_is_refused() {
    let env = Env::new();
    let mut daemon = env.spawn();
    daemon.wait_ready(&env);

    // One daemon per catalog.
    let second = env.run(&["run", "--once"]);
    second.expect_code(1);
    second.check(
        second.stderr.contains("already") && second.stderr.contains("catalog.db"),
        "the refusal names the catalog",
    );

    // 50 photos copied in (as a file manager would), some into a new subfolder.
    let mut expected = HashMap::new();
    for i in 0..50u32 {
        let staged = env.root().join(format!("staging/img_{i:03}.png"));
        fs::write(&staged, png(i)).unwrap();
        let rel = if i % 3 == 0 {
            format!("new/sub/img_{i:03}.png")
        } else {
            format!("img_{i:03}.png")
        };
        let dest = env.lib().join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&staged, &dest).unwrap();
        expected.insert(dest, blake3_hex(&png(i)));
    }
    daemon.wait_for("50 done jobs", WAIT, || (env.done() == 50).then_some(()));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0\n{}", strip_ansi(&log));

    assert_eq!(env.count("SELECT count(*) FROM jobs"), 50);
    assert_eq!(env.count("SELECT count(DISTINCT hash) FROM jobs"), 50);
    assert_eq!(
        env.count("SELECT count(*) FROM results"),
        100,
        "two tasks each"
    );
    let photos = env.photos();
    assert_eq!(photos.len(), 50);
    for (path, hash, state) in &photos {
        assert_eq!(state, "present");
        assert_eq!(Some(hash), expected.get(path), "{}", path.display());
    }
    assert_eq!(captioned_lines(&log).len(), 50, "{}", strip_ansi(&log));
    for path in expected.keys() {
        assert_eq!(captioned_count(&log, path), 1, "{}", path.display());
    }
}

#[test]
fn a_slowly_written_file_is_captioned_once_when_complete() {
    let env = Env::new();
    let mut daemon = env.spawn();
    daemon.wait_ready(&env);

    let bytes = png_sized(7, 160, 120);
    let path = env.lib().join("slow.png");
    // Each pause is well under settle_ms, the whole write well over it.
    write_slowly(&path, &bytes, 10, Duration::from_millis(80));
    daemon.wait_for("the slow file done", WAIT, || {
        (env.done() == 1).then_some(())
    });
    // A further settle period: nothing else may be queued for it.
    std::thread::sleep(Duration::from_millis(3 * SETTLE_MS));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));

    assert_eq!(
        env.count("SELECT count(*) FROM contents"),
        1,
        "no partial content recorded"
    );
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE state = 'failed'"),
        0
    );
    assert_eq!(
        env.photos(),
        vec![(path.clone(), blake3_hex(&bytes), "present".into())]
    );
    assert_eq!(captioned_count(&log, &path), 1, "{}", strip_ansi(&log));
}

#[test]
fn renames_and_moves_keep_results_without_captioning_again() {
    let env = Env::new();
    let names = ["a/one.png", "a/two.png", "c/three.png", "c/deep/four.png"];
    for (i, n) in names.iter().enumerate() {
        env.put(n, &png(100 + i as u32));
    }
    fs::create_dir_all(env.lib().join("b")).unwrap();
    let mut daemon = env.spawn();
    daemon.wait_for("4 done jobs", WAIT, || (env.done() == 4).then_some(()));
    let results_before = env.results();
    let hashes_before: HashSet<String> = env.photos().into_iter().map(|(_, h, _)| h).collect();

    let lib = env.lib();
    fs::rename(lib.join("a/one.png"), lib.join("a/uno.png")).unwrap(); // rename
    fs::rename(lib.join("a/two.png"), lib.join("b/two.png")).unwrap(); // move across folders
    fs::rename(lib.join("c"), lib.join("d")).unwrap(); // a folder with a subfolder
    let want: Vec<PathBuf> = ["a/uno.png", "b/two.png", "d/deep/four.png", "d/three.png"]
        .iter()
        .map(|p| lib.join(p))
        .collect();
    daemon.wait_for("the new paths", WAIT, || {
        let present: Vec<PathBuf> = env
            .photos()
            .into_iter()
            .filter(|(_, _, s)| s == "present")
            .map(|(p, _, _)| p)
            .collect();
        (present == want).then_some(())
    });
    std::thread::sleep(Duration::from_millis(3 * SETTLE_MS));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));

    assert_eq!(
        env.results(),
        results_before,
        "results untouched, not recomputed"
    );
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 4);
    assert_eq!(env.done(), 4);
    let hashes_after: HashSet<String> = env.photos().into_iter().map(|(_, h, _)| h).collect();
    assert_eq!(hashes_after, hashes_before);
    assert_eq!(env.photos().len(), 4, "rows renamed, not duplicated");
    assert_eq!(captioned_lines(&log).len(), 4, "{}", strip_ansi(&log));
    // Search follows the new path.
    let cat = Catalog::open_readonly(&env.db()).unwrap();
    let hits = cat.search(&SearchQuery::new("uno")).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, lib.join("a/uno.png"));
    assert!(cat.search(&SearchQuery::new("one")).unwrap().is_empty());
}

#[test]
fn deleted_photos_and_folders_are_gone_from_search() {
    let env = Env::new();
    let keep = env.put("alpha.png", &png(200));
    let zebra = env.put("x/zebra.png", &png(201));
    let zulu = env.put("x/y/zulu.png", &png(202));
    let mut daemon = env.spawn();
    daemon.wait_for("3 done jobs", WAIT, || (env.done() == 3).then_some(()));
    let search = |q: &str| {
        Catalog::open_readonly(&env.db())
            .unwrap()
            .search(&SearchQuery::new(q))
            .unwrap()
            .len()
    };
    assert_eq!(search("zebra"), 1);

    fs::remove_file(&zebra).unwrap();
    daemon.wait_for("zebra gone", WAIT, || {
        (env.state_of(&zebra).as_deref() == Some("gone")).then_some(())
    });
    assert_eq!(search("zebra"), 0);
    assert_eq!(search("zulu"), 1);

    fs::remove_dir_all(env.lib().join("x")).unwrap();
    daemon.wait_for("zulu gone with its folder", WAIT, || {
        (env.state_of(&zulu).as_deref() == Some("gone")).then_some(())
    });
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert_eq!(search("zulu"), 0);
    assert_eq!(search("alpha"), 1);
    assert_eq!(env.state_of(&keep).as_deref(), Some("present"));
    assert_eq!(captioned_lines(&log).len(), 3);
}

#[test]
fn kill_9_mid_run_then_run_once_finishes_everything_once() {
    let env = Env::new();
    let total = 120;
    let mut paths = Vec::new();
    for i in 0..total {
        paths.push(env.put(&format!("k/img_{i:03}.png"), &png(1000 + i)));
    }
    let mut daemon = env.spawn();
    daemon.wait_for("the first captions", WAIT, || {
        (env.done() >= 3).then_some(())
    });
    let first_log = daemon.kill9();
    let done_at_kill = env.done();
    assert!(
        done_at_kill < i64::from(total),
        "the daemon finished before the kill; nothing was interrupted"
    );

    // The lock died with the process; the restart resumes the running jobs.
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    let (captioned, failed, _) = run.summary();
    run.check(failed == 0, "nothing failed");
    run.check(
        captioned as i64 + done_at_kill == i64::from(total),
        format!("{done_at_kill} done before the kill + {captioned} now = {total}"),
    );
    assert_eq!(env.done(), i64::from(total));
    assert_eq!(env.count("SELECT count(*) FROM jobs"), i64::from(total));
    assert_eq!(
        env.count("SELECT count(*) FROM results"),
        2 * i64::from(total)
    );
    for p in &paths {
        let n = captioned_count(&first_log, p) + captioned_count(&run.stderr, p);
        assert!(n <= 1, "{} captioned {n} times", p.display());
    }
}

#[test]
fn sigterm_mid_run_hands_the_batch_back_and_exits_0() {
    let env = Env::new();
    let total = 80;
    for i in 0..total {
        env.put(&format!("s/img_{i:03}.png"), &png(1500 + i));
    }
    let mut daemon = env.spawn();
    daemon.wait_for("the first captions", WAIT, || {
        (env.done() >= 2).then_some(())
    });
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", strip_ansi(&log));
    let done = env.done();
    assert!(done < i64::from(total), "finished before the signal");
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE state = 'running'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE state = 'pending'"),
        i64::from(total) - done,
        "every unfinished job is pending again"
    );
    assert_eq!(captioned_lines(&log).len() as i64, done);
}

#[test]
fn broken_images_fail_with_their_names_and_the_rest_is_done() {
    let env = Env::new();
    env.put("good1.png", &png(300));
    env.put("good2.png", &png(301));
    // An image without extension is found by its content.
    env.put("noext_image", &png(302));
    let mut corrupt = png(303)[..40].to_vec();
    corrupt.extend(std::iter::repeat_n(0xA5u8, 300));
    env.put("corrupt.png", &corrupt);
    let full = png_sized(304, 80, 60);
    env.put("truncated.png", &full[..full.len() * 6 / 10]);
    env.put("empty.png", b"");
    env.put("bomb.png", &png_header_only(60_000, 60_000));
    // Not images: ignored.
    env.put("notes.txt", b"not a photo");
    env.put("data.bin2", b"neither is this");

    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (3, 4, 0), "3 captioned, 4 failed");
    let cat = Catalog::open_readonly(&env.db()).unwrap();
    let failed = cat.failed_jobs(10).unwrap();
    run.check(failed.len() == 4, "4 failed jobs");
    for name in ["corrupt.png", "truncated.png", "empty.png", "bomb.png"] {
        let job = failed
            .iter()
            .find(|j| j.path.as_ref().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("no failed job for {name}: {failed:?}"));
        let err = job.last_error.as_deref().unwrap_or("");
        run.check(
            err.contains(name),
            format!("error of {name} names it: {err:?}"),
        );
        run.check(
            strip_ansi(&run.stderr).lines().any(|l| l.contains(name)),
            format!("the log names {name}"),
        );
    }
    assert_eq!(env.photos().len(), 7, "text files are not photos");
    assert_eq!(env.done(), 3);
}

#[test]
fn a_removed_root_goes_offline_and_comes_back_without_recaptioning() {
    let env = Env::new();
    for i in 0..3 {
        env.put(&format!("r/img_{i}.png"), &png(400 + i));
    }
    let mut daemon = env.spawn();
    daemon.wait_for("3 done jobs", WAIT, || (env.done() == 3).then_some(()));
    let results = env.results();
    let scanned = env.count("SELECT last_scan_at FROM libraries");

    let away = env.root().join("lib-away");
    fs::rename(env.lib(), &away).unwrap();
    daemon.wait_for("the library offline", WAIT, || {
        (env.count("SELECT count(*) FROM libraries WHERE online = 0") == 1).then_some(())
    });
    assert_eq!(
        env.count("SELECT count(*) FROM photos WHERE state = 'gone'"),
        0,
        "nothing is marked gone while the root is away"
    );

    fs::rename(&away, env.lib()).unwrap();
    daemon.wait_for("the library online and rescanned", WAIT, || {
        (env.count("SELECT count(*) FROM libraries WHERE online = 1") == 1
            && env.count("SELECT last_scan_at FROM libraries") > scanned)
            .then_some(())
    });
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert_eq!(
        env.count("SELECT count(*) FROM photos WHERE state = 'present'"),
        3
    );
    assert_eq!(env.results(), results, "nothing re-captioned");
    assert_eq!(captioned_lines(&log).len(), 3, "{}", strip_ansi(&log));
}

#[test]
fn a_missing_root_at_start_is_offline_and_nothing_is_gone() {
    let env = Env::new();
    env.put("m/img.png", &png(450));
    env.run(&["run", "--once"]).expect_code(0);
    fs::rename(env.lib(), env.root().join("lib-away")).unwrap();
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (0, 0, 0), "nothing to do");
    assert_eq!(
        env.count("SELECT count(*) FROM libraries WHERE online = 0"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM photos WHERE state = 'present'"),
        1
    );
}

#[test]
fn a_read_only_library_works_and_is_never_written() {
    let env = Env::new();
    for i in 0..3 {
        env.put(&format!("ro/{i}/img.png"), &png(500 + i));
    }
    // chmod -R a-w. The tests may run as root, for whom that changes nothing, so the real check
    // is that the tree (names, sizes, mtimes, modes) is exactly as it was.
    use std::os::unix::fs::PermissionsExt;
    let modes: Vec<(PathBuf, u32)> = tree_snapshot(&env.lib())
        .into_iter()
        .map(|(p, _, _, mode)| (p, mode))
        .collect();
    for (path, mode) in &modes {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o222)).unwrap();
    }
    let before = tree_snapshot(&env.lib());
    let run = env.run(&["run", "--once"]);
    let after = tree_snapshot(&env.lib());
    for (path, mode) in modes.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
    }
    run.expect_code(0);
    run.check(run.summary() == (3, 0, 0), "3 captioned");
    assert_eq!(before, after, "the library was written to");
}

#[test]
fn run_once_twice_captions_nothing_the_second_time() {
    let env = Env::new();
    for i in 0..5 {
        env.put(&format!("t/img_{i}.png"), &png(600 + i));
    }
    let first = env.run(&["run", "--once"]);
    first.expect_code(0);
    first.check(first.summary() == (5, 0, 0), "5 captioned");
    let results = env.results();
    let second = env.run(&["run", "--once"]);
    second.expect_code(0);
    second.check(
        second.summary() == (0, 0, 5),
        "nothing captioned, 5 skipped",
    );
    second.check(
        captioned_lines(&second.stderr).is_empty(),
        "no captioned lines",
    );
    assert_eq!(env.results(), results);
}

#[test]
fn sidecars_are_written_next_to_photos_when_enabled() {
    let env = Env::new();
    env.write_config_with(&["<CAPTION>", "<OD>"], &tiny_model(), "sidecars = true");
    let a = env.put("sc/a.png", &png(760));
    let b = env.put("sc/b/b.png", &png(761));
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (2, 0, 0), "2 captioned");
    for photo in [a, b] {
        let xmp = photo.with_file_name(format!(
            "{}.xmp",
            photo.file_name().unwrap().to_string_lossy()
        ));
        let text = fs::read_to_string(&xmp)
            .unwrap_or_else(|e| panic!("no sidecar {}: {e}\n{run}", xmp.display()));
        assert!(text.contains("x:xmpmeta"), "{text}");
    }
}

#[test]
fn reprocess_queues_again_after_the_task_list_changes() {
    let env = Env::new();
    env.write_config(&["<CAPTION>"], &tiny_model());
    env.put("p/a.png", &png(700));
    env.put("p/b.png", &png(701));
    env.run(&["run", "--once"]).expect_code(0);
    assert_eq!(env.count("SELECT count(*) FROM results"), 2);

    env.write_config(&["<CAPTION>", "<OD>"], &tiny_model());
    let rep = env.run(&["reprocess"]);
    rep.expect_code(0);
    rep.check(rep.stdout.starts_with("queued 2 "), "2 queued");
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary().0 == 2, "both captioned for the new profile");
    assert_eq!(
        env.count("SELECT count(*) FROM results WHERE task = '<OD>'"),
        2
    );
}

#[test]
fn captiond_rescan_reaches_the_running_daemon() {
    let env = Env::new();
    // Polled every 30 s: a new file stays unseen for the length of this test...
    env.write_config_with(&["<CAPTION>"], &tiny_model(), "poll = true");
    env.put("q/first.png", &png(750));
    let mut daemon = env.spawn();
    daemon.wait_for("the first photo", WAIT, || (env.done() == 1).then_some(()));
    let second = env.put("q/sub/second.png", &png(751));
    fs::remove_file(env.lib().join("q/first.png")).unwrap();
    // ... unless a rescan is asked for.
    let rescan = env.run(&["rescan", env.lib().join("q").to_str().unwrap()]);
    rescan.expect_code(0);
    daemon.wait_for("the rescan's photo", WAIT, || {
        (env.done() == 2).then_some(())
    });
    daemon.wait_for("the deleted photo gone", WAIT, || {
        (env.state_of(&env.lib().join("q/first.png")).as_deref() == Some("gone")).then_some(())
    });
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert_eq!(env.state_of(&second).as_deref(), Some("present"));
    assert_eq!(captioned_lines(&log).len(), 2, "{}", strip_ansi(&log));
}

#[test]
fn a_model_that_cannot_load_stops_the_run_with_exit_1() {
    let env = Env::new();
    let missing = env.root().join("no-such-model");
    env.write_config(&["<CAPTION>"], &missing);
    env.put("img.png", &png(800));
    let run = env.run(&["run", "--once"]);
    run.expect_code(1);
    run.check(
        run.stderr.contains("cannot load the model") && run.stderr.contains("no-such-model"),
        "a clear message naming the model",
    );
    // The job is handed back, not burnt.
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE state = 'pending'"),
        1
    );
}

#[test]
fn an_unreadable_catalog_stops_the_run_and_is_left_untouched() {
    let env = Env::new();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 31 + 7) as u8).collect();
    fs::write(env.db(), &garbage).unwrap();
    env.put("img.png", &png(900));
    let run = env.run(&["run", "--once"]);
    run.expect_code(1);
    run.check(
        run.stderr.contains("catalog.db"),
        "the error names the catalog",
    );
    assert_eq!(fs::read(env.db()).unwrap(), garbage);
}

/// Discovery figures on a generated tree (not a test; run with
/// `cargo test --release --test daemon discovery_speed -- --ignored --nocapture`).
#[test]
#[ignore]
fn discovery_speed() {
    use captiond::catalog::Priority;
    use captiond::config::Settings;
    use captiond::daemon::{Discovery, Shared};
    let n: usize = std::env::var("CAPTIOND_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let env = Env::new();
    let t = Instant::now();
    for i in 0..n {
        let dir = env.lib().join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        fs::write(dir.join(format!("{i:06}.jpg")), (i as u64).to_le_bytes()).unwrap();
    }
    // Old enough to be read at once instead of settling.
    std::thread::sleep(Duration::from_millis(SETTLE_MS + 50));
    println!("generated {n} files in {:?}", t.elapsed());
    let settings =
        Settings::from_toml(&fs::read_to_string(env.config()).unwrap(), &env.config()).unwrap();
    let catalog = Catalog::open(&env.db()).unwrap();
    let mut discovery = Discovery::new(
        catalog,
        &settings,
        "bench".into(),
        std::sync::Arc::new(Shared::default()),
    )
    .unwrap();
    let t = Instant::now();
    let first = discovery.reconcile(0, Priority::Backfill).unwrap();
    let initial = t.elapsed();
    assert_eq!(first.recorded, n);
    println!(
        "initial catalog: {n} files in {initial:?} ({:.0} files/s), {} queued",
        n as f64 / initial.as_secs_f64(),
        first.queued
    );
    let t = Instant::now();
    let again = discovery.reconcile(0, Priority::Backfill).unwrap();
    println!(
        "no-op rescan: {} unchanged in {:?}",
        again.unchanged,
        t.elapsed()
    );
    assert_eq!(again.unchanged, n);
}
