//! The `feedpost` binary: parse the command line, start logging, run the command, and turn its
//! result into an exit code (0 ok, 1 something failed, 2 usage error from clap).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = feedpost::cli::Cli::parse();
    feedpost::cli::init_logging(cli.verbose, cli.quiet);
    match feedpost::cmd::run(cli) {
        Ok(code) => code,
        // stdout closed by its reader (`feedpost status | head -1`): end quietly, as ripgrep does.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
