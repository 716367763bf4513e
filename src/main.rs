//! `captiond`: parse the command line, set up logging, run the command, map errors to exit codes
//! (0 ok, 1 runtime error, 2 usage error) with one readable line per cause.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    captiond::memory::keep_freed_memory();
    let cli = captiond::cli::Cli::parse();
    captiond::cli::init_tracing(cli.verbose);
    match captiond::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            captiond::cli::report(&err);
            ExitCode::from(1)
        }
    }
}
