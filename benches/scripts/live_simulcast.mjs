// Time from a bandwidth drop to a lower simulcast layer, as a WebRTC viewer sees it.
// A fake 1280x720 camera publishes three simulcast layers (h, m: half, l: quarter size) by
// WHIP; a viewer in a second browser context plays the stream by WHEP and reports the
// width of each decoded frame (getStats, every 25 ms). Each round, once the viewer has
// the best layer, everything the sidecar sends is limited to RATE_KBIT (default: 60 % of
// the best layer's rate, as measured at the publisher; an HTB class on
// this network namespace's loopback, by the sidecar's UDP port: tc), and the time from
// that moment to the first smaller decoded frame is the switch time; then the limit goes
// and the viewer climbs back (that time is reported too; climbing waits on purpose).
//
//   NANOFS_URL=… STREAM=… KEY=… TOKEN=… PORT=<sidecar UDP port> [RATE_KBIT] [ROUNDS=5] \
//   node benches/scripts/live_simulcast.mjs     (as root, inside its own network namespace)
//
// Prints one JSON line: {layers, layer_kbit, rate_kbit, down_ms: [...], up_ms: [...]}.

import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from '../../tests/browser/node_modules/playwright-core/index.mjs';

const base = process.env.NANOFS_URL.replace(/\/+$/, '');
const [stream, key, token, port] = [process.env.STREAM, process.env.KEY, process.env.TOKEN, process.env.PORT];
let rate = Number(process.env.RATE_KBIT || 0);
const rounds = Number(process.env.ROUNDS || 5);
const tc = (args) => execSync(`tc ${args}`, { stdio: 'pipe' });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--allow-loopback-in-peer-connection',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'],
});

/** A browser context whose pages can signal (benches/scripts/signal.js). */
async function context(options = {}) {
  const c = await browser.newContext(options);
  await c.addInitScript({ path: fileURLToPath(new URL('./signal.js', import.meta.url)) });
  return c;
}

const publisher = await (await context()).newPage();
await publisher.goto(`${base}/healthz`);
await publisher.evaluate(async ({ stream, key }) => {
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 } });
  const pc = new RTCPeerConnection();
  pc.addTransceiver(media.getVideoTracks()[0], {
    direction: 'sendonly',
    sendEncodings: [
      { rid: 'h', maxBitrate: 1_500_000 },
      { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 400_000 },
      { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 120_000 },
    ],
  });
  await window.signal(`/whip/${stream}`, key, pc);
  window.pc = pc;
}, { stream, key });

const viewer = await (await context()).newPage();
await viewer.goto(`${base}/healthz`);
await viewer.evaluate(async ({ stream, token }) => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true;
  document.body.append(video);
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
  await window.signal(`/whep/${stream}`, token, pc);
  window.width = 0;
  setInterval(async () => {
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.frameWidth) window.width = s.frameWidth;
    }
  }, 25);
}, { stream, token });

const width = () => viewer.evaluate(() => window.width);

/** The publisher's layers' rates, kbit/s, over two seconds. */
async function layerRates() {
  const sample = () => publisher.evaluate(async () => {
    const out = {};
    for (const s of (await window.pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video') out[s.rid] = s.bytesSent;
    }
    return out;
  });
  const a = await sample();
  await new Promise((r) => setTimeout(r, 2000));
  const b = await sample();
  return Object.fromEntries(Object.keys(b).map((rid) => [rid, Math.round(((b[rid] - (a[rid] || 0)) * 8) / 2000)]));
}
/** Waits until `ok(width)` holds; returns when, or throws after `limit` ms. */
async function until(ok, limit, what) {
  const t0 = Date.now();
  for (;;) {
    const w = await width();
    if (ok(w)) return Date.now();
    if (Date.now() - t0 > limit) throw new Error(`${what}: width still ${w} after ${limit} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const limit = () => {
  tc('qdisc add dev lo root handle 1: htb default 10');
  tc('class add dev lo parent 1: classid 1:10 htb rate 10gbit');
  tc(`class add dev lo parent 1: classid 1:20 htb rate ${rate}kbit ceil ${rate}kbit`);
  // A bottleneck's buffer of about 50 ms, as on a home link, not seconds of queue.
  tc('qdisc add dev lo parent 1:20 handle 20: pfifo limit 8');
  tc(`filter add dev lo parent 1: protocol ip u32 match ip sport ${port} 0xffff flowid 1:20`);
};
const unlimit = () => tc('qdisc del dev lo root');

await until((w) => w >= 1280, 60_000, 'the best layer');
const rates = await layerRates();
// The drop: to 60 % of what the best layer sends (unless RATE_KBIT says otherwise).
if (!rate) rate = Math.max(100, Math.round(rates.h * 0.6));
const down = [];
const up = [];
try {
  for (let r = 0; r < rounds; r++) {
    await until((w) => w >= 1280, 60_000, 'the best layer');
    await new Promise((res) => setTimeout(res, 3000));
    const t0 = Date.now();
    limit();
    down.push((await until((w) => w > 0 && w < 1280, 20_000, 'a lower layer')) - t0);
    await new Promise((res) => setTimeout(res, 5000));
    const t1 = Date.now();
    unlimit();
    up.push((await until((w) => w >= 1280, 60_000, 'back to the best layer')) - t1);
  }
} finally {
  try { unlimit(); } catch { /* no limit in place */ }
}
const layers = await publisher.evaluate(async () => {
  const out = [];
  for (const s of (await window.pc.getStats()).values()) {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.push(`${s.rid}:${s.frameWidth}x${s.frameHeight}`);
  }
  return out.sort();
});
await browser.close();
console.log(JSON.stringify({ layers, layer_kbit: rates, rate_kbit: rate, down_ms: down, up_ms: up }));
