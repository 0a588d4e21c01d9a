// Browser test of the gallery viewer's video player against a running sidecar: a packaged
// video plays through hls.js with a quality menu, drops to a lower rung when the network
// is throttled, starts on the lowest rung with Save-Data, lowers its cap on a low battery,
// and starts at the position in the URL.
//
//   NANOFS_URL=http://127.0.0.1:PORT GALLERY_ID=ID ITEM_ID=ID USER1=alice PASS1=… \
//   [SCREENSHOT_DIR=dir] [CHROMIUM=/usr/bin/chromium] node tests/browser/streaming.mjs
//
// ITEM_ID is a video of the gallery packaged with several rungs. Prints one JSON line;
// exits non-zero on failure.

import assert from 'node:assert/strict';
import { harness } from './harness.mjs';

const { results, pageErrors, need, step, watch, launch, finish } = harness('streaming');

/** Longest time from throttling the network to playing a lower rung. */
const SWITCH_MS = 2000;

const player = (page) => page.evaluate(() => {
  const p = window.__player;
  const v = document.querySelector('#viewer video');
  return p && { ...p, time: v ? v.currentTime : null, paused: v ? v.paused : null, hash: location.hash };
});

/** Waits until `pred(player state)` holds; fails with the last state. */
async function until(page, what, pred, timeout = 20000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await player(page);
    if (last && pred(last)) return last;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeout} ms; player: ${JSON.stringify(last)}`);
    await page.waitForTimeout(50);
  }
}

/** Opens the viewer on the item by its URL and starts playback once hls.js has the levels. */
async function openVideo(page, url) {
  await page.goto(url);
  await page.getByTestId('viewer').waitFor({ state: 'visible' });
  const s = await until(page, 'hls.js has the ladder', (p) => p.engine !== null && (p.engine !== 'hls' || p.levels.length > 0));
  assert.equal(s.engine, 'hls', `the packaged video plays through hls.js (engine ${s.engine}, error ${s.error})`);
  await page.evaluate(() => document.querySelector('#viewer video').play());
  return s;
}

/** A navigator.getBattery() that answers `level`, `charging`; window.__battery changes it. */
const batteryMock = ({ level, charging }) => {
  const b = new EventTarget();
  Object.assign(b, { level, charging, chargingTime: Infinity, dischargingTime: Infinity });
  window.__battery = b;
  Object.defineProperty(Navigator.prototype, 'getBattery', { value: () => Promise.resolve(b), configurable: true });
};

async function main() {
  const base = need('NANOFS_URL').replace(/\/+$/, '');
  const gid = need('GALLERY_ID');
  const item = need('ITEM_ID');
  const [user, pass] = ['USER1', 'PASS1'].map(need);
  const itemUrl = `${base}/g/${encodeURIComponent(gid)}?item=${encodeURIComponent(item)}`;

  const browser = await launch(['--autoplay-policy=no-user-gesture-required']);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  ctx.setDefaultTimeout(20000);
  const page = watch('desktop', await ctx.newPage());
  await step('login', async () => {
    await page.goto(`${base}/`);
    await page.getByTestId('login-user').fill(user);
    await page.getByTestId('login-password').fill(pass);
    await page.getByTestId('login-submit').click();
    await page.waitForFunction(() => !document.querySelector('[data-testid="login-submit"]'));
  });
  const session = await ctx.storageState();
  const context = async (name, options = {}, battery = null) => {
    const c = await browser.newContext({ viewport: { width: 1280, height: 800 }, storageState: session, ...options });
    c.setDefaultTimeout(20000);
    if (battery) await c.addInitScript(batteryMock, battery);
    return watch(name, await c.newPage());
  };

  let top;
  await step('plays through hls.js with a quality menu', async () => {
    const s = await openVideo(page, itemUrl);
    top = s.levels.length - 1;
    assert.ok(s.levels.length > 1, `several rungs (${JSON.stringify(s.levels)})`);
    const t1 = (await until(page, 'playback starts', (p) => p.time > 0.5)).time;
    const t2 = (await until(page, 'playback advances', (p) => p.time > t1 + 1)).time;
    const menu = page.getByLabel('Quality');
    assert.ok(await menu.isVisible(), 'the quality menu is shown');
    const options = await menu.locator('option').evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent })));
    const heights = s.levels.map((l) => l.height).sort((a, b) => b - a);
    assert.deepEqual(options.map((o) => o.value === 'auto' ? 'Auto' : o.text),
      ['Auto', ...heights.map((hgt) => `${hgt}p`)], `Auto, then each rung by height: ${JSON.stringify(options)}, levels ${heights}`);
    return { levels: s.levels.map((l) => l.height), start: s.start, cap: s.cap, time: t2 };
  });

  await step('throttled network: a lower rung within 2 s', async () => {
    const s = await until(page, 'the top rung plays', (p) => p.playing === top && !p.paused);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    const t0 = Date.now();
    // 1.2 Mbit/s: about half of the top rung's bit rate.
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 20, downloadThroughput: 150000, uploadThroughput: 150000, connectionType: 'cellular4g' });
    let after;
    try {
      after = await until(page, 'a lower rung plays', (p) => p.switches.some((w) => w.at >= t0 && w.level < top), 10000);
    } finally {
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    }
    const sw = after.switches.find((w) => w.at >= t0 && w.level < top);
    const ms = sw.at - t0;
    assert.ok(ms <= SWITCH_MS, `switched down to ${sw.height}p ${ms} ms after the throttle (at most ${SWITCH_MS})`);
    return { from: s.levels[top].height, to: sw.height, ms, cap: after.cap };
  });

  await step('Save-Data starts on the lowest rung', async () => {
    const p = await context('save-data');
    const cdp = await p.context().newCDPSession(p);
    await cdp.send('Network.enable');
    await cdp.send('Network.setExtraHTTPHeaders', { headers: { 'Save-Data': 'on' } });
    await openVideo(p, itemUrl);
    const s = await until(p, 'the first rung plays', (x) => x.switches.length > 0 && x.time > 1);
    const lowest = Math.min(...s.levels.map((l) => l.height));
    assert.equal(s.plan?.start_height, lowest, `the plan starts on ${lowest}p (${JSON.stringify(s.plan)})`);
    assert.equal(s.levels[s.switches[0].level].height, lowest, `it started on ${s.switches[0].height}p`);
    assert.ok(s.switches.every((w) => w.height === lowest), `it stays there (${JSON.stringify(s.switches)})`);
    await p.context().close();
    return { started: s.switches[0].height, cap: s.cap };
  });

  await step('a low battery lowers the cap', async () => {
    const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };
    const low = await context('battery-low', phone, { level: 0.1, charging: false });
    const full = await context('battery-full', phone, { level: 0.9, charging: false });
    await openVideo(low, itemUrl);
    await openVideo(full, itemUrl);
    const l = await until(low, 'a plan is applied', (x) => x.cap >= 0);
    const f = await until(full, 'a plan is applied', (x) => x.cap >= 0);
    assert.equal(f.cap, top, `a charged phone may play the top rung (cap ${f.cap}, plan ${JSON.stringify(f.plan)})`);
    assert.ok(l.cap < top, `a phone at 10 % caps below the top rung (cap ${l.cap}, plan ${JSON.stringify(l.plan)})`);
    // The same phone running down: the page hears it and lowers its cap.
    await full.evaluate(() => { Object.assign(window.__battery, { level: 0.1 }); window.__battery.dispatchEvent(new Event('levelchange')); });
    const g = await until(full, 'the cap follows the battery', (x) => x.cap < top, 5000);
    await low.context().close();
    await full.context().close();
    return { low: l.levels[l.cap].height, full: f.levels[f.cap].height, after: g.levels[g.cap].height };
  });

  await step('the position in the URL', async () => {
    const p = await context('position');
    await openVideo(p, `${itemUrl}#t=5`);
    const s = await until(p, 'playback starts', (x) => x.time > 0 && !x.paused);
    assert.ok(s.time >= 4.5 && s.time < 7, `started at ${s.time} s, the URL says 5`);
    const later = await until(p, 'the URL follows playback', (x) => Number(x.hash.replace('#t=', '')) >= 6, 6000);
    assert.match(later.hash, /^#t=\d+\.\d$/);
    await p.context().close();
    return { started: s.time, hash: later.hash };
  });

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
  results.ok = true;
}

await finish(main);
