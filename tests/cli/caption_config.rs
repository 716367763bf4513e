//! `captiond --config FILE caption`: the config's `[model]` is used when no `--model` or
//! `--model-dir` is given (relative paths are relative to the config file), the default config
//! file is found under `XDG_CONFIG_HOME`, and a typo in a key is an error naming key and file.

use std::path::Path;

use super::support::{check_matches, check_row_shape, golden, model, text, TestEnv};

/// Copies a fixture model folder (flat) to `dest`.
fn copy_model(name: &str, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(model(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

/// TOML basic strings escape backslashes and quotes.
fn toml_string(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `[model] dir`, `beams` and `max_new_tokens` from the config give the reference's greedy run.
#[test]
fn config_model_dir_is_used_when_no_model_flag_is_given() {
    let env = TestEnv::new();
    let case = golden("tiny-a", "rgb_odd_caption");
    let config = env.write(
        "conf/config.toml",
        format!(
            "[model]\ndir = {}\nbeams = 1\nmax_new_tokens = {}\n",
            toml_string(&model("tiny-a")),
            case.max_new_tokens
        ),
    );
    let run = env.run([
        "--config".to_string(),
        text(&config),
        "caption".into(),
        "--task".into(),
        case.task.clone(),
        "--json".into(),
        text(&case.image),
    ]);
    run.expect_code(0);
    let row = run.single_row();
    check_row_shape(&run, &row, true);
    check_matches(&run, &row, &case.greedy, "greedy via the config");
    run.check(
        row.get("score").is_none(),
        "beams = 1 from the config should mean greedy (no beam score)",
    );
}

/// A relative `dir` is relative to the config file, not to the current directory.
#[test]
fn relative_config_model_dir_is_relative_to_the_config_file() {
    let env = TestEnv::new();
    let case = golden("tiny-a", "rgb_odd_caption");
    copy_model("tiny-a", &env.root().join("models/tiny"));
    let config = env.write(
        "conf/config.toml",
        format!(
            "[model]\ndir = \"../models/tiny\"\nbeams = 1\nmax_new_tokens = {}\n",
            case.max_new_tokens
        ),
    );
    let run = env.run([
        "--config".to_string(),
        text(&config),
        "caption".into(),
        "--task".into(),
        case.task.clone(),
        "--json".into(),
        text(&case.image),
    ]);
    run.expect_code(0);
    let row = run.single_row();
    check_matches(&run, &row, &case.greedy, "greedy via a relative dir");
}

/// Without `--config`, `$XDG_CONFIG_HOME/captiond/config.toml` is read (Linux); flags still win.
#[cfg(target_os = "linux")]
#[test]
fn default_config_file_is_read_from_xdg_config_home() {
    let env = TestEnv::new();
    let case = golden("tiny-a", "rgb_odd_caption");
    env.write(
        "config/captiond/config.toml",
        format!(
            "[model]\ndir = {}\nbeams = 1\nmax_new_tokens = {}\n",
            toml_string(&model("tiny-a")),
            case.max_new_tokens
        ),
    );
    assert_eq!(env.config_home(), env.root().join("config"));
    let run = env.run([
        "caption".to_string(),
        "--task".into(),
        case.task.clone(),
        "--json".into(),
        text(&case.image),
    ]);
    run.expect_code(0);
    check_matches(&run, &run.single_row(), &case.greedy, "greedy");

    // --beams on the command line beats the config's beams = 1.
    let run = env.run([
        "caption".to_string(),
        "--task".into(),
        case.task.clone(),
        "--beams".into(),
        case.num_beams.to_string(),
        "--json".into(),
        text(&case.image),
    ]);
    run.expect_code(0);
    let row = run.single_row();
    check_matches(&run, &row, &case.beam, "beam search");
    run.check(row.get("score").is_some(), "--beams 3 should give a score");
}

/// A misspelt key is an error (never a silent default) that names the key and the file.
#[test]
fn unknown_config_key_names_the_key_and_the_file() {
    let env = TestEnv::new();
    let config = env.write(
        "conf/config.toml",
        format!(
            "[model]\ndir = {}\nbeems = 1\n",
            toml_string(&model("tiny-a"))
        ),
    );
    let run = env.run([
        "--config".to_string(),
        text(&config),
        "caption".into(),
        "--json".into(),
        text(&super::support::image("rgb_97x61.png")),
    ]);
    run.expect_code(1);
    run.check(run.stdout.trim().is_empty(), "nothing should be captioned");
    run.check(
        run.stderr.contains("beems"),
        "the error should name `beems`",
    );
    run.check(
        run.stderr.contains(&text(&config)),
        "the error should name the config file",
    );
}

/// Errors are "one readable line per cause" (architecture.md): the parser's message must not be
/// printed twice (once in the error, again as its cause).
#[test]
fn config_error_is_not_repeated() {
    let env = TestEnv::new();
    let config = env.write("conf/config.toml", "[model]\nbeems = 1\n");
    let run = env.run([
        "--config".to_string(),
        text(&config),
        "caption".into(),
        text(&super::support::image("rgb_97x61.png")),
    ]);
    run.expect_code(1);
    let mentions = run.stderr.matches("unknown field").count();
    run.check(
        mentions == 1,
        format_args!("`unknown field` appears {mentions} times on stderr; expected once"),
    );
}
