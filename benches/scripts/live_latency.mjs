// Latency of a live stream from publisher to viewer, measured on the frames themselves:
// the publisher draws the wall-clock time into each frame (24 black or white blocks across
// the top, milliseconds modulo 2^24) and sends the canvas by WHIP; a viewer in a second
// browser context reads the blocks back from every decoded frame (requestVideoFrameCallback)
// and subtracts. Both run in one browser on one machine, so they share the clock.
//
//   NANOFS_URL=http://127.0.0.1:PORT STREAM=cam KEY=nsk_… TOKEN=… [MODE=webrtc|hls] \
//   [SECONDS=20] node benches/scripts/live_latency.mjs
//
// Prints one JSON line: {mode, frames, p50_ms, p90_ms, p99_ms, max_ms}.

import { fileURLToPath } from 'node:url';
import { chromium } from '../../tests/browser/node_modules/playwright-core/index.mjs';

const base = process.env.NANOFS_URL.replace(/\/+$/, '');
const [stream, key, token] = [process.env.STREAM, process.env.KEY, process.env.TOKEN];
const mode = process.env.MODE || 'webrtc';
const seconds = Number(process.env.SECONDS || 20);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--allow-loopback-in-peer-connection',
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
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 360;
  const g = canvas.getContext('2d');
  const draw = () => {
    const t = Date.now() % (1 << 24);
    g.fillStyle = '#808080'; g.fillRect(0, 0, 640, 360);
    for (let i = 0; i < 24; i++) {
      g.fillStyle = (t >> (23 - i)) & 1 ? '#ffffff' : '#000000';
      g.fillRect(8 + i * 26, 8, 24, 40);
    }
    g.fillStyle = '#204080'; g.fillRect((t / 10) % 600, 120, 40, 200); // motion, so frames differ
  };
  draw();
  setInterval(draw, 1000 / 30);
  const media = canvas.captureStream(30);
  const pc = new RTCPeerConnection();
  pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly' });
  await window.signal(`/whip/${stream}`, key, pc);
  window.pc = pc;
}, { stream, key });

const ctx = await context({ extraHTTPHeaders: mode === 'hls' ? { Authorization: `Bearer ${token}` } : {} });
const viewer = await ctx.newPage();
await viewer.goto(`${base}/healthz`);
if (mode === 'hls') {
  await viewer.addScriptTag({ url: `${base}/vendor/hls-1.7.4.min.js` });
}
const samples = await viewer.evaluate(async ({ stream, token, mode, seconds }) => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.append(video);
  if (mode === 'webrtc') {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
    await window.signal(`/whep/${stream}`, token, pc);
  } else {
    const hls = new window.Hls({ lowLatencyMode: true, enableWorker: false });
    hls.loadSource(`/live/${stream}/master.m3u8`);
    hls.attachMedia(video);
  }
  video.play().catch(() => {});
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 360;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  const out = [];
  const started = Date.now();
  await new Promise((done) => {
    const onFrame = () => {
      const now = Date.now();
      g.drawImage(video, 0, 0, 640, 360);
      const row = g.getImageData(0, 28, 640, 1).data;
      let t = 0;
      for (let i = 0; i < 24; i++) {
        const x = 8 + i * 26 + 12;
        t = (t << 1) | (row[x * 4] > 128 ? 1 : 0);
      }
      const d = ((now % (1 << 24)) - t + (1 << 24)) % (1 << 24);
      if (d < 60000) out.push(d);
      if (Date.now() - started > seconds * 1000) done();
      else video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  });
  return out;
}, { stream, token, mode, seconds });
await browser.close();

// The first seconds are the player settling; the steady state is what a viewer lives with.
const steady = samples.slice(Math.floor(samples.length / 4)).sort((a, b) => a - b);
const q = (p) => steady[Math.min(steady.length - 1, Math.floor(p * steady.length))];
console.log(JSON.stringify({ mode, frames: steady.length, p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: steady.at(-1) }));
