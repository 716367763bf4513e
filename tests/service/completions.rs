//! `captiond completions SHELL` and `captiond man`.

use super::support::TestEnv;

#[test]
fn bash_completions_name_the_subcommands() {
    let env = TestEnv::new();
    let run = env.run(["completions", "bash"]);
    run.expect_code(0);
    run.check(!run.stdout.trim().is_empty(), "a script is printed");
    // Subcommands that are not a prefix of the binary's own name ("caption" would be found in
    // "captiond" even if it were missing).
    for word in ["reprocess", "service", "doctor", "export", "--config"] {
        run.check(run.stdout.contains(word), format_args!("mentions {word}"));
    }
}

#[test]
fn other_shells_and_bad_names() {
    let env = TestEnv::new();
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = env.run(["completions", shell]);
        run.expect_code(0);
        for word in ["reprocess", "doctor"] {
            run.check(
                run.stdout.contains(word),
                format_args!("{shell} mentions {word}"),
            );
        }
    }
    env.run(["completions", "tcsh-9000"]).expect_code(2);
}

#[test]
fn man_page_is_roff() {
    let env = TestEnv::new();
    let run = env.run(["man"]);
    run.expect_code(0);
    run.check(run.stdout.starts_with(".TH captiond 1"), "starts with .TH");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        run.check(run.stdout.contains(section), format_args!("has {section}"));
    }
    run.check(run.stdout.contains("doctor"), "lists the subcommands");
}
