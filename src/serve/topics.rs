//! The topics a reader can choose on the subscription form: the site's categories and tags.

use chrono::{DateTime, FixedOffset};

use crate::site::Site;

/// The categories and tags of the issues published at `now` (not drafts, not dated later), one
/// per spelling ignoring case (`Rust` and `rust` are one topic, spelled as its newest issue
/// spells it), sorted ignoring case: the grouping [`crate::subscribers::IssueTopics::wanted_by`]
/// matches a subscriber's topics with.
pub fn topics(site: &Site<'_>, now: DateTime<FixedOffset>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut topics = Vec::new();
    for listing in site.listings().filter(|l| l.is_published_at(now)) {
        for term in listing.categories.iter().chain(&listing.tags) {
            if seen.insert(term.to_lowercase()) {
                topics.push(term.clone());
            }
        }
    }
    topics.sort_by_cached_key(|t| (t.to_lowercase(), t.clone()));
    topics
}
