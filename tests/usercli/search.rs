//! `captiond search`: rankings (stemmed, phrase, prefix), filters (label, date, folder, camera),
//! the `--json` contract, plain and coloured output, and the error paths.

use super::support::{corpus_captions, keys, TestEnv};

#[test]
fn stemmed_query_finds_singular_and_ranks_caption_over_path() {
    let env = TestEnv::new();
    env.corpus();
    // IMG_0001 says "dog", IMG_0005 "dogs" (both also labelled dog); IMG_0004 only has "dog" in
    // its folder name, the weakest column.
    let run = env.run(&["search", "dogs"]);
    run.expect_code(0);
    let paths = run.paths();
    run.check(paths.len() == 3, "three hits");
    let mut top: Vec<&str> = paths[..2].iter().map(String::as_str).collect();
    top.sort();
    let mut want = vec![
        env.shown("2021/park/IMG_0005.JPG"),
        env.shown("2023/beach/IMG_0001.JPG"),
    ];
    want.sort();
    run.check(top == want, "caption matches first");
    run.check(
        paths[2] == env.shown("dog-walks/IMG_0004.JPG"),
        "the folder-name match last",
    );
    // Stemming both ways: "dog" finds "dogs", "sleep" finds "sleeping", "run" finds "running".
    let run = env.run(&["search", "dog"]);
    run.check(run.paths().len() == 3, "dog finds dogs");
    let run = env.run(&["search", "sleep"]);
    run.check(
        run.paths() == vec![env.shown("2022/home/IMG_0003.JPG")],
        "sleep finds sleeping",
    );
    let run = env.run(&["search", "runs"]);
    run.check(
        run.paths() == vec![env.shown("2023/beach/IMG_0001.JPG")],
        "runs finds running",
    );
}

#[test]
fn phrase_prefix_and_multiword() {
    let env = TestEnv::new();
    env.corpus();
    // "red car" as a phrase: only IMG_0002 (IMG_0003 has "toy car … red carpet").
    let run = env.run(&["search", "\"red car\""]);
    run.expect_code(0);
    run.check(
        run.paths() == vec![env.shown("2023/city/IMG_0002.JPG")],
        "phrase",
    );
    // The same words unquoted match both, the phrase one first (shorter caption, both words).
    let run = env.run(&["search", "red", "car"]);
    run.check(
        run.paths()
            == vec![
                env.shown("2023/city/IMG_0002.JPG"),
                env.shown("2022/home/IMG_0003.JPG"),
            ],
        "two words, all must match",
    );
    let run = env.run(&["search", "\"car red\""]);
    run.expect_code(0);
    run.check(run.stdout.is_empty(), "reversed phrase matches nothing");
    let run = env.run(&["search", "lighth*"]);
    run.check(
        run.paths() == vec![env.shown("2023/beach/IMG_0006.JPG")],
        "prefix",
    );
    let run = env.run(&["search", "bicyc*"]);
    run.check(
        run.paths() == vec![env.shown("dog-walks/IMG_0004.JPG")],
        "prefix",
    );
    // Exclusion after `--`.
    let run = env.run(&["search", "--", "car", "-carpet"]);
    run.check(
        run.paths() == vec![env.shown("2023/city/IMG_0002.JPG")],
        "exclusion",
    );
}

#[test]
fn label_date_folder_and_camera_filters() {
    let env = TestEnv::new();
    env.corpus();
    let s = |args: &[&str]| {
        let mut all = vec!["search"];
        all.extend_from_slice(args);
        let run = env.run(&all);
        run.expect_code(0);
        run
    };
    let run = s(&["--label", "Cats"]);
    run.check(
        run.paths() == vec![env.shown("2022/home/IMG_0003.JPG")],
        "label, normalised",
    );
    let run = s(&["red", "--label", "car"]);
    run.check(
        run.paths()
            == vec![
                env.shown("2023/city/IMG_0002.JPG"),
                env.shown("2022/home/IMG_0003.JPG"),
            ],
        "text + label",
    );
    // Dates: a filter alone lists newest taken first.
    let run = s(&["--after", "2023", "--before", "2024"]);
    run.check(
        run.paths()
            == vec![
                env.shown("2023/beach/IMG_0006.JPG"),
                env.shown("2023/beach/IMG_0001.JPG"),
                env.shown("2023/city/IMG_0002.JPG"),
            ],
        "all of 2023, newest first",
    );
    let run = s(&["dog", "--before", "2023-01-01"]);
    run.check(
        run.paths() == vec![env.shown("2021/park/IMG_0005.JPG")],
        "before a date (undated photos excluded)",
    );
    let run = s(&["car", "--after", "2023-03-02 09:00:00"]);
    run.check(
        run.paths() == vec![env.shown("2023/city/IMG_0002.JPG")],
        "after is inclusive",
    );
    // Folders, relative to the current directory (the temp dir) or absolute.
    let run = s(&["--under", "photos/2023/beach"]);
    run.check(
        run.paths()
            == vec![
                env.shown("2023/beach/IMG_0006.JPG"),
                env.shown("2023/beach/IMG_0001.JPG"),
            ],
        "relative folder",
    );
    let abs = env.photo("2023").display().to_string() + "/";
    let run = s(&["a", "--under", &abs]);
    run.check(run.paths().len() == 3, "absolute folder, trailing slash");
    let run = s(&["--under", "photos/20"]);
    run.check(run.stdout.is_empty(), "a name prefix is not a folder");
    let run = s(&["--under", "photos/2023/../2022"]);
    run.check(
        run.paths() == vec![env.shown("2022/home/IMG_0003.JPG")],
        "dot-dot resolved",
    );
    // Camera: make or model, case-insensitive.
    let run = s(&["--camera", "canon"]);
    run.check(
        run.paths()
            == vec![
                env.shown("2023/beach/IMG_0006.JPG"),
                env.shown("2023/beach/IMG_0001.JPG"),
                env.shown("2022/home/IMG_0003.JPG"),
            ],
        "camera make",
    );
    let run = s(&["car", "--camera", "iphone"]);
    run.check(
        run.paths() == vec![env.shown("2023/city/IMG_0002.JPG")],
        "camera model",
    );
    let run = s(&["beach", "--camera", "eos r5", "--after", "2023-07-15"]);
    run.check(
        run.paths() == vec![env.shown("2023/beach/IMG_0006.JPG")],
        "filters combine (beach: from the folder name)",
    );
}

#[test]
fn json_lines_follow_the_contract() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["search", "dog", "--json"]);
    run.expect_code(0);
    let rows = run.json_lines();
    run.check(rows.len() == 3, "three rows");
    let captions = corpus_captions(&env);
    let mut last = f64::INFINITY;
    for row in &rows {
        run.check(
            keys(row) == ["caption", "labels", "path", "score"],
            format_args!("keys of {row}"),
        );
        let path = row["path"].as_str().unwrap();
        run.check(
            row["caption"].as_str() == captions.get(path).copied(),
            format_args!("caption of {path}"),
        );
        run.check(
            row["labels"]
                .as_array()
                .is_some_and(|l| l.iter().all(|x| x.is_string())),
            "labels are strings",
        );
        let score = row["score"].as_f64().unwrap();
        run.check(score <= last, "scores descend");
        last = score;
    }
    run.check(
        rows[0]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "dog"),
        "the best hit is labelled dog",
    );
    // --limit
    let run = env.run(&["search", "a", "--json", "--limit", "2"]);
    run.check(run.json_lines().len() == 2, "--limit 2");
    let run = env.run(&["search", "a", "--json", "--limit", "0"]);
    run.check(run.json_lines().len() == 6, "--limit 0: all");
    let run = env.run(&["search", "a", "--json"]);
    run.check(run.json_lines().len() == 6, "default limit 20");
}

#[test]
fn plain_output_has_no_escapes_and_color_always_highlights() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["search", "lighthouse"]);
    run.expect_code(0);
    let line = run.stdout.trim_end();
    run.check(
        line == format!(
            "{}\tA white lighthouse standing on a rocky cliff above the sea at sunset.",
            env.shown("2023/beach/IMG_0006.JPG")
        ),
        "PATH<TAB>SNIPPET, markers dropped",
    );
    run.check(
        !run.stdout.contains(['\u{1b}', '\u{1}', '\u{2}']),
        "no escape codes or markers",
    );
    let run = env.run(&["search", "lighthouse", "--color", "always"]);
    run.check(
        run.stdout
            .contains("A white \u{1b}[1;31mlighthouse\u{1b}[0m standing"),
        "match highlighted",
    );
    // NO_COLOR only matters on a terminal; a pipe never gets colour in auto mode.
    let run = env.run_env(
        &[("NO_COLOR", "")],
        &["search", "lighthouse", "--color", "auto"],
    );
    run.check(!run.stdout.contains('\u{1b}'), "auto on a pipe: no colour");
}

#[test]
fn no_match_is_exit_0_with_a_note() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["search", "unicorn"]);
    run.expect_code(0);
    run.check(run.stdout.is_empty(), "nothing on stdout");
    run.check(run.stderr.contains("no photos match"), "a note on stderr");
    let run = env.run(&["search", "unicorn", "--json"]);
    run.expect_code(0);
    run.check(run.stdout.is_empty(), "no JSON lines");
}

#[test]
fn missing_catalog_and_usage_errors() {
    let env = TestEnv::new();
    let run = env.run(&["search", "dog"]);
    run.expect_code(1);
    let db = env.db().display().to_string();
    run.check(run.stderr.contains(&db), "names the catalog file");
    run.check(
        run.stderr.contains("captiond run"),
        "says to run the daemon first",
    );
    run.check(!env.db().exists(), "search never creates a catalog");
    env.corpus();
    let run = env.run(&["search", "dog", "--after", "last week"]);
    run.expect_code(2);
    let run = env.run(&["search"]);
    run.expect_code(2);
    let run = env.run(&["search", "--limit", "many", "dog"]);
    run.expect_code(2);
}
