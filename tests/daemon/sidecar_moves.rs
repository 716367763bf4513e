//! A captioned photo moved, renamed or copied inside a library with sidecars: the sidecar comes
//! along (moved when the photo moved, with a person's own keywords in it; written fresh for a
//! copy), under the running daemon (inotify renames) and under `run --once` (the walk finds the
//! known content at a new path), with `ext` and `stem` naming. Nothing is captioned again.
//! Sidecars are read back with exiftool when it is installed, and with captiond's own XMP parser
//! always.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use captiond::sidecar::xmp::{ArrayKind, Node, Value, NS_DC};
use captiond::sidecar::Packet;

use super::support::*;

const WAIT: Duration = Duration::from_secs(30);

/// The fixture whose tiny-model caption is `mm` (plus a region).
const CAPTIONED: &str = "rgba_64x48.png";
/// A fixture with a region but no caption.
const REGIONS_ONLY: &str = "gray_70x50.png";
/// Our `dc:description` of [`CAPTIONED`].
const CAPTION: &str = "mm";
/// The keyword a person adds to a sidecar by hand.
const MINE: &str = "holiday";

/// `IMG_1.png` → `IMG_1.png.xmp`.
fn ext_sidecar(photo: &Path) -> PathBuf {
    photo.with_file_name(format!(
        "{}.xmp",
        photo.file_name().unwrap().to_string_lossy()
    ))
}

/// `IMG_1.png` → `IMG_1.xmp`.
fn stem_sidecar(photo: &Path) -> PathBuf {
    photo.with_extension("xmp")
}

fn packet(xmp: &Path) -> Option<Packet> {
    Packet::parse(&fs::read(xmp).ok()?).ok()
}

/// `dc:subject` as captiond's parser reads it.
fn subjects(xmp: &Path) -> Vec<String> {
    let Some(p) = packet(xmp) else {
        return Vec::new();
    };
    match p.get(NS_DC, "subject").map(|n| &n.value) {
        Some(Value::Array(_, items)) => items
            .iter()
            .filter_map(|n| n.as_text().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The x-default `dc:description` as captiond's parser reads it ("" when absent).
fn description(xmp: &Path) -> String {
    let Some(p) = packet(xmp) else {
        return String::new();
    };
    match p.get(NS_DC, "description").map(|n| &n.value) {
        Some(Value::Array(_, items)) => items
            .iter()
            .find(|n| n.lang.as_deref() == Some("x-default"))
            .and_then(Node::as_text)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// Whether the sidecar holds our region (IPTC `ImageRegion`), as exiftool reads it when installed.
fn has_region(xmp: &Path) -> bool {
    let ours = fs::read_to_string(xmp).is_ok_and(|t| t.contains("Iptc4xmpExt:ImageRegion"));
    if have_exiftool() {
        assert_eq!(
            !exiftool_tag(xmp, "-XMP-iptcExt:ImageRegionName").is_empty(),
            ours,
            "{}",
            xmp.display()
        );
    }
    ours
}

/// A person adds `keyword` to the sidecar's `dc:subject` (with exiftool when installed).
fn add_keyword(xmp: &Path, keyword: &str) {
    if have_exiftool() {
        let out = std::process::Command::new("exiftool")
            .args(["-q", "-overwrite_original"])
            .arg(format!("-XMP-dc:Subject+={keyword}"))
            .arg(xmp)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    } else {
        let mut p = packet(xmp).expect("a sidecar to edit");
        match p.get_mut(NS_DC, "subject").map(|n| &mut n.value) {
            Some(Value::Array(_, items)) => items.push(Node::text(keyword)),
            _ => p.set(
                NS_DC,
                "subject",
                Node::array(ArrayKind::Bag, vec![Node::text(keyword)]),
            ),
        }
        fs::write(xmp, p.serialize(0)).unwrap();
    }
    assert!(subjects(xmp).iter().any(|k| k == keyword));
}

/// Checks a sidecar as readers see it: our caption, and whether `keyword` is among its subjects.
#[track_caller]
fn assert_read_back(xmp: &Path, caption: Option<&str>, keyword: &str, has_keyword: bool) {
    if let Some(caption) = caption {
        assert_eq!(description(xmp), caption, "{}", xmp.display());
    }
    assert_eq!(
        subjects(xmp).iter().any(|k| k == keyword),
        has_keyword,
        "{keyword} in {}: {:?}",
        xmp.display(),
        subjects(xmp)
    );
    if have_exiftool() {
        if let Some(caption) = caption {
            assert_eq!(exiftool_tag(xmp, "-XMP-dc:Description"), caption);
        }
        let listed = exiftool_tag(xmp, "-XMP-dc:Subject");
        assert_eq!(
            listed.split(", ").any(|k| k == keyword),
            has_keyword,
            "exiftool reads dc:subject of {} as {listed:?}",
            xmp.display()
        );
    }
}

/// Waits until `old` is gone and `new` holds our caption and `keyword`.
#[track_caller]
fn wait_moved(daemon: &mut Daemon, old: &Path, new: &Path, keyword: &str) {
    daemon.wait_for(
        &format!("{} moved to {}", old.display(), new.display()),
        WAIT,
        || {
            (!old.exists()
                && description(new) == CAPTION
                && subjects(new).iter().any(|k| k == keyword))
            .then_some(())
        },
    );
}

#[test]
fn a_photo_moved_under_the_daemon_takes_its_sidecar_along() {
    let env = Env::new();
    env.write_config_with(&["<CAPTION>", "<OD>"], &tiny_model(), "sidecars = true");
    let photo = env.put("a/IMG_1.png", &fixture_image(CAPTIONED));
    // Watched from the start, so the move is one inotify rename pair.
    fs::create_dir_all(env.lib().join("a/sub")).unwrap();
    let mut daemon = env.spawn();
    daemon.wait_for("1 done job", WAIT, || (env.done() == 1).then_some(()));
    let old_xmp = ext_sidecar(&photo);
    daemon.wait_for("the sidecar", WAIT, || {
        (description(&old_xmp) == CAPTION).then_some(())
    });
    assert!(has_region(&old_xmp));
    add_keyword(&old_xmp, MINE);

    // Into a subfolder.
    let moved = env.lib().join("a/sub/IMG_1.png");
    fs::rename(&photo, &moved).unwrap();
    let moved_xmp = ext_sidecar(&moved);
    wait_moved(&mut daemon, &old_xmp, &moved_xmp, MINE);

    // Into a folder made a moment before (inotify may report a removal and a new file).
    let again = env.lib().join("b/new/IMG_1.png");
    fs::create_dir_all(again.parent().unwrap()).unwrap();
    fs::rename(&moved, &again).unwrap();
    let again_xmp = ext_sidecar(&again);
    wait_moved(&mut daemon, &moved_xmp, &again_xmp, MINE);

    // Renamed in place.
    let renamed = env.lib().join("b/new/Beach.png");
    fs::rename(&again, &renamed).unwrap();
    let renamed_xmp = ext_sidecar(&renamed);
    wait_moved(&mut daemon, &again_xmp, &renamed_xmp, MINE);

    std::thread::sleep(Duration::from_millis(3 * SETTLE_MS));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", strip_ansi(&log));
    assert_eq!(captioned_lines(&log).len(), 1, "{}", strip_ansi(&log));
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 1);
    assert!(strip_ansi(&log).contains("sidecar moved with its photo"));
    assert_read_back(&renamed_xmp, Some(CAPTION), MINE, true);
    assert!(has_region(&renamed_xmp));
    let xmps: Vec<PathBuf> = walkdir::WalkDir::new(env.lib())
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.path().extension().is_some_and(|x| x == "xmp"))
        .map(|e| e.path().to_path_buf())
        .collect();
    assert_eq!(xmps, vec![renamed_xmp], "one sidecar, at the photo");
}

#[test]
fn run_once_after_a_move_takes_the_sidecar_along() {
    let env = Env::new();
    env.write_config_with(&["<CAPTION>", "<OD>"], &tiny_model(), "sidecars = true");
    let photo = env.put("IMG_1.png", &fixture_image(CAPTIONED));
    let stays = env.put("IMG_2.png", &fixture_image(REGIONS_ONLY));
    let first = env.run(&["run", "--once"]);
    first.expect_code(0);
    first.check(first.summary() == (2, 0, 0), "2 captioned");
    let old_xmp = ext_sidecar(&photo);
    assert_eq!(description(&old_xmp), CAPTION);
    add_keyword(&old_xmp, MINE);
    let untouched = tree_snapshot(&ext_sidecar(&stays));

    let moved = env.lib().join("2024/summer/IMG_1.png");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&photo, &moved).unwrap();
    let second = env.run(&["run", "--once"]);
    second.expect_code(0);
    second.check(second.summary() == (0, 0, 2), "nothing captioned");
    second.check(
        captioned_lines(&second.stderr).is_empty(),
        "no captioned lines",
    );
    second.check(!old_xmp.exists(), "the old sidecar moved away");
    assert_read_back(&ext_sidecar(&moved), Some(CAPTION), MINE, true);
    assert_eq!(tree_snapshot(&ext_sidecar(&stays)), untouched);
    assert_eq!(env.state_of(&photo).as_deref(), Some("gone"));
    assert_eq!(env.state_of(&moved).as_deref(), Some("present"));

    // A third run has nothing to do: nothing is written.
    let stamps = tree_snapshot(&env.lib());
    let third = env.run(&["run", "--once"]);
    third.expect_code(0);
    third.check(third.summary() == (0, 0, 2), "nothing captioned");
    assert_eq!(tree_snapshot(&env.lib()), stamps, "files touched");
}

#[test]
fn a_copy_gets_its_own_sidecar_and_the_original_keeps_its_one() {
    let env = Env::new();
    env.write_config_with(&["<CAPTION>", "<OD>"], &tiny_model(), "sidecars = true");
    let photo = env.put("IMG_1.png", &fixture_image(CAPTIONED));
    env.run(&["run", "--once"]).expect_code(0);
    let xmp = ext_sidecar(&photo);
    add_keyword(&xmp, MINE);
    let original = tree_snapshot(&xmp);

    // Under `run --once`.
    let copy = env.lib().join("copies/IMG_1.png");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    fs::copy(&photo, &copy).unwrap();
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary() == (0, 0, 2), "nothing captioned");
    assert_read_back(&ext_sidecar(&copy), Some(CAPTION), MINE, false);
    assert_eq!(
        tree_snapshot(&xmp),
        original,
        "the original's sidecar untouched"
    );

    // Under the daemon.
    let mut daemon = env.spawn();
    daemon.wait_ready(&env);
    let copy2 = env.lib().join("copies/more/IMG_1 copy.png");
    fs::create_dir_all(copy2.parent().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    fs::copy(&photo, &copy2).unwrap();
    daemon.wait_for("the second copy's sidecar", WAIT, || {
        (description(&ext_sidecar(&copy2)) == CAPTION).then_some(())
    });
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(captioned_lines(&log).is_empty(), "{}", strip_ansi(&log));
    assert_read_back(&ext_sidecar(&copy2), Some(CAPTION), MINE, false);
    assert_eq!(
        tree_snapshot(&xmp),
        original,
        "the original's sidecar untouched"
    );
    assert_read_back(&xmp, Some(CAPTION), MINE, true);
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 1);
}

#[test]
fn stem_named_sidecars_move_unless_a_raw_keeps_the_shared_one() {
    let env = Env::new();
    env.write_config_with(
        &["<CAPTION>", "<OD>"],
        &tiny_model(),
        "sidecars = true\nnaming = \"stem\"",
    );
    // A lone photo, and a RAW+PNG pair (the PNG is captioned and writes their `IMG_2.xmp`).
    let lone = env.put("IMG_1.png", &fixture_image(CAPTIONED));
    let pair = env.put("IMG_2.png", &fixture_image(REGIONS_ONLY));
    let raw = env.put("IMG_2.CR2", b"not really a raw file");
    fs::create_dir_all(env.lib().join("sub")).unwrap();
    let first = env.run(&["run", "--once"]);
    first.expect_code(0);
    first.check(first.summary() == (2, 0, 0), "2 captioned");
    let (lone_xmp, pair_xmp) = (stem_sidecar(&lone), stem_sidecar(&pair));
    assert_eq!(description(&lone_xmp), CAPTION);
    assert!(pair_xmp.exists());
    assert!(!ext_sidecar(&lone).exists(), "stem naming only");
    add_keyword(&lone_xmp, MINE);
    add_keyword(&pair_xmp, MINE);
    let pair_before = tree_snapshot(&pair_xmp);

    let mut daemon = env.spawn();
    daemon.wait_ready(&env);
    let lone_moved = env.lib().join("sub/IMG_1.png");
    let pair_moved = env.lib().join("sub/IMG_2.png");
    fs::rename(&lone, &lone_moved).unwrap();
    fs::rename(&pair, &pair_moved).unwrap();
    wait_moved(&mut daemon, &lone_xmp, &stem_sidecar(&lone_moved), MINE);
    daemon.wait_for("the moved PNG's new sidecar", WAIT, || {
        stem_sidecar(&pair_moved).exists().then_some(())
    });
    std::thread::sleep(Duration::from_millis(3 * SETTLE_MS));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(captioned_lines(&log).is_empty(), "{}", strip_ansi(&log));

    assert_read_back(&stem_sidecar(&lone_moved), Some(CAPTION), MINE, true);
    assert!(!ext_sidecar(&lone_moved).exists());
    // The RAW left behind keeps the pair's sidecar as it was; the PNG gets a new one.
    assert!(raw.exists());
    assert_eq!(
        tree_snapshot(&pair_xmp),
        pair_before,
        "the RAW's sidecar touched"
    );
    assert_read_back(&pair_xmp, None, MINE, true);
    assert_read_back(&stem_sidecar(&pair_moved), None, MINE, false);
    assert!(has_region(&stem_sidecar(&pair_moved)));
}
