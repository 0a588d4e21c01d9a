// Browser test of the gallery's pictures against a running sidecar: tiles load renders
// sized by srcset/sizes (AVIF, as Chromium's Accept names it; never the original), each
// render's width is the candidate next to the tile's slot in device pixels, a phone at
// DPR 3 spends more pixels per tile than a desktop at DPR 1 and fewer under Save-Data;
// the viewer shows a render at its displayed size with a link to the original, and its
// prefetch of the next pictures is what the viewer then shows (a cache hit).
//
//   NANOFS_URL=http://127.0.0.1:PORT GALLERY_ID=ID USER1=alice PASS1=… \
//   [SCREENSHOT_DIR=dir] [CHROMIUM=/usr/bin/chromium] node tests/browser/pictures.mjs
//
// The gallery holds only indexed pictures, landscape and wider than 960 px. Prints one
// JSON line; exits non-zero on failure.

import assert from 'node:assert/strict';
import { harness } from './harness.mjs';

const { results, pageErrors, need, step, watch, launch, finish } = harness('pictures');

const TILE_WIDTHS = [320, 480, 640, 960]; // as web/app.js
const VIEWER_WIDTHS = [640, 960, 1280, 1920, 2560, 3840];

/** The candidates of `widths` for a picture `own` pixels wide (as srcsetOf in web/app.js). */
const candidates = (widths, own) => [...widths.filter((w) => w < own), ...(own <= widths[widths.length - 1] ? [own] : [])];

/** Whether `chosen` is a candidate next to `slot` device pixels: the smallest at or above it, or the one below that. */
function adjacent(widths, own, slot, chosen) {
  const c = candidates(widths, own);
  const i = c.findIndex((w) => w >= slot);
  const ok = i < 0 ? [c[c.length - 1]] : [c[i], c[i - 1]].filter(Boolean);
  return ok.includes(chosen);
}

/** A page of `ctx` that records every response (and whether the network or a cache answered it). */
async function recorded(name, ctx) {
  const page = watch(name, await ctx.newPage());
  const log = [];
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.responseReceived', ({ response: r }) => {
    const hdr = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v]));
    log.push({ url: r.url, status: r.status, type: hdr['content-type'] || '', width: Number(hdr['x-render-width'] || 0),
      etag: hdr.etag || '', network: !r.fromDiskCache && !r.fromServiceWorker && !r.fromPrefetchCache });
  });
  return { page, log, cdp };
}

/** Scrolls the grid to its end until every tile's picture has loaded. */
async function loadAllTiles(page) {
  await page.waitForFunction(() => document.querySelector('[data-testid="tile"] img'), null, { timeout: 20000 });
  const end = Date.now() + 60000;
  for (;;) {
    const state = await page.evaluate(() => {
      const imgs = [...document.querySelectorAll('[data-testid="tile"] img')];
      const status = document.querySelector('[data-testid="list-status"]')?.textContent || '';
      window.scrollBy(0, window.innerHeight * 0.8);
      return { total: imgs.length, loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length, status };
    });
    if (state.total && state.loaded === state.total && /(\d+) of \1 items/.test(state.status)) return state;
    if (Date.now() > end) throw new Error(`tiles never all loaded: ${JSON.stringify(state)}`);
    await page.waitForTimeout(200);
  }
}

/** Each tile: its item, the render it shows, its slot (sizes, CSS px) and width on screen. */
const tiles = (page) => page.evaluate(() => [...document.querySelectorAll('[data-testid="tile"]')].map((t) => {
  const img = t.querySelector('img');
  return { id: t.dataset.itemId, src: img.currentSrc, sizes: parseFloat(img.sizes), shown: t.getBoundingClientRect().width };
}));

const widthOf = (url) => Number(new URL(url).searchParams.get('w'));

async function main() {
  const base = need('NANOFS_URL').replace(/\/+$/, '');
  const gid = need('GALLERY_ID');
  const [user, pass] = ['USER1', 'PASS1'].map(need);
  const galleryUrl = `${base}/g/${encodeURIComponent(gid)}`;

  const browser = await launch();
  const login = await browser.newContext();
  const lp = await login.newPage();
  await lp.goto(`${base}/`);
  await lp.getByTestId('login-user').fill(user);
  await lp.getByTestId('login-password').fill(pass);
  await lp.getByTestId('login-submit').click();
  await lp.waitForFunction(() => !document.querySelector('[data-testid="login-submit"]'));
  const items = new Map((await lp.evaluate(async (g) => (await (await fetch(`/api/galleries/${g}/items?limit=500`)).json()).items, gid))
    .map((it) => [it.id, it]));
  const session = await login.storageState();
  await login.close();
  assert.ok(items.size >= 4, `a few pictures to look at (${items.size})`);
  for (const it of items.values()) assert.ok(it.width > 960 && it.width > it.height, `${it.name}: landscape, wider than 960 px`);

  const devices = {
    desktop: { viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 1 },
    phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true },
    'phone-save-data': { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true,
      extraHTTPHeaders: { 'Save-Data': 'on' } },
  };
  const seen = {};
  for (const [name, options] of Object.entries(devices)) {
    await step(`tiles: ${name}`, async () => {
      const ctx = await browser.newContext({ ...options, storageState: session });
      ctx.setDefaultTimeout(20000);
      const { page, log } = await recorded(name, ctx);
      await page.goto(galleryUrl);
      await loadAllTiles(page);
      const dpr = options.deviceScaleFactor;
      const shown = await tiles(page);
      const picked = [];
      for (const t of shown) {
        const it = items.get(t.id);
        assert.match(t.src, /\/render\?w=\d+&dpr=1/, `${it.name}: the tile shows a render (${t.src})`);
        const r = log.find((x) => x.url === t.src && x.status === 200);
        assert.ok(r, `${it.name}: the render's response was seen`);
        assert.equal(r.type, 'image/avif', `${it.name}: Chromium's Accept names AVIF (${r.type})`);
        const w = widthOf(t.src);
        assert.equal(r.width, w, `${it.name}: the render is as wide as its w descriptor`);
        // The slot: the tile's width, times the aspect (cover fills the square by height).
        const slot = t.shown * (it.width / it.height);
        const spent = name === 'phone-save-data' ? 1 : dpr; // data saver spends one device pixel per CSS pixel
        assert.ok(Math.abs(t.sizes * dpr - slot * spent) <= dpr * 2,
          `${it.name}: sizes ${t.sizes} px at DPR ${dpr} is the slot ${slot.toFixed(1)} CSS px at density ${spent}`);
        assert.ok(adjacent(TILE_WIDTHS, it.width, slot * spent, w),
          `${it.name}: ${w} px is a candidate next to the slot of ${(slot * spent).toFixed(0)} device px`);
        if (name === 'phone-save-data') assert.match(r.etag, /-q42\.avif"$/, `Save-Data: lower quality (${r.etag})`);
        picked.push({ w, perCss: w / t.shown });
      }
      const originals = log.filter((x) => new URL(x.url).pathname.endsWith('/content'));
      assert.deepEqual(originals.map((x) => x.url), [], 'no tile asks for an original');
      const thumbs = log.filter((x) => x.url.includes('/thumbnail'));
      assert.deepEqual(thumbs.map((x) => x.url), [], 'picture tiles skip the thumbnail');
      seen[name] = { ctx, page, log, picked, dpr };
      const widths = [...new Set(picked.map((p) => p.w))].sort((a, b) => a - b);
      return { tiles: shown.length, widths, tile_css: Math.round(shown[0].shown) };
    });
  }

  await step('density: a phone at DPR 3 spends more pixels per tile, fewer under Save-Data', async () => {
    const median = (xs) => xs.map((x) => x.perCss).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const [d, p, s] = ['desktop', 'phone', 'phone-save-data'].map((n) => median(seen[n].picked));
    assert.ok(p >= 2 * d, `device px per CSS px of a tile: phone ${p.toFixed(2)} >= 2 x desktop ${d.toFixed(2)}`);
    const maxSave = Math.max(...seen['phone-save-data'].picked.map((x) => x.w));
    const minPhone = Math.min(...seen.phone.picked.map((x) => x.w));
    assert.ok(maxSave < minPhone, `Save-Data tiles (at most ${maxSave} px) are narrower than the phone's (at least ${minPhone} px)`);
    return { desktop: d, phone: p, save_data: s };
  });

  const viewerWidths = {};
  for (const name of ['desktop', 'phone-save-data']) {
    await step(`viewer: ${name}`, async () => {
      const { page, log } = seen[name];
      const first = (await tiles(page))[0];
      const it = items.get(first.id);
      await page.locator(`[data-testid="tile"][data-item-id="${first.id}"]`).click();
      await page.getByTestId('viewer').waitFor({ state: 'visible' });
      await page.waitForFunction(() => {
        const img = document.querySelector('[data-testid="viewer-picture"]');
        return img && img.currentSrc && img.complete && img.naturalWidth > 0;
      }, null, { timeout: 30000 });
      const v = await page.evaluate(() => {
        const img = document.querySelector('[data-testid="viewer-picture"]');
        const a = document.querySelector('[data-testid="viewer-original"]');
        const wrap = img.parentElement;
        return { src: img.currentSrc, sizes: parseFloat(img.sizes), shown: img.getBoundingClientRect().width,
          original: a.href, visible: !a.hidden && a.getBoundingClientRect().width > 0, layers: getComputedStyle(wrap).backgroundImage };
      });
      assert.match(v.src, /\/render\?w=\d+&dpr=1/, `the viewer shows a render (${v.src})`);
      assert.ok(v.original.endsWith(`/items/${first.id}/content`) && v.visible, `a visible link to the original (${v.original})`);
      assert.match(v.layers, /thumbnail\?size=1024.*data:image\/png/, 'the 1024 thumbnail over the BlurHash behind it');
      const w = widthOf(v.src);
      const spent = name === 'phone-save-data' ? 1 : seen[name].dpr;
      assert.ok(Math.abs(v.sizes * seen[name].dpr - v.shown * spent) <= 2 * seen[name].dpr,
        `sizes ${v.sizes} is the displayed width ${v.shown.toFixed(1)} at density ${spent}`);
      assert.ok(adjacent(VIEWER_WIDTHS, it.width, v.shown * spent, w), `${w} px is next to ${(v.shown * spent).toFixed(0)} device px`);
      const r = log.find((x) => x.url === v.src && x.status === 200);
      assert.equal(r?.type, 'image/avif');
      viewerWidths[name] = w;
      const originals = log.filter((x) => new URL(x.url).pathname.endsWith('/content'));
      assert.deepEqual(originals.map((x) => x.url), [], 'the original is not downloaded');
      return { width: w, shown: Math.round(v.shown) };
    });
  }

  await step('viewer: Save-Data shows a narrower picture than the desktop', async () => {
    assert.ok(viewerWidths['phone-save-data'] < viewerWidths.desktop, JSON.stringify(viewerWidths));
  });

  await step('prefetch: the next picture is what the viewer then shows', async () => {
    const { page, log } = seen.desktop;
    const plan = await page.evaluate(() => fetch('/api/adapt').then((r) => r.json()).then((j) => j.plan));
    assert.ok(plan.prefetch >= 1, `the desktop prefetches (${JSON.stringify(plan)})`);
    const order = (await tiles(page)).map((t) => t.id);
    const next = items.get(order[1]);
    const nextRenders = () => log.filter((x) => x.url.includes(`/items/${next.id}/render?`) && widthOf(x.url) >= VIEWER_WIDTHS[0]);
    const end = Date.now() + 30000;
    while (!nextRenders().length) {
      if (Date.now() > end) throw new Error('the next picture was not prefetched');
      await page.waitForTimeout(100);
    }
    const prefetched = nextRenders()[0].url;
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((id) => document.querySelector('#viewer')?.dataset.itemId === id, next.id);
    await page.waitForFunction(() => {
      const img = document.querySelector('[data-testid="viewer-picture"]');
      return img && img.currentSrc && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 30000 });
    const src = await page.evaluate(() => document.querySelector('[data-testid="viewer-picture"]').currentSrc);
    assert.equal(src, prefetched, 'the viewer shows the prefetched render');
    const fetched = log.filter((x) => x.url === src && x.network).length;
    assert.equal(fetched, 1, `the render crossed the network once (${fetched})`);
    return { prefetch: plan.prefetch, width: widthOf(src) };
  });

  for (const { ctx } of Object.values(seen)) await ctx.close();
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
  results.ok = true;
}

await finish(main);
