// Browser test of live streams over WebRTC against a running sidecar whose gallery owns
// the streams DESK, CAM and EXTRA (in that order), with max_concurrent_streams = 2 and
// max_viewers_per_stream = 1:
//  - a contributor shares a fake screen from the gallery UI ("Share screen", WHIP);
//  - a viewer opening the gallery sees it live in the UI (frames advance, viewer count,
//    the DTLS-SRTP protection named), and a second viewer is refused (503, Retry-After);
//  - a fake camera publishes to CAM with the publish key (WHIP); a second publisher is
//    refused (409), a third stream over the limit too (503); a page plays CAM by WHEP
//    and its decoded frames advance;
//  - the owner removes the viewer from the gallery: the viewer's session ends at once;
//  - the test writes SIGNAL_DIR/hls and waits for SIGNAL_DIR/hls-done: ffmpeg decodes the
//    shared screen over low-latency HLS meanwhile; the contributor stops sharing; the owner
//    watches the camera over HLS in the UI;
//  - the test writes SIGNAL_DIR/revoke, then the stream's key is replaced from outside:
//    the camera's session ends.
//
//   NANOFS_URL=… GALLERY_ID=… USER1=alice PASS1=… USER2=bob PASS2=… USER3=carol PASS3=… \
//   DESK=… CAM=… EXTRA=… PUBLISH_KEY=… EXTRA_KEY=… SIGNAL_DIR=… node tests/browser/live.mjs
//
// Prints one JSON line; exits non-zero on failure.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { harness } from './harness.mjs';

const { results, need, step, watch, launch, finish } = harness('live');

/** Frames a page's connection `window[name]` has decoded. */
const decoded = (page, name) => page.evaluate(async (n) => {
  let frames = 0;
  (await window[n].getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0; });
  return frames;
}, name);

/** Waits until `fn()` is truthy; fails with `what`. */
async function until(page, what, fn, timeout = 15000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeout} ms`);
    await page.waitForTimeout(100);
  }
}

/**
 * In the page: an RTCPeerConnection kept as `window[name]`, which sends `send` tracks
 * ('camera') or receives video and audio, offered to `url` with `auth` as bearer token
 * (or the session cookie). Returns the status, the body and the session's URL.
 */
const connect = (page, name, url, { send = null, auth = null } = {}) => page.evaluate(async ({ name, url, send, auth }) => {
  const pc = new RTCPeerConnection();
  window[name] = pc;
  if (send === 'camera') {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    for (const t of media.getTracks()) pc.addTransceiver(t, { direction: 'sendonly' });
  } else {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => {
    if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const headers = { 'Content-Type': 'application/sdp' };
  if (auth) headers.Authorization = `Bearer ${auth}`;
  const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp, credentials: 'same-origin' });
  const body = await res.text();
  if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { status: res.status, body, location: res.headers.get('location'), retryAfter: res.headers.get('retry-after') };
}, { name, url, send, auth });

const state = (page, name) => page.evaluate((n) => window[n].connectionState, name);

/** Milliseconds until the frames decoded by `window[name]` stop advancing (none for 1 s). */
async function mediaStops(page, name, timeout = 5000) {
  const t0 = Date.now();
  let last = await decoded(page, name), since = Date.now();
  for (;;) {
    await page.waitForTimeout(100);
    const now = await decoded(page, name);
    if (now !== last) { last = now; since = Date.now(); }
    else if (Date.now() - since >= 1000) return since - t0;
    if (Date.now() - t0 > timeout) throw new Error(`frames still advance ${timeout} ms after access ended`);
  }
}

async function main() {
  const base = need('NANOFS_URL').replace(/\/+$/, '');
  const gid = need('GALLERY_ID');
  const [owner, ownerPass, viewer, viewerPass, contributor, contributorPass] =
    ['USER1', 'PASS1', 'USER2', 'PASS2', 'USER3', 'PASS3'].map(need);
  const [desk, cam, extra, key, extraKey, signals] = ['DESK', 'CAM', 'EXTRA', 'PUBLISH_KEY', 'EXTRA_KEY', 'SIGNAL_DIR'].map(need);
  const browser = await launch([
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--auto-select-desktop-capture-source=Entire screen', '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required',
  ]);
  const signedIn = async (label, user, pass) => {
    const ctx = await browser.newContext();
    const r = await ctx.request.post(`${base}/api/login`, { data: { user, password: pass } });
    assert.equal(r.status(), 200, `${user} signs in`);
    return watch(label, await ctx.newPage());
  };

  const sharer = await signedIn('sharer', contributor, contributorPass);
  await step('a contributor shares the screen from the gallery', async () => {
    await sharer.goto(`${base}/g/${gid}`);
    const btn = sharer.getByTestId('share-screen');
    await btn.waitFor({ state: 'visible' });
    await btn.click();
    await until(sharer, 'the button turns into "Stop sharing"', async () => (await btn.textContent()) === 'Stop sharing');
    await until(sharer, 'the screen is live', () => sharer.evaluate(
      async (url) => (await (await fetch(url)).json()).webrtc?.publishing === true, `${base}/api/live/${desk}`));
  });

  const watcher = await signedIn('viewer', viewer, viewerPass);
  await step('a viewer sees the screen live in the gallery', async () => {
    await watcher.goto(`${base}/g/${gid}`);
    await watcher.getByTestId('live-panel').waitFor({ state: 'visible' });
    const frames = () => watcher.evaluate(() => document.querySelector('[data-testid=live-video]').getVideoPlaybackQuality().totalVideoFrames);
    const first = await until(watcher, 'the first frames', frames);
    const later = await until(watcher, `frames advance (from ${first})`, async () => {
      const n = await frames();
      return n >= first + 10 && n;
    });
    const security = await until(watcher, 'the protection is named', async () => {
      const t = await watcher.getByTestId('live-security').textContent();
      return t.includes('DTLS-SRTP') && t;
    });
    const count = await until(watcher, 'the viewer count', async () => {
      const t = await watcher.getByTestId('live-viewers').textContent();
      return t === '1 watching' && t;
    });
    return { frames: later, security, count };
  });

  const page = watch('camera', await (await browser.newContext()).newPage());
  await page.goto(`${base}/healthz`);
  await step('a second viewer of the screen is refused with 503 and Retry-After', async () => {
    const r = await connect(watcher, 'second', `/whep/${desk}`);
    assert.equal(r.status, 503, r.body);
    assert.ok(Number(r.retryAfter) > 0, 'Retry-After is set');
    assert.match(r.body, /max_viewers_per_stream/);
  });

  await step('a camera publishes with the publish key', async () => {
    const r = await connect(page, 'camera', `/whip/${cam}`, { send: 'camera', auth: key });
    assert.equal(r.status, 201, r.body);
    assert.match(r.location, new RegExp(`^/whip/${cam}/[0-9a-f]{32}$`));
    await until(page, 'the camera connects', async () => (await state(page, 'camera')) === 'connected');
  });

  await step('a second publisher and a stream over the limit are refused', async () => {
    const busy = await connect(page, 'second', `/whip/${cam}`, { send: 'camera', auth: key });
    assert.equal(busy.status, 409, busy.body);
    const over = await connect(page, 'third', `/whip/${extra}`, { send: 'camera', auth: extraKey });
    assert.equal(over.status, 503, over.body);
    assert.ok(Number(over.retryAfter) > 0, 'Retry-After is set');
    const wrong = await connect(page, 'fourth', `/whip/${cam}`, { send: 'camera', auth: extraKey });
    assert.equal(wrong.status, 401, wrong.body);
  });

  await step('the viewer plays the camera by WHEP and its frames advance', async () => {
    const r = await connect(watcher, 'whep', `/whep/${cam}`);
    assert.equal(r.status, 201, r.body);
    const first = await until(watcher, 'the first decoded frames', () => decoded(watcher, 'whep'));
    const later = await until(watcher, `decoded frames advance (from ${first})`, async () => {
      const n = await decoded(watcher, 'whep');
      return n >= first + 10 && n;
    });
    const codec = await watcher.evaluate(async () => {
      let c = null;
      (await window.whep.getStats()).forEach((s) => { if (s.type === 'codec' && s.mimeType.startsWith('video/')) c = s.mimeType; });
      return c;
    });
    return { frames: later, codec };
  });

  const admin = await signedIn('owner', owner, ownerPass);
  await step('removing the viewer from the gallery ends their sessions at once', async () => {
    const r = await admin.request.delete(`${base}/api/galleries/${gid}/members/${viewer}`);
    assert.equal(r.status(), 200, await r.text());
    const t0 = Date.now();
    // The server stops sending at once; the browser's connection state follows when its
    // ICE consent checks go unanswered (a few seconds): WebRTC has no message for "ended".
    const stopped = await mediaStops(watcher, 'whep');
    const panelMs = await until(watcher, 'the live panel closes', async () => (await watcher.getByTestId('live-panel').isHidden()) && Date.now() - t0, 10000);
    const ended = await until(watcher, 'the WHEP connection ends', async () => {
      const s = await state(watcher, 'whep');
      return ['closed', 'failed', 'disconnected'].includes(s) && s;
    }, 15000);
    return { media_stopped_ms: stopped, panel_ms: panelMs, whep_state: ended, whep_ms: Date.now() - t0 };
  });

  await step('ffmpeg reads the shared screen back over low-latency HLS while it is live', async () => {
    fs.writeFileSync(path.join(signals, 'hls'), '');
    const done = path.join(signals, 'hls-done');
    await until(page, 'ffmpeg is done', () => fs.existsSync(done), 60000);
    const said = fs.readFileSync(done, 'utf8');
    assert.match(said, /^ok/, said);
    return { ffmpeg: said.trim() };
  });

  await step('the contributor stops sharing: the screen\'s stream ends', async () => {
    await sharer.getByTestId('share-screen').click();
    assert.equal(await sharer.getByTestId('share-screen').textContent(), 'Share screen');
    await until(sharer, 'the stream ends after its grace period', () => sharer.evaluate(
      async (url) => (await (await fetch(url)).json()).live === null, `${base}/api/live/${desk}`));
  });

  await step('the owner watches the camera over low-latency HLS in the UI', async () => {
    await admin.addInitScript(() => localStorage.setItem('nanofs.liveMode', 'hls'));
    await admin.goto(`${base}/g/${gid}`);
    await admin.getByTestId('live-panel').waitFor({ state: 'visible' });
    assert.equal(await admin.getByTestId('live-panel').locator('h2').textContent(), `Live ${cam}`);
    const frames = () => admin.evaluate(() => document.querySelector('[data-testid=live-video]').getVideoPlaybackQuality().totalVideoFrames);
    const first = await until(admin, 'the first frames over HLS', frames, 20000);
    // A player joining a live stream may wait for its next part before it moves on.
    const player = () => admin.evaluate(() => {
      const v = document.querySelector('[data-testid=live-video]');
      const b = v.buffered;
      return { time: v.currentTime, ready: v.readyState, paused: v.paused, buffered: [...Array(b.length).keys()].map((i) => [b.start(i), b.end(i)]), errors: window.__live?.errors, latency: window.__live?.hls?.latency };
    });
    const advance = async (from) => until(admin, `frames advance over HLS (from ${from})`, async () => {
      const n = await frames();
      return n >= from + 10 && n;
    }, 15000);
    // Known open issue (docs/live.md): with both cores starved, hls.js can keep only the
    // first part of each segment and stall; the stall is reported, and a reload must play.
    let stalled = null;
    let later = await advance(first).catch(async () => { stalled = await player(); return null; });
    if (later === null) {
      await admin.reload();
      await admin.getByTestId('live-panel').waitFor({ state: 'visible' });
      const again = await until(admin, 'the first frames over HLS after a reload', frames, 20000);
      later = await advance(again).catch(async (e) => { throw new Error(`${e.message}; player: ${JSON.stringify(await player())}`); });
    }
    assert.match(await admin.getByTestId('live-security').textContent(), /plain HTTP/);
    assert.match(await admin.getByTestId('live-mode').textContent(), /WebRTC/);
    const latency = await admin.evaluate(() => window.__live?.hls?.latency);
    return { frames: later, latency_s: latency, stalled_before_reload: stalled };
  });

  await step('a replaced publish key ends the camera session', async () => {
    fs.writeFileSync(path.join(signals, 'revoke'), '');
    const t0 = Date.now();
    await until(page, 'the camera session ends', async () => ['closed', 'failed', 'disconnected'].includes(await state(page, 'camera')), 15000);
    return { camera_ms: Date.now() - t0 };
  });

  results.ok = true;
}

finish(main);
