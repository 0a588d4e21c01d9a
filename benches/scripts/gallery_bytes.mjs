// Bytes Chromium transfers to load a gallery, per device profile (benches/scripts/gallery_bytes.sh
// sets up the gallery): each profile gets a fresh context with its viewport, DPR, headers,
// battery and throttled network; the page scrolls to the end until every tile's picture
// has loaded, opens the first item in the viewer and waits for the network to settle
// (the prefetch included). Every response's encoded bytes (CDP Network.loadingFinished:
// headers and body as they crossed the wire) are summed. The baseline is a naive gallery
// that shows the originals: the sum of the items' file sizes, plus the same page bytes.
//
//   NANOFS_URL=… GALLERY_ID=… USER1=… PASS1=… node benches/scripts/gallery_bytes.mjs
//
// playwright-core comes from tests/browser/node_modules.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('../../tests/browser/node_modules/playwright-core');

const base = process.env.NANOFS_URL.replace(/\/+$/, '');
const gid = process.env.GALLERY_ID;
const galleryUrl = `${base}/g/${encodeURIComponent(gid)}`;
const mbit = (m) => Math.round((m * 1e6) / 8); // bytes per second

/** A navigator.getBattery() that answers `level`, `charging`. */
const batteryMock = ({ level, charging }) => {
  const b = Object.assign(new EventTarget(), { level, charging, chargingTime: Infinity, dischargingTime: Infinity });
  Object.defineProperty(Navigator.prototype, 'getBattery', { value: () => Promise.resolve(b), configurable: true });
};

const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };
// As the table test of src/adapt.rs.
const profiles = [
  { name: 'phone, 3G, Save-Data', context: { ...phone, extraHTTPHeaders: { 'Save-Data': 'on' } },
    net: { down: 1.6, up: 0.75, latency: 300, type: 'cellular3g' } },
  { name: 'phone, 4G, battery 15 %', context: phone, battery: { level: 0.15, charging: false },
    net: { down: 9, up: 3, latency: 100, type: 'cellular4g' } },
  { name: 'laptop, wifi (DPR 2, 1440 px)', context: { viewport: { width: 1440, height: 900 }, deviceScaleFactor: 2 },
    battery: { level: 0.8, charging: false }, net: { down: 30, up: 15, latency: 50, type: 'wifi' } },
  { name: '4K desktop, ethernet (DPR 1.5, 2560 px)', context: { viewport: { width: 2560, height: 1440 }, deviceScaleFactor: 1.5 },
    net: { down: 500, up: 500, latency: 5, type: 'ethernet' } },
];

const fmtBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`);

async function run(browser, session, items, p) {
  const ctx = await browser.newContext({ ...p.context, storageState: session });
  ctx.setDefaultTimeout(120000);
  if (p.battery) await ctx.addInitScript(batteryMock, p.battery);
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: p.net.latency, downloadThroughput: mbit(p.net.down), uploadThroughput: mbit(p.net.up), connectionType: p.net.type,
  });
  const reqs = new Map(); // requestId -> {url, type, width, bytes}
  const inflight = new Set();
  let lastActivity = Date.now();
  let phase = 'grid';
  cdp.on('Network.requestWillBeSent', ({ requestId, request }) => {
    if (!reqs.has(requestId)) reqs.set(requestId, { url: request.url, bytes: 0, phase });
    if (!request.url.includes('/events')) inflight.add(requestId);
    lastActivity = Date.now();
  });
  cdp.on('Network.responseReceived', ({ requestId, response: r }) => {
    const e = reqs.get(requestId);
    if (!e) return;
    const hdr = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v]));
    e.type = (hdr['content-type'] || '').split(';')[0];
    e.width = Number(hdr['x-render-width'] || 0);
    e.cached = r.fromDiskCache;
  });
  cdp.on('Network.loadingFinished', ({ requestId, encodedDataLength }) => {
    const e = reqs.get(requestId);
    if (e) e.bytes = encodedDataLength;
    inflight.delete(requestId);
    lastActivity = Date.now();
  });
  cdp.on('Network.loadingFailed', ({ requestId }) => { inflight.delete(requestId); lastActivity = Date.now(); });

  let adapt = null; // the page's last plan, with the hints it was made from
  page.on('response', async (r) => {
    if (r.url().includes('/api/adapt')) adapt = await r.json().catch(() => adapt);
  });
  const t0 = Date.now();
  await page.goto(galleryUrl);
  await page.waitForFunction(() => document.querySelector('[data-testid="tile"] img'));
  // Scroll to the end until every tile's picture is in.
  for (;;) {
    const s = await page.evaluate(() => {
      const imgs = [...document.querySelectorAll('[data-testid="tile"] img')];
      window.scrollBy(0, window.innerHeight * 0.8);
      return { total: imgs.length, loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length };
    });
    if (s.total >= items.length && s.loaded === s.total) break;
    if (Date.now() - t0 > 600000) throw new Error(`${p.name}: tiles never loaded: ${JSON.stringify(s)}`);
    await page.waitForTimeout(250);
  }
  const tilesMs = Date.now() - t0;
  await page.evaluate(() => window.scrollTo(0, 0));
  phase = 'viewer';
  await page.locator('[data-testid="tile"]').first().click();
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid="viewer-picture"]');
    return img && img.currentSrc && img.complete && img.naturalWidth > 0;
  });
  // The prefetch: wait until the network has been quiet for 2 s.
  while (inflight.size || Date.now() - lastActivity < 2000) await page.waitForTimeout(200);
  await ctx.close();
  const plan = adapt?.plan ?? {};

  const all = [...reqs.values()];
  const sum = (xs) => xs.reduce((a, x) => a + x.bytes, 0);
  const renders = all.filter((x) => x.url.includes('/render?'));
  const originals = all.filter((x) => new URL(x.url).pathname.endsWith('/content'));
  const thumbs = all.filter((x) => x.url.includes('/thumbnail'));
  const widths = (xs) => [...new Set(xs.map((x) => x.width))].sort((a, b) => a - b);
  const tileRenders = renders.filter((x) => x.phase === 'grid');
  const viewerRenders = renders.filter((x) => x.phase === 'viewer');
  return {
    name: p.name,
    total: sum(all),
    pictures: sum(renders) + sum(originals) + sum(thumbs),
    page: sum(all) - sum(renders) - sum(originals) - sum(thumbs),
    renders: renders.length,
    originals: originals.length,
    formats: [...new Set(renders.map((x) => x.type.replace('image/', '')))].join(', '),
    tileWidths: widths(tileRenders),
    viewerWidths: widths(viewerRenders),
    prefetch: plan.prefetch,
    imageDpr: plan.image_dpr,
    hints: adapt?.hints,
    tilesSeconds: tilesMs / 1000,
  };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const login = await browser.newContext();
  const lp = await login.newPage();
  await lp.goto(`${base}/`);
  await lp.getByTestId('login-user').fill(process.env.USER1);
  await lp.getByTestId('login-password').fill(process.env.PASS1);
  await lp.getByTestId('login-submit').click();
  await lp.waitForFunction(() => !document.querySelector('[data-testid="login-submit"]'));
  const items = (await lp.evaluate(async (g) => (await (await fetch(`/api/galleries/${g}/items?limit=500`)).json()).items, gid));
  const session = await login.storageState();
  await login.close();
  const originalBytes = items.reduce((a, it) => a + it.size, 0);

  const rows = [];
  for (const p of profiles) {
    console.error(`profile: ${p.name}`);
    rows.push(await run(browser, session, items, p));
  }
  console.log(`${items.length} photos, originals ${fmtBytes(originalBytes)} in all (${fmtBytes(originalBytes / items.length)} each on average).`);
  console.log('Baseline per profile: the originals (a naive gallery shows each file in its tile; the viewer reuses it) plus the same page bytes.\n');
  console.log('| profile | bytes transferred | of which pictures | baseline (originals) | ratio | render format | tile width (px) | viewer width (px) | density | prefetch |');
  console.log('|---|---:|---:|---:|---:|---|---|---|---:|---:|');
  for (const r of rows) {
    const baseline = originalBytes + r.page;
    console.log(`| ${r.name} | ${fmtBytes(r.total)} | ${fmtBytes(r.pictures)} | ${fmtBytes(baseline)} | ${(r.total / baseline * 100).toFixed(2)} % | ${r.formats} | ${r.tileWidths.join(', ')} | ${r.viewerWidths.join(', ')} | ${r.imageDpr} | ${r.prefetch} |`);
  }
  console.log(`\n${JSON.stringify(rows)}`);
} finally {
  await browser.close();
}
