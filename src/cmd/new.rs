//! `feedpost new PATH`: a new issue file with its front matter written, as `hugo new` does — the
//! first step of writing an issue, before the pipeline reads it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Ran;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset, Timelike};

use crate::cli::NewArgs;
use crate::config::Config;
use crate::issue::files::BUNDLE_INDEX;

/// Writes the issue `args.path` names (see [`issue_file`]) with front matter — `title`, `date`
/// (now, in this machine's time zone, to the minute; `FEEDPOST_NOW` pins it) and `draft: true`
/// — and a line of body to replace; prints the path and what to do next. When the config at
/// `config_path` loads, refuses a path outside its issues folder, where feedpost would not see
/// the file.
///
/// # Errors
/// The file exists already (nothing is written), the path is not a `.md` file or a folder, it
/// is outside the site's issues folder, or it cannot be written.
pub fn run(config_path: &Path, args: &NewArgs) -> Result<Ran> {
    let file = issue_file(&args.path)?;
    let config = Config::from_file(config_path).ok();
    if let Some(config) = &config {
        refuse_outside_issues(&file, config)?;
    }
    let title = match &args.title {
        Some(title) => title.trim().to_string(),
        None => title_from_name(&args.path),
    };
    if title.is_empty() {
        bail!("the title is empty: give one with --title \"...\"");
    }
    let text = front_matter(&title, local_now()?, true) + "\nWrite the issue here, in Markdown.\n";
    write_new(&file, &text)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "created {}", file.display())?;
    writeln!(
        out,
        "Write it, look at it with `feedpost serve --local`, and delete the `draft: true` line when it is ready to publish."
    )?;
    if config.is_none() {
        tracing::warn!(
            "no site config at `{}`: run `feedpost init` to start a site, or pass --config",
            config_path.display()
        );
    }
    Ok(Ran::success())
}

/// The file to write for `path`: `path` itself when it ends in `.md`, a page bundle's
/// `path/index.md` when it has no extension (or ends in `/`).
///
/// # Errors
/// `path` has another extension.
pub(super) fn issue_file(path: &Path) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    if text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
        return Ok(path.join(BUNDLE_INDEX));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("md") => Ok(path.to_path_buf()),
        None => Ok(path.join(BUNDLE_INDEX)),
        Some(_) => bail!(
            "`{}` is not an issue file name: issues are `.md` files (`{}`), or a folder without an extension for a page bundle (its `index.md` is written)",
            path.display(),
            path.with_extension("md").display()
        ),
    }
}

/// Refuses `file` when it would not be under `config`'s issues folder.
fn refuse_outside_issues(file: &Path, config: &Config) -> Result<()> {
    let issues = absolute(&config.site.issues);
    let wanted = absolute(file);
    if wanted.starts_with(&issues) {
        return Ok(());
    }
    let relative_issues = config
        .site
        .issues
        .strip_prefix(&config.root)
        .unwrap_or(&config.site.issues);
    let name = file
        .file_name()
        .filter(|n| *n != BUNDLE_INDEX)
        .or_else(|| file.parent().and_then(Path::file_name))
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    bail!(
        "`{}` is outside the issues folder `{}` (`site.issues`), so feedpost would not see it; nothing was written. Try `feedpost new {}`",
        file.display(),
        config.site.issues.display(),
        relative_issues.join(name).display()
    )
}

/// `path` made absolute against the current folder, with `.` and `..` taken out (without
/// resolving symbolic links: the file does not exist yet).
fn absolute(path: &Path) -> PathBuf {
    let joined = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A title from an issue's name: the file stem (or the bundle folder's name) without a leading
/// `YYYY-MM-DD-`, `-` and `_` as spaces, the first letter upper-case: `2026-12-04-weekly.md` →
/// `Weekly`.
pub(super) fn title_from_name(path: &Path) -> String {
    let stem = match path.extension().and_then(|e| e.to_str()) {
        Some("md") => path.file_stem(),
        _ => path.file_name(),
    };
    let stem = stem
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let undated = strip_date(&stem).unwrap_or(&stem);
    let words = undated.replace(['-', '_'], " ");
    let words = words.trim();
    let words = if words.is_empty() { stem.trim() } else { words };
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `name` without a leading `YYYY-MM-DD` and the separator after it; `None` when it has none.
fn strip_date(name: &str) -> Option<&str> {
    let date = name.get(..10)?;
    let shape = date.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    let rest = &name[10..];
    Some(rest.strip_prefix(['-', '_', ' ']).unwrap_or(rest))
}

/// YAML front matter between `---` lines: `title` (quoted), `date` (RFC 3339, to the
/// second), `draft: true` when `draft`, and commented examples of the optional keys.
pub(super) fn front_matter(title: &str, date: DateTime<FixedOffset>, draft: bool) -> String {
    let quoted = title.replace('\\', "\\\\").replace('"', "\\\"");
    let mut text = format!(
        "---\ntitle: \"{quoted}\"\ndate: {}\n",
        date.format("%Y-%m-%dT%H:%M:%S%:z")
    );
    if draft {
        text.push_str("draft: true\n");
    }
    text.push_str(
        "# description: \"One line for the feeds, the inbox preview and search results\"\n\
         # tags: [\"news\"]        # readers can subscribe to a topic; each tag has a feed\n\
         # cover: \"cover.jpg\"    # an image at the top of the email and the page\n\
         ---\n",
    );
    text
}

/// Now, in this machine's time zone, to the minute (so the issue is due at once); `FEEDPOST_NOW`
/// pins it (then in UTC).
///
/// # Errors
/// `FEEDPOST_NOW` is set but invalid.
pub(super) fn local_now() -> Result<DateTime<FixedOffset>> {
    let now = if std::env::var_os("FEEDPOST_NOW").is_some() {
        crate::now()?.fixed_offset()
    } else {
        chrono::Local::now().fixed_offset()
    };
    Ok(now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now))
}

/// Writes `text` into the new file `path`, creating its folders; never replaces a file.
///
/// # Errors
/// `path` exists (the message says nothing was written), or it cannot be written.
pub(super) fn write_new(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create the folder `{}`", parent.display()))?;
    }
    let mut file = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "`{}` already exists; nothing was written. Edit it, or choose another name",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("failed to create `{}`", path.display())),
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_names_without_their_date() {
        for (path, title) in [
            ("issues/2026-12-04-weekly.md", "Weekly"),
            ("issues/2026-12-04-year_in_review.md", "Year in review"),
            ("issues/2026-12-04-weekly", "Weekly"),
            ("issues/2026-12-04.md", "2026-12-04"),
            ("issues/周报-42.md", "周报 42"),
        ] {
            assert_eq!(title_from_name(Path::new(path)), title, "{path}");
        }
    }

    #[test]
    fn a_folder_is_a_page_bundle_and_other_extensions_are_refused() {
        assert_eq!(
            issue_file(Path::new("issues/a.md")).unwrap(),
            Path::new("issues/a.md")
        );
        assert_eq!(
            issue_file(Path::new("issues/a")).unwrap(),
            Path::new("issues/a/index.md")
        );
        assert_eq!(
            issue_file(Path::new("issues/a/")).unwrap(),
            Path::new("issues/a/index.md")
        );
        let e = issue_file(Path::new("issues/a.markdown")).unwrap_err();
        assert!(e.to_string().contains("issues/a.md"), "{e}");
    }

    #[test]
    fn front_matter_parses_back_as_written() {
        let date = DateTime::parse_from_rfc3339("2026-12-04T09:30:00+08:00").unwrap();
        let text = front_matter("Say \"hi\" \\ 你好", date, true) + "Body.\n";
        let config = Config::parse(
            "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/\"\n[mail]\nfrom = \"T <t@example.org>\"\n",
            Path::new("/site"),
        )
        .unwrap();
        let issue =
            crate::issue::parse_bytes(text.into_bytes(), Path::new("/site/issues/x.md"), &config)
                .unwrap();
        assert_eq!(issue.title, "Say \"hi\" \\ 你好");
        assert_eq!(issue.date, date);
        assert!(issue.draft);
    }
}
