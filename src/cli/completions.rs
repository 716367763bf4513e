//! `captiond completions SHELL` and `captiond man`: a shell completion script (clap_complete) and
//! a roff man page (clap_mangen), both generated from the clap definitions in [`super::Cli`], so
//! they always match the binary. Written to stdout.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for. Install, e.g.: bash: `captiond completions bash >
    /// ~/.local/share/bash-completion/completions/captiond`; zsh: into a folder on $fpath as
    /// `_captiond`; fish: `> ~/.config/fish/completions/captiond.fish`.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "captiond", &mut out);
    write_stdout(&out)
}

pub fn man(_args: ManArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .context("cannot render the man page")?;
    let page = String::from_utf8(out).context("the man page is not UTF-8")?;
    write_stdout(title_first(&page).as_bytes())
}

/// Moves the `.TH` line to the top, ahead of the roff crate's `Aq` string definitions (which
/// only the body uses), so the page starts like a hand-written one and `file`/`whatis` and
/// simple man page indexers recognise it.
fn title_first(page: &str) -> String {
    let Some(title) = page.lines().find(|l| l.starts_with(".TH ")) else {
        return page.to_string();
    };
    let mut out = format!("{title}\n");
    let mut moved = false;
    for line in page.lines() {
        if !moved && line == title {
            moved = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn title_moves_to_the_top() {
        let page = ".ie x\n.el y\n.TH captiond 1\n.SH NAME\n";
        assert_eq!(
            super::title_first(page),
            ".TH captiond 1\n.ie x\n.el y\n.SH NAME\n"
        );
    }
}
