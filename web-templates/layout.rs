// The web archive's HTML, written with maud: one page per issue and the index. This file,
// `style.css` (served as `archive.css`) and `feed.xsl` beside it are the only places to edit to
// change how the site looks in a browser; `src/archive` and `src/feed` include them. Every link
// is absolute, so a page reads the same wherever it is copied.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// What every page shows of the site.
pub struct Site<'a> {
    /// `<html lang>`, BCP 47.
    pub lang: &'a str,
    /// Open Graph `og:locale` (`zh_CN`).
    pub locale: &'a str,
    /// The newsletter's name.
    pub title: &'a str,
    /// One line about it.
    pub description: &'a str,
    /// The index page (the site's base URL).
    pub home: &'a str,
    /// The stylesheet's URL.
    pub css: &'a str,
    /// The main feeds, for `<link rel="alternate">` autodiscovery and the footer.
    pub feeds: &'a [Link<'a>],
    /// Fixed words in the site's language.
    pub words: &'a Words,
}

/// A link with a label and, for feeds, a media type.
pub struct Link<'a> {
    /// What the reader sees.
    pub label: &'a str,
    /// Absolute URL.
    pub href: &'a str,
    /// Media type (`application/rss+xml`), for feeds.
    pub media_type: &'a str,
}

/// One issue's page.
pub struct Page<'a> {
    /// Its title, permalink (canonical URL, `og:url`) and date (`<time datetime>`,
    /// `article:published_time`).
    pub entry: Entry<'a>,
    /// Its summary, plain text (meta description, `og:description`).
    pub summary: &'a str,
    /// The author's name.
    pub author: Option<&'a str>,
    /// The author's page.
    pub author_link: Option<&'a str>,
    /// The cover image, absolute (`og:image`).
    pub cover: Option<&'a str>,
    /// The body, HTML with absolute links: the same as the email's.
    pub content_html: &'a str,
    /// Its categories and tags, each linked to the term's feed.
    pub terms: &'a [Link<'a>],
    /// Its categories and tags as written (`article:tag`).
    pub term_names: &'a [&'a str],
}

/// An issue as the index lists it and its page heads it.
pub struct Entry<'a> {
    /// The issue's title, plain text.
    pub title: &'a str,
    /// Its permalink.
    pub permalink: &'a str,
    /// The date, RFC 3339.
    pub date_iso: &'a str,
    /// The date for people.
    pub date: &'a str,
}

/// The fixed words of the pages, per language.
pub struct Words {
    /// Heading of the list of issues.
    pub all_issues: &'static str,
    /// Heading of the per-term feeds on the index.
    pub feeds_by_term: &'static str,
    /// Before the main feed links.
    pub subscribe: &'static str,
    /// Link from an issue back to the index.
    pub back: &'static str,
}

/// English words.
pub const EN: Words = Words {
    all_issues: "All issues",
    feeds_by_term: "Feeds by category and tag",
    subscribe: "Subscribe:",
    back: "All issues",
};

/// Chinese words.
pub const ZH: Words = Words {
    all_issues: "往期",
    feeds_by_term: "按分类和标签订阅",
    subscribe: "订阅：",
    back: "往期",
};

fn head(site: &Site<'_>, title: &str, description: &str, canonical: &str, extra: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            meta name="description" content=(description);
            link rel="canonical" href=(canonical);
            @for feed in site.feeds {
                link rel="alternate" type=(feed.media_type) title=(format!("{} ({})", site.title, feed.label)) href=(feed.href);
            }
            link rel="stylesheet" href=(site.css);
            meta property="og:site_name" content=(site.title);
            meta property="og:locale" content=(site.locale);
            (extra)
        }
    }
}

fn header(site: &Site<'_>) -> Markup {
    html! {
        header.masthead { a href=(site.home) { (site.title) } }
    }
}

fn footer(site: &Site<'_>) -> Markup {
    html! {
        footer {
            p {
                (site.words.subscribe) " "
                @for (i, feed) in site.feeds.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(feed.href) type=(feed.media_type) { (feed.label) }
                }
            }
        }
    }
}

/// Renders an issue's page: the email's content in a web layout, with feed autodiscovery links,
/// a canonical link and Open Graph tags (the cover as `og:image`).
pub fn page(site: &Site<'_>, p: &Page<'_>) -> Markup {
    let e = &p.entry;
    let og = html! {
        meta property="og:type" content="article";
        meta property="og:title" content=(e.title);
        meta property="og:description" content=(p.summary);
        meta property="og:url" content=(e.permalink);
        @if let Some(cover) = p.cover {
            meta property="og:image" content=(cover);
            meta name="twitter:card" content="summary_large_image";
        }
        meta property="article:published_time" content=(e.date_iso);
        @if let Some(author) = p.author { meta property="article:author" content=(author); }
        @for name in p.term_names { meta property="article:tag" content=(name); }
    };
    html! {
        (DOCTYPE)
        html lang=(site.lang) {
            (head(site, &format!("{} · {}", e.title, site.title), p.summary, e.permalink, og))
            body {
                (header(site))
                main {
                    article {
                        h1 { (e.title) }
                        p.meta {
                            time datetime=(e.date_iso) { (e.date) }
                            @if let Some(author) = p.author {
                                " · "
                                @if let Some(link) = p.author_link { a href=(link) { (author) } }
                                @else { (author) }
                            }
                        }
                        @if let Some(cover) = p.cover {
                            img.cover src=(cover) alt=(e.title);
                        }
                        div.body { (PreEscaped(p.content_html)) }
                        @if !p.terms.is_empty() {
                            p.terms {
                                @for term in p.terms {
                                    a href=(term.href) type=(term.media_type) { (term.label) } " "
                                }
                            }
                        }
                    }
                    nav { a href=(site.home) { "← " (site.words.back) } }
                }
                (footer(site))
            }
        }
    }
}

/// Renders rows of the index's list of issues (`li` elements), to be given to [`index`]. Apart
/// so a large site's list can be rendered in pieces on several cores.
pub fn index_rows(rows: &[Entry<'_>]) -> Markup {
    html! {
        @for row in rows {
            li { time datetime=(row.date_iso) { (row.date) } " " a href=(row.permalink) { (row.title) } }
        }
    }
}

/// Renders the index: every issue, newest first (`rows`, from [`index_rows`]), then the
/// per-category and per-tag feeds.
pub fn index(site: &Site<'_>, rows: &[Markup], term_feeds: &[Link<'_>]) -> Markup {
    let og = html! {
        meta property="og:type" content="website";
        meta property="og:title" content=(site.title);
        meta property="og:description" content=(site.description);
        meta property="og:url" content=(site.home);
    };
    html! {
        (DOCTYPE)
        html lang=(site.lang) {
            (head(site, site.title, site.description, site.home, og))
            body {
                (header(site))
                main {
                    p.description { (site.description) }
                    h1 { (site.words.all_issues) }
                    ol.issues {
                        @for part in rows { (part) }
                    }
                    @if !term_feeds.is_empty() {
                        h2 { (site.words.feeds_by_term) }
                        ul.terms {
                            @for feed in term_feeds {
                                li { a href=(feed.href) type=(feed.media_type) { (feed.label) } }
                            }
                        }
                    }
                }
                (footer(site))
            }
        }
    }
}
