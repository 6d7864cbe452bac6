//! `feedpost completions SHELL` and `feedpost man`: shell completion scripts and man pages,
//! generated from the clap definitions in [`crate::cli`], so they always match the binary.

use std::io::Write;
use std::path::Path;

use super::Ran;
use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Prints the completion script for `shell` on stdout (`clap_complete`).
///
/// # Errors
/// stdout cannot be written.
pub fn completions(shell: Shell) -> Result<Ran> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "feedpost", &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(Ran::success())
}

/// Prints `feedpost.1` (roff, `clap_mangen`) on stdout; with `out`, writes it and one
/// `feedpost-<command>.1` per subcommand (nested ones as `feedpost-subscribers-suppress.1`)
/// into that folder, creating it, and prints each path.
///
/// # Errors
/// The folder or a file cannot be written, or stdout cannot be.
pub fn man(out: Option<&Path>) -> Result<Ran> {
    let mut command = Cli::command();
    // Gives every subcommand its full name (`feedpost publish`) for its usage line.
    command.build();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&page)?;
        stdout.flush()?;
        return Ok(Ran::success());
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("failed to create `{}`", dir.display()))?;
    let mut written = Vec::new();
    write_pages(&command, "feedpost", dir, &mut written)?;
    let mut stdout = std::io::stdout().lock();
    for path in written {
        writeln!(stdout, "{}", path.display())?;
    }
    Ok(Ran::success())
}

/// Writes `<name>.1` for `command` into `dir`, then the pages of its subcommands (but `help`)
/// as `<name>-<sub>.1`.
fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> Result<()> {
    let command = command.clone().name(name.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("failed to write `{}`", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_man_page_and_a_completion() {
        let dir = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        let mut command = Cli::command();
        command.build();
        write_pages(&command, "feedpost", dir.path(), &mut written).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "feedpost.1",
            "feedpost-init.1",
            "feedpost-serve.1",
            "feedpost-subscribers-suppress.1",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        let serve = std::fs::read_to_string(dir.path().join("feedpost-serve.1")).unwrap();
        assert!(serve.contains("local"), "{serve}");

        let mut script = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Cli::command(), "feedpost", &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(
            script.contains("--hide-drafts"),
            "bash completion lacks serve's flags"
        );
    }
}
