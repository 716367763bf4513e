//! Integration tests of `captiond run` and `captiond run --once`: the real binary as a child process
//! on real files in temp dirs, with the tiny fixture model; every wait is bounded and polls the
//! catalog. `discovery_speed` (ignored) measures discovery on 100k files in-process.

mod queue_recovery;
mod raw;
mod sidecar_moves;
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
        // Refused on its header, a bomb fails the same way every time: one attempt only.
        let attempts = if name == "bomb.png" { 1 } else { 3 };
        run.check(
            job.attempts == attempts,
            format!(
                "{name} failed after {} attempts, not {attempts}",
                job.attempts
            ),
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
    let jpeg = fixture_image("photo_120x90.jpg");
    let c = env.put("sc/c.jpg", &jpeg);
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (3, 0, 0), "3 captioned");
    // `embed` is off by default: the originals are byte-identical.
    assert_eq!(fs::read(&a).unwrap(), png(760));
    assert_eq!(fs::read(&b).unwrap(), png(761));
    assert_eq!(fs::read(&c).unwrap(), jpeg);
    assert_eq!(env.count("SELECT count(*) FROM content_aliases"), 0);
    for photo in [a, b, c] {
        let xmp = photo.with_file_name(format!(
            "{}.xmp",
            photo.file_name().unwrap().to_string_lossy()
        ));
        let text = fs::read_to_string(&xmp)
            .unwrap_or_else(|e| panic!("no sidecar {}: {e}\n{run}", xmp.display()));
        assert!(text.contains("x:xmpmeta"), "{text}");
    }
}

/// Every file under `root` with its bytes, sorted.
fn contents_under(root: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

/// `IMG_1.JPG` → `IMG_1.JPG.xmp`.
fn sidecar_of(photo: &std::path::Path) -> PathBuf {
    photo.with_file_name(format!(
        "{}.xmp",
        photo.file_name().unwrap().to_string_lossy()
    ))
}

/// Checks the alias invariant: every alias names a content, never another alias.
#[track_caller]
fn assert_aliases_point_at_contents(env: &Env) {
    assert_eq!(
        env.count(
            "SELECT count(*) FROM content_aliases WHERE hash NOT IN (SELECT hash FROM contents)"
        ),
        0,
        "an alias names no content"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM content_aliases a JOIN content_aliases b ON a.hash = b.file_hash"
        ),
        0,
        "an alias names another alias"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM content_aliases WHERE file_hash IN (SELECT hash FROM contents)"
        ),
        0,
        "an alias is also a content"
    );
}

/// The fixture images whose tiny-model results (`<CAPTION>`, `<OD>`) are not empty, so there is
/// XMP to embed: a JPEG with a region, an RGBA PNG with a caption and a region, a grey PNG with a
/// region. `rgb_97x61.png` gets nothing worth writing.
const WITH_RESULTS: [&str; 3] = ["photo_120x90.jpg", "rgba_64x48.png", "gray_70x50.png"];

#[test]
fn embedded_xmp_goes_into_jpeg_and_png_and_never_causes_captioning_again() {
    let env = Env::new();
    env.write_config_with(
        &["<CAPTION>", "<OD>"],
        &tiny_model(),
        "sidecars = true\nembed = true",
    );
    let originals: Vec<Vec<u8>> = WITH_RESULTS.iter().map(|n| fixture_image(n)).collect();
    let jpg = env.put("e/photo.jpg", &originals[0]);
    let rgba = env.put("e/rgba.png", &originals[1]);
    let gray = env.put("e/sub/gray.png", &originals[2]);
    let photos: Vec<(PathBuf, Vec<u8>)> = [jpg.clone(), rgba.clone(), gray.clone()]
        .into_iter()
        .zip(originals.iter().cloned())
        .collect();
    // Nothing to write for this one: it stays as it is.
    let plain_bytes = fixture_image("rgb_97x61.png");
    let plain = env.put("e/plain.png", &plain_bytes);
    // A RAW file (by name; JPEG bytes inside) is neither captioned nor written.
    let raw = env.put("e/IMG_2.DNG", &originals[0]);

    let first = env.run(&["run", "--once"]);
    first.expect_code(0);
    first.check(first.summary() == (4, 0, 0), "4 captioned");
    let cat = Catalog::open_readonly(&env.db()).unwrap();
    for (path, original) in &photos {
        first.check(
            captioned_count(&first.stderr, path) == 1,
            format!("{} captioned once", path.display()),
        );
        let now = fs::read(path).unwrap();
        first.check(
            now != *original,
            format!("nothing embedded into {}", path.display()),
        );
        let packet = captiond::sidecar::embed::read_embedded(path, &now).unwrap();
        first.check(
            packet.is_some(),
            format!("no XMP packet in {}", path.display()),
        );
        first.check(sidecar_of(path).exists(), "the sidecar is written too");
        // Still the original content, with the embedded file's size and mtime on record.
        let row = cat.photo_by_path(path).unwrap().unwrap();
        assert_eq!(row.hash, blake3_hex(original), "{}", path.display());
        let md = fs::metadata(path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (row.size, row.mtime_ns),
            (md.len(), md.mtime() * 1_000_000_000 + md.mtime_nsec()),
            "{}",
            path.display()
        );
    }
    drop(cat);
    assert_eq!(fs::read(&plain).unwrap(), plain_bytes);
    assert_eq!(
        fs::read(&raw).unwrap(),
        originals[0],
        "a RAW file was written"
    );
    assert!(!sidecar_of(&raw).exists());
    assert_eq!(env.count("SELECT count(*) FROM contents"), 4);
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 4);
    assert_eq!(env.count("SELECT count(*) FROM content_aliases"), 3);
    assert_aliases_point_at_contents(&env);
    let exiftool = have_exiftool();
    if exiftool {
        for (path, _) in &photos {
            for tag in [
                "-XMP-dc:Description",
                "-XMP-photoshop:CaptionWriter",
                "-XMP-iptcExt:ImageRegionName",
            ] {
                assert_eq!(
                    exiftool_tag(path, tag),
                    exiftool_tag(&sidecar_of(path), tag),
                    "{tag} of {}",
                    path.display()
                );
            }
            assert!(!exiftool_tag(path, "-XMP-iptcExt:ImageRegionName").is_empty());
        }
        assert_eq!(exiftool_tag(&rgba, "-XMP-dc:Description"), "mm");
    }

    // A second run: nothing captioned, nothing written.
    let files = contents_under(&env.lib());
    let stamps = tree_snapshot(&env.lib());
    let second = env.run(&["run", "--once"]);
    second.expect_code(0);
    second.check(
        second.summary() == (0, 0, 4),
        "nothing captioned, 4 skipped",
    );
    second.check(
        captioned_lines(&second.stderr).is_empty(),
        "no captioned lines",
    );
    assert_eq!(contents_under(&env.lib()), files, "files changed");
    assert_eq!(tree_snapshot(&env.lib()), stamps, "files touched");

    // Moved to another folder, and copied (new mtime, same bytes): the same content.
    let moved = env.lib().join("moved/photo.jpg");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&jpg, &moved).unwrap();
    let copy = env.lib().join("copies/rgba.png");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    fs::copy(&rgba, &copy).unwrap();
    let third = env.run(&["run", "--once"]);
    third.expect_code(0);
    third.check(third.summary().0 == 0, "nothing captioned");
    third.check(third.summary().1 == 0, "nothing failed");
    third.check(
        captioned_lines(&third.stderr).is_empty(),
        "no captioned lines",
    );
    let rows = env.photos();
    let row_of = |p: &PathBuf| {
        rows.iter()
            .find(|(q, _, _)| q == p)
            .map(|(_, h, s)| (h.clone(), s.clone()))
    };
    assert_eq!(
        row_of(&moved),
        Some((blake3_hex(&originals[0]), "present".into()))
    );
    assert_eq!(
        row_of(&jpg),
        Some((blake3_hex(&originals[0]), "gone".into()))
    );
    assert_eq!(
        row_of(&copy),
        Some((blake3_hex(&originals[1]), "present".into()))
    );
    assert_eq!(env.count("SELECT count(*) FROM contents"), 4);
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 4);

    // `sidecars rewrite` after a setting changes: the embedded XMP is rewritten (embedded bytes
    // replaced by new ones: new aliases of the same contents) and still nothing is captioned.
    let mut config = fs::read_to_string(env.config()).unwrap();
    config.push_str("\n[sidecar]\nmwg_regions = true\n");
    fs::write(env.config(), config).unwrap();
    let aliases = env.count("SELECT count(*) FROM content_aliases");
    let rewrite = env.run(&["sidecars", "rewrite"]);
    rewrite.expect_code(0);
    rewrite.check(
        rewrite
            .stdout
            .contains("embedded XMP: 4 written, 1 unchanged"),
        "4 embedded (the moved JPEG, both PNG copies, the grey PNG), the plain PNG unchanged",
    );
    assert!(env.count("SELECT count(*) FROM content_aliases") > aliases);
    assert_aliases_point_at_contents(&env);
    if exiftool {
        assert!(!exiftool_tag(&moved, "-XMP-mwg-rs:RegionName").is_empty());
    }
    let fourth = env.run(&["run", "--once"]);
    fourth.expect_code(0);
    fourth.check(fourth.summary() == (0, 0, 5), "nothing captioned");

    // Captioning again for a new task list reads the embedded files (their bytes are an alias of
    // the job's content) instead of failing to find a copy.
    env.write_config_with(&["<OD>"], &tiny_model(), "sidecars = true\nembed = true");
    env.run(&["reprocess"]).expect_code(0);
    let fifth = env.run(&["run", "--once"]);
    fifth.expect_code(0);
    fifth.check(
        fifth.summary().0 == 4 && fifth.summary().1 == 0,
        "the 4 contents captioned again, none failed",
    );
    assert_aliases_point_at_contents(&env);
    let sixth = env.run(&["run", "--once"]);
    sixth.expect_code(0);
    sixth.check(sixth.summary() == (0, 0, 5), "nothing captioned");

    // Someone else edits an embedded file: bytes we do not know, a new content captioned.
    if exiftool {
        let out = std::process::Command::new("exiftool")
            .args(["-q", "-overwrite_original", "-XMP-dc:Title=Mine"])
            .arg(&gray)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    } else {
        let mut edited = fs::read(&gray).unwrap();
        edited.truncate(edited.len() - 12); // drop IEND: still decodes
        fs::write(&gray, edited).unwrap();
    }
    let seventh = env.run(&["run", "--once"]);
    seventh.expect_code(0);
    seventh.check(
        seventh.summary().0 == 1 && captioned_count(&seventh.stderr, &gray) == 1,
        "the edited file, and only it, is captioned",
    );
    assert_eq!(env.count("SELECT count(*) FROM contents"), 5);
}

#[test]
fn embedding_under_a_running_daemon_does_not_caption_again() {
    let env = Env::new();
    // Embedded only: no sidecar files.
    env.write_config_with(
        &["<CAPTION>", "<OD>"],
        &tiny_model(),
        "sidecars = false\nembed = true",
    );
    let jpg_bytes = fixture_image("photo_120x90.jpg");
    let jpg = env.put("w/photo.jpg", &jpg_bytes);
    let mut daemon = env.spawn();
    daemon.wait_ready(&env);
    // One more arrives while it runs.
    let late_bytes = fixture_image("rgba_64x48.png");
    let late = env.lib().join("w/new/late.png");
    fs::create_dir_all(late.parent().unwrap()).unwrap();
    fs::write(&late, &late_bytes).unwrap();
    daemon.wait_for("2 done jobs", WAIT, || (env.done() == 2).then_some(()));
    for (path, original) in [(&jpg, &jpg_bytes), (&late, &late_bytes)] {
        daemon.wait_for("the XMP embedded", WAIT, || {
            let now = fs::read(path).ok()?;
            let packet = captiond::sidecar::embed::read_embedded(path, &now).ok()?;
            (packet.is_some() && now != *original).then_some(())
        });
    }
    // The watcher saw the embedding's rename: give it time to settle and be looked at.
    std::thread::sleep(Duration::from_millis(4 * SETTLE_MS));
    // A move while running.
    let moved = env.lib().join("w/elsewhere/photo.jpg");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&jpg, &moved).unwrap();
    daemon.wait_for("the moved photo", WAIT, || {
        (env.state_of(&moved).as_deref() == Some("present")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(4 * SETTLE_MS));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert_eq!(captioned_lines(&log).len(), 2, "{}", strip_ansi(&log));
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 2);
    assert_eq!(env.count("SELECT count(*) FROM contents"), 2);
    assert_eq!(env.count("SELECT count(*) FROM content_aliases"), 2);
    assert_aliases_point_at_contents(&env);
    let xmp_files: Vec<PathBuf> = contents_under(&env.lib())
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.extension().is_some_and(|e| e == "xmp"))
        .collect();
    assert!(xmp_files.is_empty(), "sidecars = false wrote {xmp_files:?}");
    if have_exiftool() {
        assert_eq!(exiftool_tag(&late, "-XMP-dc:Description"), "mm");
    }
    // And a restart rescans without captioning.
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (0, 0, 2), "nothing captioned");
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
