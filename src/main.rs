//! The `feedpost` binary: parse the command line, start logging, run the command, and turn its
//! result into an exit code (0 ok, 1 something failed, 2 usage error from clap).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = feedpost::cli::Cli::parse();
    feedpost::cli::init_logging(cli.verbose, cli.quiet);
    match feedpost::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
