//! `captiond`: parse the command line, set up logging, run the command, map errors to exit codes
//! (0 ok, 1 runtime error, 2 usage error) with one readable line per cause.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    captiond::memory::keep_freed_memory();
    // `CAPTIOND_GENERIC_OPS=1`: the CPU runs exactly the candle ops CUDA and Metal run, none of
    // its own kernels (how the GPU code path is checked without a GPU).
    if std::env::var_os("CAPTIOND_GENERIC_OPS").is_some_and(|v| v == "1") {
        florence2::kernels::force_generic_ops(true);
    }
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
