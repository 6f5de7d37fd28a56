// One screenshot, checked: wait until the page shows what it must, take the PNG, look again at
// once (the DOM at capture time), and check that the PNG is not blank.
//
// A check is { what, pattern } on the page's whole text, or { what, selector, pattern }: some
// element matching `selector` whose text matches `pattern`, and that element must lie inside the
// captured viewport, so the PNG shows what the check found.

import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { pngStats } from './pixels.mjs';

export const VIEWPORT = { width: 1280, height: 800 };

/**
 * Debian's Chromium (no browser download; E2E_CHROMIUM names another build), headless, with a
 * fresh profile in `profileDir` (removed by `close`). HOME, the XDG folders and TMPDIR point
 * there too, so nothing is written outside the project (Chromium makes ~/.pki and temporary
 * folders, fontconfig ~/.cache).
 */
export async function launch(profileDir) {
  fs.rmSync(profileDir, { recursive: true, force: true });
  fs.mkdirSync(profileDir, { recursive: true });
  const args = [
    '--headless',
    // Root cannot keep Chromium's sandbox, and containers often lack user namespaces.
    '--no-sandbox',
    '--disable-gpu',
    // This machine's network is closed: without these Chromium keeps trying Google's hosts.
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // Docker hosts often have a small /dev/shm.
    '--disable-dev-shm-usage',
  ];
  const home = path.join(profileDir, 'home');
  const tmp = path.join(profileDir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    TMPDIR: tmp,
  };
  // A persistent context is the one way Playwright takes a --user-data-dir of ours.
  const context = await chromium.launchPersistentContext(path.join(profileDir, 'user-data'), {
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
    env,
    timeout: 30_000,
    viewport: VIEWPORT,
    deviceScaleFactor: 1,
  });
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(profileDir, { recursive: true, force: true });
  };
  return { context, close };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether each check holds on `page` now: [{ what, ok, found }]. */
export async function runChecks(page, checks) {
  const out = [];
  for (const c of checks) {
    try {
      if (!c.selector) {
        const text = await page.evaluate(() => document.body ? document.body.innerText : '');
        const m = text.match(c.pattern);
        out.push({ what: c.what, ok: Boolean(m), found: m ? m[0].slice(0, 120) : null });
        continue;
      }
      const hits = page.locator(c.selector).filter({ hasText: c.pattern });
      if ((await hits.count()) === 0) {
        out.push({ what: c.what, ok: false, found: null });
        continue;
      }
      const first = hits.first();
      const box = await first.boundingBox();
      const height = (page.viewportSize() || VIEWPORT).height;
      const shown = box !== null && box.y < height && box.y + box.height > 0;
      const text = (await first.innerText()).replace(/\s+/g, ' ').trim().slice(0, 120);
      out.push({ what: c.what, ok: shown, found: shown ? text : `${text} (outside the captured area)` });
    } catch (e) {
      out.push({ what: c.what, ok: false, found: `error: ${e.message.split('\n')[0]}` });
    }
  }
  return out;
}

/**
 * Capture `spec` into `outDir`:
 *   name      file name without .png, and the shot's name in the results
 *   shows     what the picture shows (its label)
 *   open      async (page) => loads the page and does what a user would (log in, filter, expand)
 *   checks    as above
 *   focus     optional selector (or { selector, pattern }) scrolled into view before each look
 *   waitMs    how long the checks may take to hold (default 10 s)
 *   reload    open the page again while the checks do not hold (a page that does not update)
 *   viewport  optional { width, height } for a page with little on it (default VIEWPORT)
 *   page      optional page to reuse (already open)
 * Returns { name, shows, file, url, ok, why, checks, pixels, at }. A shot whose checks never held
 * is still written (as NAME.failed.png), to show what the page showed instead.
 */
export async function capture(context, outDir, spec) {
  const page = spec.page || (await context.newPage());
  const result = { name: spec.name, shows: spec.shows, file: null, url: null, ok: false, why: '', checks: [], pixels: null, at: null };
  try {
    if (spec.viewport) await page.setViewportSize(spec.viewport);
    await spec.open(page);
    // The element the picture is about, scrolled into view before every look: a page that
    // grows above it (a newer incident, opened) must not push it out of the picture.
    const focus = async () => {
      if (!spec.focus) return;
      let loc = page.locator(spec.focus.selector ?? spec.focus);
      if (spec.focus.pattern) loc = loc.filter({ hasText: spec.focus.pattern });
      await loc.first().scrollIntoViewIfNeeded({ timeout: 2_000 }).catch(() => {});
    };
    const deadline = Date.now() + (spec.waitMs ?? 10_000);
    await focus();
    let before = await runChecks(page, spec.checks);
    while (!before.every((c) => c.ok) && Date.now() < deadline) {
      await sleep(250);
      if (spec.reload) await spec.open(page);
      await focus();
      before = await runChecks(page, spec.checks);
    }
    const held = before.every((c) => c.ok);
    const file = path.join(outDir, `${spec.name}${held ? '' : '.failed'}.png`);
    await page.screenshot({ path: file, animations: 'disabled', timeout: 15_000 });
    result.at = new Date().toISOString();
    result.url = page.url();
    // The DOM at capture time: checked again right after the picture was taken.
    result.checks = await runChecks(page, spec.checks);
    result.file = path.basename(file);
    result.pixels = await pngStats(context, file);
    const failed = result.checks.filter((c) => !c.ok).map((c) => `${c.what}: not on the page${c.found ? ` (${c.found})` : ''}`);
    if (!result.pixels.ok) failed.push(`the PNG looks blank: ${result.pixels.why}`);
    result.ok = failed.length === 0;
    result.why = failed.join('; ');
  } catch (e) {
    result.why = `capture failed: ${e.message.split('\n')[0]}`;
  } finally {
    if (!spec.page) await page.close().catch(() => {});
  }
  return result;
}

/** A PNG made elsewhere (the run picture), copied beside the shots and checked the same way. */
export async function adopt(context, outDir, { name, shows, source }) {
  const result = { name, shows, file: null, url: null, ok: false, why: '', checks: [], pixels: null, at: null };
  if (!fs.existsSync(source)) {
    result.why = `${source} does not exist`;
    return result;
  }
  const file = path.join(outDir, `${name}.png`);
  fs.copyFileSync(source, file);
  result.file = path.basename(file);
  result.at = fs.statSync(source).mtime.toISOString();
  result.pixels = await pngStats(context, file);
  result.ok = result.pixels.ok;
  result.why = result.ok ? '' : `the PNG looks blank: ${result.pixels.why}`;
  return result;
}
