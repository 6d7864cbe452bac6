//! Screenshots of an email's HTML as a desktop and a phone mail client show it, light and dark.
//!
//! Beside composing (stage four), for `feedpost preview`: headless Chromium, driven over the
//! DevTools protocol by the `headless_chrome` crate, lays the HTML out at a viewport of
//! [`WIDTHS`] CSS pixels with `prefers-color-scheme` light and dark, and captures the whole page
//! as PNG. Chromium runs with a fresh temporary profile and without background networking, so it
//! needs no network (remote images show as their alt text).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use headless_chrome::protocol::cdp::{Emulation, Page};
use headless_chrome::{Browser, LaunchOptions};

/// The viewport widths of the screenshots, CSS pixels: a desktop client's reading pane and a
/// phone.
pub const WIDTHS: [u32; 2] = [600, 375];

/// How to install Chromium, for the message shown when it is missing.
pub const INSTALL_HINT: &str = "install Chromium (Debian/Ubuntu: `apt-get install chromium`), or set FEEDPOST_CHROMIUM to a Chrome or Chromium binary";

/// The Chromium binary to use: `FEEDPOST_CHROMIUM`, else the first Chrome or Chromium found on
/// the `PATH` (`chromium`, `google-chrome`, …).
///
/// # Errors
/// None is found: the message says where it looked and how to install one.
pub fn find_chromium() -> Result<PathBuf, String> {
    match std::env::var_os("FEEDPOST_CHROMIUM") {
        Some(path) if Path::new(&path).exists() => Ok(PathBuf::from(path)),
        Some(path) => Err(format!(
            "FEEDPOST_CHROMIUM names `{}`, which does not exist; {INSTALL_HINT}",
            Path::new(&path).display()
        )),
        None => headless_chrome::browser::default_executable()
            .map_err(|_| format!("Chromium was not found on the PATH; {INSTALL_HINT}")),
    }
}

/// Writes `<stem>-<width>-<light|dark>.png` into `out` for the HTML file `html` at every width
/// of [`WIDTHS`], and returns the paths written. `chromium` is the browser binary.
///
/// # Errors
/// Chromium does not start or does not answer, or a PNG cannot be written.
pub fn capture(chromium: &Path, html: &Path, out: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let args = [
        "--disable-gpu",
        "--disable-quic",
        "--disable-component-update",
        "--hide-scrollbars",
    ];
    let browser = Browser::new(LaunchOptions {
        path: Some(chromium.to_path_buf()),
        headless: true,
        sandbox: false,
        args: args.iter().map(OsStr::new).collect(),
        ..LaunchOptions::default()
    })
    .map_err(|e| anyhow!("{e}"))
    .with_context(|| format!("failed to start Chromium (`{}`)", chromium.display()))?;
    let html = html
        .canonicalize()
        .with_context(|| format!("failed to find `{}`", html.display()))?;
    let url = url::Url::from_file_path(&html)
        .map_err(|()| anyhow!("`{}` cannot be opened as a URL", html.display()))?;
    let tab = browser.new_tab().map_err(|e| anyhow!("{e}"))?;
    let mut written = Vec::new();
    for width in WIDTHS {
        for scheme in ["light", "dark"] {
            let png = shoot(&tab, url.as_str(), width, scheme)
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("Chromium failed to render `{}`", html.display()))?;
            let path = out.join(format!("{stem}-{width}-{scheme}.png"));
            std::fs::write(&path, png)
                .with_context(|| format!("failed to write `{}`", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// One full-page PNG of `url` at `width` CSS pixels in the `scheme` colour scheme.
fn shoot(
    tab: &headless_chrome::Tab,
    url: &str,
    width: u32,
    scheme: &str,
) -> anyhow::Result<Vec<u8>> {
    let metrics = |height: u32| Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 1.0,
        mobile: width < 600,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    };
    // A short viewport first, so the page height measured next is the content's own.
    tab.call_method(metrics(100))?;
    tab.call_method(Emulation::SetEmulatedMedia {
        media: None,
        features: Some(vec![Emulation::MediaFeature {
            name: "prefers-color-scheme".into(),
            value: scheme.into(),
        }]),
    })?;
    tab.navigate_to(url)?.wait_until_navigated()?;
    let height = tab
        .evaluate("document.documentElement.scrollHeight", false)?
        .value
        .and_then(|v| v.as_u64())
        .unwrap_or(2000)
        .clamp(100, 16_000) as u32;
    tab.call_method(metrics(height))?;
    tab.capture_screenshot(
        Page::CaptureScreenshotFormatOption::Png,
        None,
        Some(Page::Viewport {
            x: 0.0,
            y: 0.0,
            width: f64::from(width),
            height: f64::from(height),
            scale: 1.0,
        }),
        true,
    )
}
