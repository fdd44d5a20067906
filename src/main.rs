//! The `chamade` command: parse the command line and hand it to [`chamade::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(chamade::cli::run(chamade::cli::Cli::parse()))
}
