//! The `feedpost` binary: parse the command line, start logging, run the command, print what
//! failed, and turn the result into an exit code: 0 done; 1 ran, but some items failed (a bad
//! issue file, an undelivered recipient, a check that found errors); 2 could not run (a bad
//! config, a held lock, a server that refuses us — and clap's usage errors).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use feedpost::cmd::{Refused, COULD_NOT_RUN};

fn main() -> ExitCode {
    let cli = feedpost::cli::Cli::parse();
    feedpost::cli::init_logging(cli.verbose, cli.quiet);
    match feedpost::cmd::run(cli) {
        Ok(ran) => {
            for item in &ran.errors {
                print_error(item, &[]);
            }
            ran.exit_code()
        }
        // stdout closed by its reader (`feedpost status | head -1`): end quietly, as ripgrep does.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(refused) = e.chain().find_map(|c| c.downcast_ref::<Refused>()) {
                for item in &refused.items {
                    print_error(item, &[]);
                }
            }
            let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
            print_error(&e.to_string(), &causes);
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}

/// The one place errors are printed: `error: …`, then `caused by: …` for each cause.
fn print_error(message: &str, causes: &[String]) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {message}");
    for cause in causes {
        let _ = writeln!(stderr, "caused by: {cause}");
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
