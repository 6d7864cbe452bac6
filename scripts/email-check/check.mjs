// check.mjs HTML... — the browser and caniemail figures of scripts/check-email.sh, one JSON
// line per HTML file:
//   width375      document width (CSS px) in headless Chromium at a 375 px wide viewport
//   caniemail     doiuse-email over gmail.*, outlook.*, apple-mail.*, yahoo.*: the distinct
//                 errors not in the allowed list, and the number of distinct warnings
//   dark          with prefers-color-scheme: dark: the content background colour and its
//                 luminance, and the lowest text contrast (WCAG) of any text in the card
// Chromium: $CHROMIUM (default /usr/bin/chromium), started headless with no network use.

import fs from 'node:fs';
import path from 'node:path';
import { doIUseEmail } from '@jsx-email/doiuse-email';
import { chromium } from 'playwright-core';

const CLIENTS = ['gmail.*', 'outlook.*', 'apple-mail.*', 'yahoo.*'];
// Errors the issue allows: the <body> element, the role attribute, and what is used only as
// progressive enhancement (a client without it still shows one readable column).
const ALLOWED = [
  /^`<body> element`/,
  /^`role attribute`/,
  /^`@media`/,
  /^`prefers-color-scheme`/,
  /^`overflow-wrap`/,
  /^`word-break`/,
  /^`display:none`/,
];

function caniemail(html) {
  const result = doIUseEmail(html, { emailClients: CLIENTS });
  const errors = [...new Set(result.errors || [])];
  return {
    errors: errors.length,
    disallowed: errors.filter((e) => !ALLOWED.some((re) => re.test(e))),
    warnings: new Set(result.warnings || []).size,
  };
}

// playwright starts Chromium with a fresh, temporary profile.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  ],
});

async function measure(file) {
  const url = 'file://' + path.resolve(file);
  const page = await browser.newPage({ viewport: { width: 375, height: 800 } });
  // No network: images are not fetched (they would not change the layout, which sizes them).
  await page.route(/^https?:/, (route) => route.abort());
  await page.goto(url);
  const width375 = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await page.evaluate(() => {
    const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (; el; el = el.parentElement) {
        const c = rgb(getComputedStyle(el).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const contrast = (a, b) => {
      const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
      return (x + 0.05) / (y + 0.05);
    };
    const content = document.querySelector('.content');
    const bg = background(content);
    let lowest = Infinity;
    let worst = '';
    const walker = document.createTreeWalker(document.querySelector('.card'), NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const el = node.parentElement;
      const style = getComputedStyle(el);
      if (style.display === 'none' || style.visibility === 'hidden') continue;
      const c = contrast(rgb(style.color).slice(0, 3), background(el));
      if (c < lowest) { lowest = c; worst = el.tagName.toLowerCase() + '.' + el.className; }
    }
    return { background: `rgb(${bg.join(',')})`, luminance: +lum(bg).toFixed(3), lowestContrast: +lowest.toFixed(2), worst };
  });
  await page.close();
  return { width375, dark };
}

let failed = false;
for (const file of process.argv.slice(2)) {
  const html = fs.readFileSync(file, 'utf8');
  const result = { file: path.basename(file), ...(await measure(file)), caniemail: caniemail(html) };
  console.log(JSON.stringify(result));
}
await browser.close();
process.exit(failed ? 1 : 0);
