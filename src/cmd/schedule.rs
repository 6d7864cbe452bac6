//! The schedule: which issue a `publish` without an issue sends, which older ones it leaves, and
//! which issue becomes due next. An issue's front-matter date is when it is due; a cron line or a
//! systemd timer running `feedpost publish` is the scheduler. Used by `publish` and `status`.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, Utc};

use crate::issue::Listing;

/// Where the schedule stands at one moment, as indexes into the site's listings (newest first,
/// as [`crate::site::Site::listings`] gives them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The issue a `publish` without an issue sends: the newest that is due (not a draft and
    /// dated at or before now) or already mailed on this channel (sent early with `--future`).
    pub due: Option<usize>,
    /// Older due issues never mailed on this channel and newer than the newest one that was:
    /// the backlog a scheduled publish leaves alone (never mailed to a new list), newest first.
    pub skipped: Vec<usize>,
    /// The issue that becomes due next: the earliest dated after now, not a draft, not mailed.
    pub next: Option<usize>,
}

impl Schedule {
    /// The schedule of `listings` (newest first) at `now`; `mailed` holds the permalinks of the
    /// issues with deliveries on the channel the config sends through.
    pub fn of(listings: &[&Listing], mailed: &HashSet<String>, now: DateTime<FixedOffset>) -> Self {
        let is_mailed = |l: &Listing| mailed.contains(&l.permalink);
        let is_due = |l: &Listing| l.is_published_at(now) || is_mailed(l);
        let due = listings.iter().position(|l| is_due(l));
        let skipped = match due {
            Some(i) => listings[i + 1..]
                .iter()
                .enumerate()
                .take_while(|(_, l)| !is_mailed(l))
                .filter(|(_, l)| is_due(l))
                .map(|(k, _)| i + 1 + k)
                .collect(),
            None => Vec::new(),
        };
        // Newest first: the last future issue in the listing is the earliest.
        let next = listings
            .iter()
            .rposition(|l| !l.draft && l.date > now && !is_mailed(l));
        Schedule { due, skipped, next }
    }
}

/// `date` as the schedule prints it: `2026-12-04 09:00 UTC`.
pub fn when(date: DateTime<FixedOffset>) -> String {
    date.with_timezone(&Utc)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// How long from `now` until `date`, roughly, as people say it: `in 3 days`, `in 5 hours`,
/// `in 12 minutes`, `now` (within a minute either way), `2 days ago`.
pub fn from_now(date: DateTime<FixedOffset>, now: DateTime<FixedOffset>) -> String {
    let minutes = (date - now).num_minutes();
    let (n, one, many) = match minutes.unsigned_abs() {
        0 => return "now".to_string(),
        m if m < 120 => (m, "minute", "minutes"),
        m if m < 48 * 60 => (m / 60, "hour", "hours"),
        m => (m / (24 * 60), "day", "days"),
    };
    let span = super::count(usize::try_from(n).unwrap_or(usize::MAX), one, many);
    if minutes > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(slug: &str, date: &str, draft: bool) -> Listing {
        Listing {
            slug: slug.into(),
            title: slug.into(),
            date: DateTime::parse_from_rfc3339(date).unwrap(),
            draft,
            categories: vec![],
            tags: vec![],
            permalink: format!("https://example.org/issues/{slug}/"),
        }
    }

    fn at(date: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(date).unwrap()
    }

    fn mailed(slugs: &[&str]) -> HashSet<String> {
        slugs
            .iter()
            .map(|s| format!("https://example.org/issues/{s}/"))
            .collect()
    }

    /// Newest first, as the site lists them.
    fn site() -> Vec<Listing> {
        vec![
            listing("d-future-2", "2026-12-18T09:00:00Z", false),
            listing("c-future-1", "2026-12-11T09:00:00Z", false),
            listing("draft", "2026-12-05T09:00:00Z", true),
            listing("b", "2026-12-04T09:00:00Z", false),
            listing("a", "2026-11-27T09:00:00Z", false),
            listing("old", "2026-11-20T09:00:00Z", false),
        ]
    }

    #[test]
    fn the_newest_due_issue_is_sent_and_the_unmailed_backlog_skipped() {
        let site = site();
        let listings: Vec<&Listing> = site.iter().collect();
        let s = Schedule::of(&listings, &mailed(&[]), at("2026-12-06T00:00:00Z"));
        assert_eq!(s.due, Some(3));
        assert_eq!(s.skipped, vec![4, 5]);
        assert_eq!(s.next, Some(1), "the earliest future issue, not the draft");
    }

    #[test]
    fn issues_older_than_the_last_mailed_one_are_not_counted_as_skipped() {
        let site = site();
        let listings: Vec<&Listing> = site.iter().collect();
        let s = Schedule::of(&listings, &mailed(&["old"]), at("2026-12-06T00:00:00Z"));
        assert_eq!(s.skipped, vec![4]);
        let s = Schedule::of(&listings, &mailed(&["a"]), at("2026-12-06T00:00:00Z"));
        assert!(s.skipped.is_empty());
    }

    #[test]
    fn an_issue_mailed_early_is_the_due_one_and_not_next() {
        let site = site();
        let listings: Vec<&Listing> = site.iter().collect();
        let s = Schedule::of(
            &listings,
            &mailed(&["c-future-1", "b"]),
            at("2026-12-06T00:00:00Z"),
        );
        assert_eq!(s.due, Some(1));
        assert!(s.skipped.is_empty());
        assert_eq!(s.next, Some(0));
    }

    #[test]
    fn nothing_due_before_the_first_date() {
        let site = site();
        let listings: Vec<&Listing> = site.iter().collect();
        let s = Schedule::of(&listings, &mailed(&[]), at("2026-01-01T00:00:00Z"));
        assert_eq!(s.due, None);
        assert_eq!(s.next, Some(5));
        for (now, expected) in [
            ("2026-11-17T08:00:00Z", "in 3 days"),
            ("2026-11-20T08:00:00Z", "in 60 minutes"),
            ("2026-11-19T08:00:00Z", "in 25 hours"),
            ("2026-11-20T09:00:30Z", "now"),
            ("2026-11-23T10:00:00Z", "3 days ago"),
        ] {
            assert_eq!(from_now(listings[5].date, at(now)), expected, "at {now}");
        }
        assert_eq!(when(listings[5].date), "2026-11-20 09:00 UTC");
    }
}
