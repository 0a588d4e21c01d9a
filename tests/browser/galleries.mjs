// Browser test of the shared-gallery web UI against a running sidecar.
//
//   NANOFS_URL=http://127.0.0.1:PORT GALLERY_ID=ID USER1=alice PASS1=… USER2=bob PASS2=… \
//   UPLOAD_FILE=small.jpg [SCREENSHOT_DIR=dir] [CHROMIUM=/usr/bin/chromium] node tests/browser/galleries.mjs
//
// USER1 owns the gallery, USER2 is a viewer of it. Prints one JSON line; exits non-zero
// on failure (with screenshots in $SCREENSHOT_DIR when set).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { harness } from './harness.mjs';

const { results, pages, pageErrors, need, step, watch, launch, finish } = harness('galleries');

const tile = (page, attrs) => page.locator(`[data-testid="tile"]${Object.entries(attrs).map(([k, v]) => `[data-${k}="${v}"]`).join('')}`);

/** Waits until the grid has rendered its first page (or says the folder is empty) and the stream is live. */
async function galleryReady(page) {
  await page.waitForFunction(() => {
    const status = document.querySelector('[data-testid="list-status"]');
    return document.querySelector('[data-testid="tile"]') || (status && /empty/.test(status.textContent));
  }, null, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="live-state"]')?.dataset.state === 'live', null, { timeout: 15000 });
}

async function login(page, user, pass) {
  await page.getByTestId('login-user').fill(user);
  await page.getByTestId('login-password').fill(pass);
  await page.getByTestId('login-submit').click();
  // Either the form goes away or it shows why not.
  await page.waitForFunction(() => !document.querySelector('[data-testid="login-submit"]')
    || document.querySelector('[data-testid="login-error"]').textContent, null, { timeout: 15000 });
  const error = await page.evaluate(() => document.querySelector('[data-testid="login-error"]')?.textContent || '');
  if (error) throw new Error(`signing in as ${user} failed: ${error}`);
}

/** Opens the viewer of an item and waits for its detail (comments) to be loaded. */
async function openItem(page, id) {
  await tile(page, { 'item-id': id }).click();
  await page.getByTestId('viewer').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelector('#viewer [data-testid="comments"] li'), null, { timeout: 10000 });
}

const count = async (page, emoji) => Number(await page.getByTestId(`reaction-count-${emoji}`).textContent());
const pressed = async (page, emoji) => (await page.getByTestId(`reaction-${emoji}`).getAttribute('aria-pressed')) === 'true';

async function waitCount(page, emoji, want, timeout = 10000) {
  await page.waitForFunction(([e, n]) => Number(document.querySelector(`[data-testid="reaction-count-${e}"]`)?.textContent) === n,
    [emoji, want], { timeout }).catch(async () => {
    throw new Error(`the ${emoji} count stayed ${await count(page, emoji)}, expected ${want}`);
  });
}

/** Waits for an upload row to finish; fails fast when the row says it failed. */
async function waitUpload(page, name) {
  const bar = page.locator(`[data-testid="upload-progress"][data-name="${name}"]`);
  await bar.waitFor({ state: 'attached', timeout: 5000 });
  const handle = await page.waitForFunction((n) => {
    const p = document.querySelector(`[data-testid="upload-progress"][data-name="${n}"]`);
    return p && (p.dataset.state === 'failed' ? 'failed' : p.dataset.state === 'done' && p.value === p.max ? 'done' : false);
  }, name, { timeout: 60000 });
  const state = await handle.jsonValue();
  if (state !== 'done') throw new Error(`upload of ${name} failed: ${await bar.locator('xpath=..').textContent()}`);
  assert.equal(await bar.evaluate((p) => p.value / p.max), 1, 'progress reaches 100%');
}

async function main() {
  const base = need('NANOFS_URL').replace(/\/+$/, '');
  const gid = need('GALLERY_ID');
  const [user1, pass1, user2, pass2] = ['USER1', 'PASS1', 'USER2', 'PASS2'].map(need);
  const upload = need('UPLOAD_FILE');
  const bytes = fs.readFileSync(upload);
  const ext = path.extname(upload) || '.jpg';
  const stamp = `${Date.now().toString(36)}`;
  const galleryUrl = `${base}/g/${encodeURIComponent(gid)}`;
  Object.assign(results, { url: base, gallery: gid });

  const browser = await launch();
  const ctx1 = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  for (const c of [ctx1, ctx2]) c.setDefaultTimeout(15000);
  const p1 = watch('user1', await ctx1.newPage());
  const p2 = watch('user2', await ctx2.newPage());
  const transports = new Set();
  for (const p of [p1, p2]) { // a WebSocket counts once it brings something (a refused upgrade falls back to SSE)
    p.on('websocket', (ws) => { if (ws.url().includes('/events')) ws.on('framereceived', () => transports.add('websocket')); });
  }

  await step('login', async () => {
    // user1 goes through the gallery list, user2 through a deep link.
    await p1.goto(`${base}/`);
    await login(p1, user1, pass1);
    await p1.locator(`[data-testid="gallery-link"][data-gallery-id="${gid}"]`).click();
    await p2.goto(galleryUrl);
    await login(p2, user2, pass2);
    await Promise.all([galleryReady(p1), galleryReady(p2)]);
    assert.equal(new URL(p1.url()).pathname, `/g/${encodeURIComponent(gid)}`);
    // Informative only: how many of the first tiles have a BlurHash painted on their canvas.
    const placeholders = await p1.evaluate(() => [...document.querySelectorAll('[data-testid="tile"] canvas')].slice(0, 50)
      .filter((c) => c.getContext('2d').getImageData(16, 16, 1, 1).data[3] > 0).length);
    return { placeholders };
  });

  await step('roles', async () => {
    assert.ok(await p1.getByTestId('upload-button').isVisible(), 'the owner sees the upload button');
    assert.ok(!(await p2.getByTestId('upload-button').isVisible()), 'a viewer does not see the upload button');
    assert.ok(!(await p2.getByTestId('members-toggle').isVisible()), 'a viewer does not see the members panel toggle');
    await p1.getByTestId('members-toggle').click();
    await p1.getByTestId('members-panel').locator(`[data-testid="member"][data-user="${user1}"]`).waitFor();
    await p1.getByTestId('links-toggle').click();
    await p1.getByTestId('link-create').waitFor();
    assert.ok(await p1.getByTestId('links-panel').isVisible());
    await p1.getByTestId('members-toggle').click();
    await p1.getByTestId('links-toggle').click();
  });

  const uploaded = [];
  /** Drops a file on the drop zone: Playwright cannot drag OS files, so the page builds the DataTransfer. */
  async function dropUpload(name) {
    await p1.evaluate(({ b64, name: n }) => {
      const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([raw], n, { type: 'image/jpeg' }));
      const zone = document.querySelector('[data-testid="dropzone"]');
      for (const type of ['dragenter', 'dragover', 'drop']) {
        zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
      }
    }, { b64: bytes.toString('base64'), name });
    await waitUpload(p1, name);
    await tile(p1, { name }).waitFor({ state: 'attached', timeout: 15000 });
    const id = await tile(p1, { name }).getAttribute('data-item-id');
    uploaded.push({ name, id });
    return id;
  }

  // The scenario needs one item; an empty gallery gets the dropped file first.
  if (!(await tile(p1, {}).count())) await step('seed upload', async () => ({ id: await dropUpload(`seed-${stamp}${ext}`) }));

  const itemId = await tile(p1, {}).first().getAttribute('data-item-id');
  results.item = itemId;
  const text = `Hello from ${user1} at ${stamp}`;

  await step('comment and reaction live', async () => {
    await openItem(p1, itemId);
    await openItem(p2, itemId);
    assert.ok(!(await p2.getByTestId('annotate-draw').count()), 'a viewer cannot annotate');
    if (await pressed(p1, '🔥')) { // left over from an earlier run: start from "not reacted"
      await p1.getByTestId('reaction-🔥').click();
      await p1.waitForFunction(() => document.querySelector('[data-testid="reaction-🔥"]').getAttribute('aria-pressed') === 'false');
      await waitCount(p2, '🔥', (await count(p1, '🔥')));
    }
    const before = await count(p2, '🔥');
    await p1.getByTestId('comment-input').fill(text);
    await p1.getByTestId('comment-submit').click();
    await p1.getByTestId('comment').filter({ hasText: text }).waitFor();
    await p1.getByTestId('reaction-🔥').click();
    await waitCount(p1, '🔥', before + 1);
    assert.ok(await pressed(p1, '🔥'), 'user1 sees that they reacted');
    // user2 never reloads: the events stream brings both.
    await p2.getByTestId('comment').filter({ hasText: text }).waitFor({ timeout: 10000 });
    await waitCount(p2, '🔥', before + 1);
    assert.ok(!(await pressed(p2, '🔥')), 'user2 did not react');
    return { fire: before + 1 };
  });

  await step('keyboard', async () => {
    await p1.keyboard.press('Escape');
    await p1.getByTestId('viewer').waitFor({ state: 'hidden' });
    await p1.evaluate(() => document.activeElement && document.activeElement.blur());
    let onTile = false;
    for (let i = 0; i < 60 && !onTile; i++) {
      await p1.keyboard.press('Tab');
      onTile = await p1.evaluate(() => document.activeElement?.dataset.testid === 'tile');
    }
    assert.ok(onTile, 'Tab reaches a tile within 60 presses');
    const focused = await p1.evaluate(() => document.activeElement.dataset.itemId);
    await p1.keyboard.press('Enter');
    await p1.getByTestId('viewer').waitFor({ state: 'visible' });
    assert.equal(await p1.getByTestId('viewer').getAttribute('data-item-id'), focused, 'Enter opens the focused item');
    const total = await tile(p1, {}).count();
    if (total > 1) {
      await p1.keyboard.press('ArrowRight');
      await p1.waitForFunction((id) => document.querySelector('#viewer').dataset.itemId !== id, focused);
    }
    await p1.keyboard.press('Escape');
    await p1.getByTestId('viewer').waitFor({ state: 'hidden' });
    assert.ok(await p1.evaluate(() => document.activeElement?.dataset.testid === 'tile'), 'focus returns to a tile');
    await p2.keyboard.press('Escape');
  });

  await step('upload by drop', async () => {
    // Newest first, so the new tile lands on the loaded first page whatever the gallery's size.
    for (const p of [p1, p2]) {
      await p.getByTestId('sort').selectOption('date');
      await p.getByTestId('order').selectOption('desc');
      await galleryReady(p);
    }
    const name = `drop-${stamp}${ext}`;
    const id = await dropUpload(name);
    await tile(p2, { name }).waitFor({ state: 'attached', timeout: 10000 }); // the other user sees it live
    const thumb = await p1.waitForFunction((i) => {
      const img = document.querySelector(`[data-testid="tile"][data-item-id="${i}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }, id, { timeout: 10000 }).then(() => true, () => false);
    return { id, thumbnail: thumb };
  });

  await step('upload by file picker', async () => {
    const name = `pick-${stamp}${ext}`;
    await p1.getByTestId('upload-input').setInputFiles({ name, mimeType: 'image/jpeg', buffer: bytes });
    await waitUpload(p1, name);
    await tile(p1, { name }).waitFor({ state: 'attached', timeout: 15000 });
    uploaded.push({ name, id: await tile(p1, { name }).getAttribute('data-item-id') });
  });

  await step('phone', async () => {
    const ctx3 = await browser.newContext({ viewport: { width: 375, height: 667 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p3 = watch('phone', await ctx3.newPage());
    await p3.goto(galleryUrl);
    await login(p3, user1, pass1);
    await galleryReady(p3);
    const layout = await p3.evaluate(() => {
      const cells = document.querySelectorAll('[data-testid="tile"], [data-testid="folder"]');
      const tops = [...cells].slice(0, 12).map((t) => Math.round(t.getBoundingClientRect().top));
      const first = document.querySelector('[data-testid="tile"]').getBoundingClientRect();
      return { scroll: document.documentElement.scrollWidth, width: document.documentElement.clientWidth,
        columns: tops.filter((t) => t === tops[0]).length, tile: Math.round(first.width) };
    });
    assert.ok(layout.scroll <= layout.width, `no horizontal scroll at 375 px (scrollWidth ${layout.scroll} > ${layout.width})`);
    assert.ok(layout.columns >= 2 && layout.tile >= 80, `the grid adapts (${layout.columns} columns of ${layout.tile} px)`);
    await tile(p3, {}).first().click();
    await p3.getByTestId('viewer').waitFor({ state: 'visible' });
    const viewer = await p3.getByTestId('viewer').evaluate((d) => ({ scroll: d.scrollWidth, width: d.clientWidth }));
    assert.ok(viewer.scroll <= viewer.width + 1, `the viewer fits the phone (${viewer.scroll} > ${viewer.width})`);
    assert.ok(await p3.getByTestId('comment-input').isVisible() || (await p3.getByTestId('comment-input').count()) === 1);
    await p3.getByTestId('viewer-close').click();
    await p3.getByTestId('viewer').waitFor({ state: 'hidden' });
    await ctx3.close();
    delete pages.phone;
    return layout;
  });

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
  results.transport = transports.has('websocket') ? 'websocket' : 'sse';
  results.uploaded = uploaded;

  if (!process.env.KEEP) {
    // Best effort: leave the gallery as it was (the comment stays, as a trace of the run).
    results.cleanup = await p1.evaluate(async ({ g, ids }) => {
      const out = [];
      for (const id of ids) out.push((await fetch(`/api/galleries/${encodeURIComponent(g)}/items/${encodeURIComponent(id)}`, { method: 'DELETE' })).status);
      return out;
    }, { g: gid, ids: uploaded.filter((u) => u.id).map((u) => u.id) }).catch((e) => String(e));
  }
  results.ok = true;
}

await finish(main);
