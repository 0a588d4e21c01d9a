// nanofs shared galleries: a single-page app with no build step and no dependencies, written
// for the gallery API of docs/galleries.md: JSON under /api (the session is the HttpOnly
// cookie that /api/login and /api/share/open set), live events from …/events over a
// WebSocket with Server-Sent Events as the fallback, and tus 1.0 uploads on /uploads.
// Static markup lives in index.html <template>s; this file clones and wires them.

const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '😠', '🔥', '💖'];
const EMOJI_NAMES = { '👍': 'thumbs up', '❤️': 'heart', '😂': 'laughing', '😮': 'surprised',
  '😢': 'sad', '😠': 'angry', '🔥': 'fire', '💖': 'sparkling heart' };
const ROLES = ['viewer', 'contributor', 'moderator', 'owner'];
const SORTS = ['name', 'date', 'size', 'type'];
const PAGE_SIZE = 100;
const CHUNK = 8 * 1024 * 1024; // bytes per tus PATCH
const UPLOAD_RETRIES = 5;

const app = {
  me: null, // principal name: "alice", or "link:<id>" for a share-link session
  gallery: null, // the open gallery's state, see openGallery()
  player: null, // the viewer's video player, see playVideo()
  plan: null, // the device's plan (/api/adapt), see devicePlan()
};

// ---------------------------------------------------------------------------
// DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** Builds an element: props are attributes, properties or on* listeners; kids are appended. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  el.append(...kids.flat(Infinity).filter((k) => k != null && k !== false));
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.includes('-') || !(k in el)) el.setAttribute(k, v === true ? '' : v);
    else el[k] = v; // after the kids, so a <select>'s value finds its options
  }
  return el;
}

/** Clones a <template>: {frag, root, …its elements by data-ref}. */
function use(id) {
  const frag = document.getElementById(id).content.cloneNode(true);
  const refs = { frag, root: frag.firstElementChild };
  for (const el of frag.querySelectorAll('[data-ref]')) refs[el.dataset.ref] = el;
  return refs;
}

const options = (values, selected) => values.map((v) => h('option', { value: v, text: v, selected: v === selected }));

const setMain = (...nodes) => $('#main').replaceChildren(...nodes);
const setTitle = (text) => { document.title = text ? `${text} · nanofs galleries` : 'nanofs galleries'; };

// Screen-reader announcements are batched so a burst of events reads as one line.
let announceQueue = [];
let announceTimer = null;
function announce(msg) {
  announceQueue.push(msg);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const msgs = announceQueue;
    announceQueue = [];
    $('#live').textContent = msgs.length > 3 ? `${msgs.length} updates in this gallery` : msgs.join('. ');
  }, 600);
}

function toast(msg, kind = 'error') {
  const close = h('button', { type: 'button', class: 'icon', 'aria-label': 'Dismiss', text: '✕' });
  const el = h('div', { class: `toast ${kind}` }, h('span', { text: msg }), close);
  close.onclick = () => el.remove();
  $('#toasts').append(el);
  setTimeout(() => el.remove(), 8000);
}

const storage = {
  get: (k) => { try { return localStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { localStorage.setItem(k, v); } catch { /* private mode */ } },
  remove: (k) => { try { localStorage.removeItem(k); } catch { /* private mode */ } },
};

// Comments and links carry unix seconds, items RFC 3339 strings: callers make the Date.
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const fmtDate = (d) => dateFormat.format(d);
const unix = (secs) => new Date(secs * 1000);
function fmtSize(n) {
  let i = 0;
  for (; n >= 1024 && i < 4; i++) n /= 1024;
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${['B', 'KB', 'MB', 'GB', 'TB'][i]}`;
}
function fmtDuration(s) {
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// ---------------------------------------------------------------------------
// API

/** JSON request; throws an Error with .status and .data ({"error", …}) on a non-2xx answer. */
async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method, credentials: 'same-origin', cache: 'no-store',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw Object.assign(new Error('The server cannot be reached.'), { status: 0 });
  }
  const text = await res.text();
  if (res.ok) return text ? JSON.parse(text) : null;
  let data = null; // a body refused before it reached a handler (bad JSON) comes as plain text
  try { data = JSON.parse(text); } catch { /* plain text */ }
  throw Object.assign(new Error(data?.error || text || `${res.status} ${res.statusText}`), { status: res.status, data });
}

/** Reports an API failure: an ended session leads back to the sign-in form. */
function fail(e) {
  if (e && e.status === 401) {
    const link = isLinkSession();
    app.me = null;
    renderAccount();
    teardownGallery();
    if (link) return showMessage('Link unavailable', 'This share link has expired or was revoked.');
    return showLogin('Your session has ended. Please sign in again.');
  }
  console.error(e);
  toast(e && e.message ? e.message : String(e));
}

const isLinkSession = () => app.me?.startsWith('link:') ?? false;
const gPath = (G, rest = '') => `/api/galleries/${enc(G.id)}${rest}`;
const itemPath = (G, id, rest = '') => gPath(G, `/items/${enc(id)}${rest}`);
const contentUrl = (G, id) => itemPath(G, id, '/content');
/** Thumbnails are cached for a day: the fingerprint in the URL (ignored by the server) changes with the content. */
const thumbUrl = (G, it, size) => itemPath(G, it.id, `/thumbnail?size=${size}${it.fingerprint ? `&v=${it.fingerprint.slice(0, 16)}` : ''}`);
const atLeast = (G, role) => ROLES.indexOf(G.role) >= ROLES.indexOf(role);

// ---------------------------------------------------------------------------
// BlurHash (https://github.com/woltapp/blurhash, the standard decoder)

const B83 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~';
function decode83(str, from, to) {
  let v = 0;
  for (let i = from; i < to; i++) v = v * 83 + B83.indexOf(str[i]);
  return v;
}
const srgbToLinear = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
function linearToSrgb(v) {
  v = clamp(v, 0, 1);
  return Math.trunc(v <= 0.0031308 ? v * 12.92 * 255 + 0.5 : (1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5);
}
const signPow = (v, e) => Math.sign(v) * Math.abs(v) ** e;

/** RGBA pixels (w*h*4) of a BlurHash. */
function decodeBlurHash(hash, w, h) {
  const size = decode83(hash, 0, 1);
  const nx = (size % 9) + 1, ny = Math.floor(size / 9) + 1;
  const maxAc = (decode83(hash, 1, 2) + 1) / 166;
  const dc = decode83(hash, 2, 6);
  const colors = [[srgbToLinear(dc >> 16), srgbToLinear((dc >> 8) & 255), srgbToLinear(dc & 255)]];
  for (let i = 1; i < nx * ny; i++) {
    const v = decode83(hash, 4 + i * 2, 6 + i * 2);
    const q = [Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19];
    colors.push(q.map((c) => signPow((c - 9) / 9, 2) * maxAc));
  }
  const px = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < ny; j++) {
        const cy = Math.cos((Math.PI * y * j) / h);
        for (let i = 0; i < nx; i++) {
          const basis = Math.cos((Math.PI * x * i) / w) * cy;
          const c = colors[i + j * nx];
          r += c[0] * basis; g += c[1] * basis; b += c[2] * basis;
        }
      }
      const o = 4 * (x + y * w);
      px[o] = linearToSrgb(r); px[o + 1] = linearToSrgb(g); px[o + 2] = linearToSrgb(b); px[o + 3] = 255;
    }
  }
  return px;
}

/** The item's placeholder (none until the indexer has looked at it). */
function placeholderCanvas(hash) {
  const c = h('canvas', { class: 'ph', width: 32, height: 32, 'aria-hidden': 'true' });
  if (hash) c.getContext('2d').putImageData(new ImageData(decodeBlurHash(hash, 32, 32), 32, 32), 0, 0);
  return c;
}

// ---------------------------------------------------------------------------
// Pictures for the device (docs/streaming.md): a tile shows the item's BlurHash, then a
// render sized by srcset/sizes; the viewer shows the BlurHash, the 1024 thumbnail over
// it, then a render at the size it is displayed at. Render widths are device pixels
// (`dpr=1`), so each candidate's `w` descriptor is exact; the device policy's density
// (`image_dpr`: fewer pixels under data saver or on a low battery) scales `sizes`.

/** Candidate widths, device pixels (some of the server's render widths). */
const TILE_WIDTHS = [320, 480, 640, 960];
const VIEWER_WIDTHS = [640, 960, 1280, 1920, 2560, 3840];
/** The browser shows these itself (animation, vector): the viewer loads the original. */
const ORIGINAL_TYPES = ['image/gif', 'image/svg+xml'];

/** What pictures are sized by: the plan's density and the hints only the page knows. */
function pictureTerms() {
  const plan = app.plan;
  return { density: plan?.image_dpr || window.devicePixelRatio || 1, query: plan?.pictureQuery || '' };
}

/** A render of `it` exactly `w` device pixels wide (the picture's own width when it is narrower). */
const renderUrl = (G, it, w, query) =>
  itemPath(G, it.id, `/render?w=${w}&dpr=1${query}${it.fingerprint ? `&v=${it.fingerprint.slice(0, 16)}` : ''}`);

/** `srcset` of `it` over `widths`; the picture's own width ends it when it is among them. */
function srcsetOf(G, it, widths, query) {
  const own = it.width;
  const ws = widths.filter((w) => w < own);
  if (own <= widths[widths.length - 1]) ws.push(own);
  return ws.map((w) => `${renderUrl(G, it, w, query)} ${w}w`).join(', ');
}

/** `sizes` for a slot `cssWidth` CSS pixels wide, at the density the plan spends. */
const sizesOf = (cssWidth, density) => `${Math.max(1, Math.ceil((cssWidth * density) / (window.devicePixelRatio || 1)))}px`;

/** Whether `it` can be rendered: a picture the indexer has measured. */
const renderable = (it) => kindOf(it) === 'image' && it.width > 0 && it.height > 0 && !ORIGINAL_TYPES.includes(it.type);

/** A tile's picture is shown `cover` in a square: a landscape one fills it by its height. */
const tileSlot = (G, it) => (G.tileWidth || 180) * Math.max(1, it.width / it.height);

/** The width of the grid's columns, CSS pixels (0 before layout). */
function measureTiles(G) {
  const w = parseFloat(getComputedStyle(G.els.grid).gridTemplateColumns);
  return Number.isFinite(w) && w > 0 ? w : 0;
}

/** The grid's columns changed width: tiles ask for pictures of the new size. */
function resizeTiles(G) {
  const w = measureTiles(G);
  if (!w || Math.abs(w - (G.tileWidth || 0)) < 1) return;
  G.tileWidth = w;
  const { density } = pictureTerms();
  for (const img of G.els.grid.querySelectorAll('img[srcset]')) {
    const it = G.byId.get(img.closest('.tile')?.dataset.itemId);
    if (it) img.sizes = sizesOf(tileSlot(G, it), density);
  }
}

// ---------------------------------------------------------------------------
// Routing: /, /g/<gallery>[?folder=<folder id>], /s/<share token>

function navigate(url, replace = false) {
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  route();
}

const urlFolder = () => new URLSearchParams(location.search).get('folder');

function route() {
  const path = location.pathname;
  const share = path.match(/^\/s\/([^/]+)\/?$/);
  const gallery = path.match(/^\/g\/([^/]+)\/?$/);
  const G = app.gallery;
  if (gallery && G && G.id === decodeURIComponent(gallery[1]) && app.me) {
    // Same gallery, another folder: keep the stream, reload the listing.
    G.folder = urlFolder();
    closeViewer();
    reloadListing(G);
    return;
  }
  teardownGallery();
  if (share) return openShare(decodeURIComponent(share[1]));
  if (!app.me) return showLogin();
  if (gallery) return openGallery(decodeURIComponent(gallery[1]));
  return showGalleries();
}

/** In-app links (data-nav) change the URL without reloading the page. */
function interceptLinks(e) {
  const a = e.target.closest && e.target.closest('a[data-nav]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
}

/** From GET /api/me: {"user"}, or {"user": null, "link": {"id", …}} for a share-link session, which acts as link:<id>. */
function setMe(me) {
  app.me = me.user ?? (me.link ? `link:${me.link.id}` : null);
  renderAccount();
}

function renderAccount() {
  const nav = $('#account');
  if (!app.me) return nav.replaceChildren();
  nav.replaceChildren(
    h('span', { class: 'muted', 'data-testid': 'me' }, 'Signed in as ', h('strong', { text: app.me })),
    h('button', { type: 'button', class: 'link', 'data-testid': 'logout', onclick: logout, text: 'Sign out' }),
  );
}

async function logout() {
  try { await api('POST', '/api/logout'); } catch { /* the session may already be gone */ }
  app.me = null;
  renderAccount();
  navigate('/');
}

function showMessage(title, text) {
  setTitle(title);
  setMain(h('section', { class: 'card' }, h('h1', { text: title }), h('p', { text }),
    h('p', {}, h('a', { href: '/', 'data-nav': true, text: 'Go to sign in' }))));
}

// ---------------------------------------------------------------------------
// Sign in, share links, gallery list

function showLogin(message) {
  setTitle('Sign in');
  const v = use('tpl-login');
  v.error.textContent = message || '';
  v.root.onsubmit = async (e) => {
    e.preventDefault();
    v.submit.disabled = true;
    v.error.textContent = '';
    try {
      const res = await api('POST', '/api/login', { user: v.user.value, password: v.password.value });
      app.me = res.user;
      renderAccount();
      route();
    } catch (e2) {
      v.error.textContent = e2.status === 401 ? 'Wrong user name or password.' : e2.message;
      v.password.select();
    } finally {
      v.submit.disabled = false;
    }
  };
  setMain(v.frag);
  v.user.focus();
}

async function openShare(token, password) {
  setTitle('Shared gallery');
  setMain(h('p', { class: 'muted', role: 'status', text: 'Opening the shared gallery…' }));
  try {
    const res = await api('POST', '/api/share/open', { token, password });
    setMe(await api('GET', '/api/me')); // the answer has the gallery and role; the link's id comes from here
    navigate(`/g/${enc(res.gallery)}`, true); // replaceState drops the token from the history and the address bar
  } catch (e) {
    // A link with a password answers 401 with password_required; a wrong password, a plain 401.
    if (e.status === 401 && (e.data?.password_required || password != null)) return askSharePassword(token, password != null ? e.message : '');
    showMessage('Link unavailable', e.message);
  }
}

function askSharePassword(token, error) {
  const v = use('tpl-share-password');
  v.error.textContent = error;
  v.root.onsubmit = (e) => { e.preventDefault(); openShare(token, v.password.value); };
  setMain(v.frag);
  v.password.focus();
}

async function showGalleries() {
  setTitle('Galleries');
  const v = use('tpl-galleries');
  if (isLinkSession()) v.create.remove(); // only users create galleries
  v.create.onsubmit = async (e) => {
    e.preventDefault();
    try {
      const g = await api('POST', '/api/galleries', { title: v.title.value.trim() });
      navigate(`/g/${enc(g.id)}`);
    } catch (e2) { fail(e2); }
  };
  setMain(v.frag);
  try {
    const { galleries } = await api('GET', '/api/galleries');
    v.list.replaceChildren(...galleries.map((g) => h('li', { class: 'gallery-row' },
      h('a', { href: `/g/${enc(g.id)}`, 'data-nav': true, 'data-testid': 'gallery-link', 'data-gallery-id': g.id, text: g.title }),
      h('span', { class: 'muted', text: `${g.role} · ${g.items} items` }))));
    if (!galleries.length) v.list.append(h('li', { class: 'muted', text: 'No galleries yet.' }));
  } catch (e) {
    fail(e);
  } finally {
    v.list.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------
// Gallery view: header, toolbar, grid with paging

async function openGallery(id) {
  const G = app.gallery = {
    id, folder: urlFolder(), info: null, role: 'viewer',
    sort: storage.get('nanofs.sort') || 'name', order: storage.get('nanofs.order') === 'desc' ? 'desc' : 'asc',
    items: [], byId: new Map(), tiles: new Map(), offset: 0, total: null, done: false, loading: false,
    failed: false, gen: 0, queue: Promise.resolve(), viewer: null, members: [],
  };
  if (!SORTS.includes(G.sort)) G.sort = 'name';
  let firstPage;
  G.ready = new Promise((r) => { firstPage = r; }); // events wait until the first page is in
  buildGalleryView(G);
  // The stream starts first, so no change slips between the listing and the stream.
  G.stream = new EventStream(id, {
    onEvent: (ev) => { G.queue = G.queue.then(() => G.ready).then(() => applyEvent(G, ev)).catch(console.error); },
    onState: (s) => { G.els.live.textContent = s; G.els.live.dataset.state = s; },
    onEnd: (reason) => streamEnded(G, reason),
  });
  G.stream.start();
  try {
    await loadInfo(G);
  } catch (e) {
    if (app.gallery !== G) return;
    teardownGallery();
    return e.status === 401 ? fail(e) : showMessage('Gallery unavailable', e.message);
  }
  reloadListing(G).then(firstPage).then(() => openFromUrl(G));
  loadStreams(G);
}

/** `?item=ID[#t=S]`: the viewer on that item (at S seconds), as a reload or a shared URL asks. */
async function openFromUrl(G) {
  const id = new URLSearchParams(location.search).get('item');
  if (!id || app.gallery !== G || G.viewer) return;
  if (!G.byId.has(id)) { // not on the first page
    const d = await api('GET', itemPath(G, id)).catch(() => null);
    if (!d || app.gallery !== G) return setViewerUrl(null);
    G.byId.set(id, listed(d));
  }
  openViewer(G, id, urlTime());
}

function teardownGallery() {
  const G = app.gallery;
  if (!G) return;
  app.gallery = null;
  G.stream.stop();
  G.observer.disconnect();
  G.resizer.disconnect();
  closeViewer();
  stopWatching(G);
  stopSharing(G);
}

function buildGalleryView(G) {
  const e = G.els = use('tpl-gallery');
  e.sort.value = G.sort;
  e.order.value = G.order;
  e.sort.onchange = () => setSort(G, 'sort', e.sort.value);
  e.order.onchange = () => setSort(G, 'order', e.order.value);
  e.uploadButton.onclick = () => e.fileInput.click();
  e.fileInput.onchange = () => { queueUploads(G, [...e.fileInput.files]); e.fileInput.value = ''; };
  panelToggle(e.membersToggle, e.members, () => loadMembers(G));
  panelToggle(e.linksToggle, e.links, () => loadLinks(G));
  e.memberAdd.onsubmit = (ev) => {
    ev.preventDefault();
    const user = e.memberUser.value.trim();
    memberCall(G, 'PUT', memberPath(G, user), { role: e.memberRole.value }, `${user} added`).then((ok) => { if (ok) e.memberUser.value = ''; });
  };
  e.transfer.onsubmit = (ev) => {
    ev.preventDefault();
    const user = e.newOwner.value;
    if (user && confirm(`Make ${user} the owner? You will become a moderator.`)) {
      memberCall(G, 'POST', gPath(G, '/owner'), { user }, `${user} is now the owner`);
    }
  };
  e.linkCreate.onsubmit = (ev) => { ev.preventDefault(); createLink(G); };
  e.linkCopy.onclick = () => copyLink(G);
  e.shareScreen.onclick = () => (G.sharing ? stopSharing(G) : shareScreen(G));
  e.grid.onkeydown = (ev) => gridKeys(G, ev);
  e.more.onclick = () => { G.failed = false; loadPage(G); };
  dropHandlers(G, e.zone);
  setMain(e.frag);
  G.observer = new IntersectionObserver((en) => { if (en.some((x) => x.isIntersecting)) loadPage(G); }, { rootMargin: '1200px 0px' });
  G.observer.observe(e.sentinel);
  G.resizer = new ResizeObserver(() => resizeTiles(G));
  G.resizer.observe(e.grid);
}

function panelToggle(btn, panel, load) {
  btn.onclick = () => {
    const open = panel.hidden;
    panel.hidden = !open;
    btn.setAttribute('aria-expanded', String(open));
    if (open) load();
  };
}

function setSort(G, key, value) {
  G[key] = value;
  storage.set(`nanofs.${key}`, value);
  reloadListing(G);
}

/** GET /api/galleries/{id}: title, owner, my role, the gallery's own folder id. */
async function loadInfo(G) {
  const info = await api('GET', gPath(G));
  if (app.gallery !== G) return;
  G.info = info;
  G.role = info.role;
  const e = G.els;
  e.title.textContent = info.title;
  setTitle(info.title);
  e.meta.textContent = `Owner: ${info.owner} · Your role: ${G.role}`;
  renderCrumbs(G);
  const contributor = atLeast(G, 'contributor'), moderator = atLeast(G, 'moderator');
  e.upload.hidden = !contributor;
  e.hint.hidden = !contributor;
  for (const [btn, panel] of [[e.membersToggle, e.members], [e.linksToggle, e.links]]) {
    btn.hidden = !moderator;
    if (!moderator) { panel.hidden = true; btn.setAttribute('aria-expanded', 'false'); }
  }
}

/**
 * Folders are named by id (`?folder=`); a listing names only its sub-folders, so the
 * breadcrumbs are built from the folders met on the way down: id -> {name, parent}.
 */
const folders = new Map();
const folderUrl = (G, id) => `/g/${enc(G.id)}${id && id !== G.info.folder ? `?folder=${enc(id)}` : ''}`;

function renderCrumbs(G) {
  if (!G.info) return;
  const trail = [];
  for (let id = G.folder; id && id !== G.info.folder && trail.length < 64; id = folders.get(id)?.parent) {
    trail.unshift({ id, name: folders.get(id)?.name ?? '…' }); // '…': a deep link into a folder not met yet
  }
  const link = (id, text, last) => h('li', {}, h('a', {
    href: folderUrl(G, id), 'data-nav': true, 'aria-current': last ? 'page' : null, text,
  }));
  G.els.crumbs.hidden = !trail.length; // at the top the heading says it all
  G.els.crumbs.replaceChildren(h('ol', {}, link(null, G.info.title, false),
    trail.map((f, i) => link(f.id, f.name, i === trail.length - 1))));
}

function reloadListing(G) {
  G.gen++;
  Object.assign(G, { items: [], offset: 0, total: null, done: false, loading: false, failed: false });
  G.byId.clear();
  G.tiles.clear();
  G.els.grid.replaceChildren();
  renderCrumbs(G);
  G.ready = loadPage(G);
  return G.ready;
}

/** One page of the folder: {folder, total, offset, items, folders}. */
async function loadPage(G) {
  if (G.loading || G.done || G.failed || !G.info || app.gallery !== G) return;
  G.loading = true;
  const gen = G.gen;
  G.els.status.textContent = 'Loading…';
  const q = new URLSearchParams({ sort: G.sort, order: G.order, offset: G.offset, limit: PAGE_SIZE });
  if (G.folder) q.set('folder', G.folder);
  try {
    // Tiles size their pictures by the device's plan: it is asked alongside the first page.
    const [res] = await Promise.all([api('GET', gPath(G, `/items?${q}`)), devicePlan()]);
    if (gen !== G.gen || app.gallery !== G) return;
    if (!G.tileWidth) G.tileWidth = measureTiles(G);
    if (G.offset === 0) {
      G.folder = res.folder; // the gallery's own folder when none was asked for
      renderFolders(G, res.folders);
      renderCrumbs(G);
    }
    G.offset += res.items.length;
    G.total = res.total;
    G.done = !res.items.length || G.offset >= res.total;
    for (const it of res.items) if (!G.byId.has(it.id)) appendItem(G, it);
  } catch (e) {
    if (gen !== G.gen) return;
    G.failed = true; // no automatic retry loop; "Load more" retries
    fail(e);
  } finally {
    if (gen === G.gen) {
      G.loading = false;
      updateStatus(G);
      // Re-observing fires the observer again, which loads on while the sentinel is near.
      if (!G.done && !G.failed) { G.observer.unobserve(G.els.sentinel); G.observer.observe(G.els.sentinel); }
    }
  }
}

function updateStatus(G) {
  const n = G.items.length;
  const empty = !n && G.done && !G.els.grid.querySelector('.folder');
  G.els.status.textContent = empty ? 'This folder is empty.' : G.total == null ? '' : `${n} of ${G.total} items`;
  G.els.more.hidden = G.done;
}

function renderFolders(G, list) {
  for (const f of list) {
    folders.set(f.id, { name: f.name, parent: G.folder });
    G.els.grid.append(h('li', { class: 'cell' },
      h('a', { class: 'tile folder', href: folderUrl(G, f.id), 'data-nav': true, 'data-testid': 'folder', 'data-name': f.name },
        h('span', { class: 'type-icon', 'aria-hidden': 'true', text: '📁' }),
        h('span', { class: 'caption' }, h('span', { class: 'name', text: f.name })))));
  }
}

/** image, video, audio or other, from the media type (sniffed once indexed, guessed from the name before). */
function kindOf(it) {
  const kind = it.type.split('/')[0];
  return ['image', 'video', 'audio'].includes(kind) ? kind : 'other';
}

function appendItem(G, it) {
  G.items.push(it);
  G.byId.set(it.id, it);
  G.els.grid.append(tileCell(G, it));
}

function tileCell(G, it) {
  const btn = h('button', { type: 'button', class: 'tile', 'data-testid': 'tile', 'data-item-id': it.id });
  btn.onclick = () => openViewer(G, it.id);
  fillTile(G, btn, it);
  G.tiles.set(it.id, btn);
  return h('li', { class: 'cell' }, btn);
}

/** (Re)draws a tile's content; the button itself stays, so focus survives live updates. */
function fillTile(G, btn, it) {
  btn.dataset.name = it.name;
  const kind = kindOf(it);
  const kids = [placeholderCanvas(it.placeholder)];
  const pictured = kind === 'image' || kind === 'video';
  const name = h('span', { class: 'name', 'aria-hidden': pictured ? 'true' : null, text: it.name }); // the img alt names it
  if (pictured) {
    // A picture: a render sized for the tile (the BlurHash canvas shows until it loads),
    // else the 256 thumbnail. The thumbnail is made on first request; a 404 says there is
    // none (say, no ffmpeg for a video).
    const thumb = thumbUrl(G, it, 256);
    let picture = null;
    if (renderable(it)) {
      const { density, query } = pictureTerms();
      picture = { sizes: sizesOf(tileSlot(G, it), density), srcset: srcsetOf(G, it, TILE_WIDTHS, query) };
    }
    const img = h('img', { alt: it.name, loading: 'lazy', decoding: 'async', draggable: false, ...picture,
      src: picture ? renderUrl(G, it, TILE_WIDTHS[0], pictureTerms().query) : thumb });
    img.onload = () => btn.classList.add('loaded');
    img.onerror = () => {
      if (img.srcset) { // no render (a format the server does not decode): the thumbnail
        img.removeAttribute('srcset');
        img.removeAttribute('sizes');
        img.src = thumb;
        return;
      }
      img.replaceWith(h('span', { class: 'type-icon', 'aria-hidden': 'true', text: '🖼️' }));
      name.removeAttribute('aria-hidden');
    };
    kids.push(img);
  } else {
    kids.push(h('span', { class: 'type-icon', 'aria-hidden': 'true', text: kind === 'audio' ? '🎵' : '📄' }));
  }
  if ((kind === 'video' || kind === 'audio') && it.duration != null) {
    kids.push(h('span', { class: 'badge', text: `${kind === 'video' ? '▶' : '♪'} ${fmtDuration(it.duration)}` }));
  }
  const top = Object.entries(it.reactions).sort((a, b) => b[1] - a[1]).slice(0, 3);
  const counts = [it.comments ? `💬 ${it.comments}` : '', ...top.map(([e, n]) => `${e} ${n}`)].filter(Boolean);
  const spoken = [it.comments ? `${it.comments} comments` : '', ...top.map(([e, n]) => `${n} ${EMOJI_NAMES[e]}`)].filter(Boolean);
  kids.push(h('span', { class: 'caption' },
    name,
    counts.length ? h('span', { class: 'counts', 'data-testid': 'tile-counts', 'aria-hidden': 'true', text: counts.join('  ') }) : null,
    spoken.length ? h('span', { class: 'sr-only', text: `, ${spoken.join(', ')}` }) : null));
  btn.replaceChildren(...kids);
  btn.classList.remove('loaded');
}

function updateTile(G, id) {
  const btn = G.tiles.get(id), it = G.byId.get(id);
  if (btn && it) fillTile(G, btn, it);
}

/** Arrow keys, Home and End move between tiles; Up/Down by one row. */
function gridKeys(G, e) {
  const tiles = [...G.els.grid.querySelectorAll('.tile')];
  const i = tiles.indexOf(document.activeElement);
  if (i < 0) return;
  const top = tiles[0].getBoundingClientRect().top;
  let cols = 0;
  while (cols < tiles.length && Math.abs(tiles[cols].getBoundingClientRect().top - top) < 2) cols++;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, Home: -i, End: tiles.length - 1 - i }[e.key];
  if (step === undefined) return;
  e.preventDefault();
  tiles[clamp(i + step, 0, tiles.length - 1)].focus();
}

// The server's orders: by the key, ties by name; names compare case-folded first.
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const byName = (a, b) => cmp(a.name.toLowerCase(), b.name.toLowerCase()) || cmp(a.name, b.name);
const SORT_KEYS = { date: (x) => Date.parse(x.modified), size: (x) => x.size, type: (x) => x.type };
function compareItems(G, a, b) {
  const key = SORT_KEYS[G.sort];
  const c = (key ? cmp(key(a), key(b)) : 0) || byName(a, b);
  return G.order === 'desc' ? -c : c;
}

/** Places a live-added item where the current sort puts it, if that is within the loaded part. */
function insertItem(G, it) {
  const idx = G.items.findIndex((x) => compareItems(G, it, x) < 0);
  if (idx < 0 && !G.done) return; // it belongs to a page not loaded yet
  G.byId.set(it.id, it);
  const cell = tileCell(G, it);
  if (idx < 0) {
    G.items.push(it);
    G.els.grid.append(cell);
  } else {
    G.els.grid.insertBefore(cell, G.tiles.get(G.items[idx].id).parentElement);
    G.items.splice(idx, 0, it);
    G.offset++; // the server's later pages shifted by one
  }
  G.total++;
  updateStatus(G);
}

function removeItem(G, id) {
  const btn = G.tiles.get(id);
  if (!btn) return;
  const wasFocused = document.activeElement === btn;
  const cell = btn.parentElement;
  const next = cell.nextElementSibling || cell.previousElementSibling;
  cell.remove();
  G.tiles.delete(id);
  G.byId.delete(id);
  G.items = G.items.filter((x) => x.id !== id);
  G.offset = Math.max(0, G.offset - 1);
  G.total--;
  if (wasFocused && next) next.firstElementChild.focus();
  updateStatus(G);
}

// ---------------------------------------------------------------------------
// Live updates

/**
 * …/events?since=<last seq> as a WebSocket, or as Server-Sent Events when the upgrade is
 * refused; reconnects with backoff. Messages: {"type":"hello"|"reset","seq"} and events
 * {seq, type, at, actor, item, data}. Access ending closes with code 4401 (gallery
 * deleted: 4404); over SSE that is a `close` event carrying {code, reason}.
 */
class EventStream {
  constructor(galleryId, { onEvent, onState, onEnd }) {
    Object.assign(this, { galleryId, onEvent, onState, onEnd });
    this.seq = null;
    this.attempt = 0;
    this.useSse = typeof WebSocket === 'undefined';
    this.wsWorked = false;
  }

  start() { this.stopped = false; this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const { ws, es } = this;
    this.ws = this.es = null;
    if (ws) ws.close(1000);
    if (es) es.close();
  }

  url(ws) {
    const u = new URL(`/api/galleries/${enc(this.galleryId)}/events`, location.href);
    if (this.seq != null) u.searchParams.set('since', String(this.seq));
    if (ws) u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }

  connect() {
    if (this.stopped) return;
    this.onState('connecting');
    if (this.useSse) return this.connectSse();
    let opened = false;
    const ws = this.ws = new WebSocket(this.url(true));
    ws.onopen = () => { opened = this.wsWorked = true; this.attempt = 0; this.onState('live'); };
    ws.onmessage = (m) => this.receive(m.data);
    ws.onclose = (e) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      if (e.code === 4401 || e.code === 4404) return this.end(e.reason);
      if (!opened && !this.wsWorked) this.useSse = true; // upgrade refused (proxy?): try SSE
      this.retry();
    };
  }

  connectSse() {
    const es = this.es = new EventSource(this.url(false));
    es.onopen = () => { this.attempt = 0; this.onState('live'); };
    es.onmessage = (m) => this.receive(m.data);
    es.addEventListener('close', (m) => {
      const { code, reason } = JSON.parse(m.data);
      if (code === 4401 || code === 4404) this.end(reason); // other codes: onerror reconnects
    });
    es.onerror = () => {
      if (this.es !== es) return;
      es.close(); // reconnect ourselves, so `since` is our own last seq
      this.es = null;
      if (!this.stopped) this.retry();
    };
  }

  receive(raw) {
    const ev = JSON.parse(raw);
    this.attempt = 0;
    if (ev.type === 'hello') { if (this.seq == null) this.seq = ev.seq; return; }
    if (ev.type === 'reset') { this.seq = ev.seq; this.onEvent(ev); return; }
    if (ev.seq > 0) { // seq 0: not logged (gallery.deleted), always news
      if (ev.seq <= this.seq) return; // replayed after a reconnect
      this.seq = ev.seq;
    }
    this.onEvent(ev);
  }

  retry() {
    this.onState('reconnecting');
    const delay = Math.min(30000, 1000 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      if (this.attempt >= 3 && (await this.accessLost())) return;
      this.connect();
    }, delay);
  }

  /** After repeated failures, asks whether the gallery is still ours before trying again. */
  async accessLost() {
    const err = await api('GET', `/api/galleries/${enc(this.galleryId)}`).then(() => null, (e) => e);
    if (!err || ![401, 404].includes(err.status)) return false;
    this.end(err.message);
    return true;
  }

  end(reason) {
    this.stop();
    this.onState('offline');
    this.onEnd(reason);
  }
}

// ---------------------------------------------------------------------------
// Live streams: WebRTC playback (WHEP) of a gallery's live stream, and screen sharing
// (WHIP) for contributors. One SDP offer and one answer each; the server is ICE-lite and
// names its candidates in the answer, so no candidates are trickled.

/** The gallery's streams: watch the one that is live; offer "Share screen" to publishers. */
async function loadStreams(G) {
  const r = await api('GET', gPath(G, '/streams')).catch(() => null);
  if (!r || app.gallery !== G) return;
  G.streams = r.streams;
  const canShare = r.may_publish && r.streams.length > 0 && !!navigator.mediaDevices?.getDisplayMedia;
  G.els.shareScreen.hidden = !canShare;
  const live = r.streams.find((s) => s.live);
  if (live && !G.live && !G.sharing) watchLive(G, live.name, live.live.viewers);
}

/** Waits until the connection has gathered its candidates (at most 2 s). */
function iceGathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((done) => {
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') done(); });
    setTimeout(done, 2000);
  });
}

/** Sends the offer of `pc` to a WHIP or WHEP URL; returns the session's URL. */
async function negotiate(pc, url) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const res = await fetch(url, {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
  const text = await res.text();
  if (res.status !== 201) {
    let msg = text;
    try { msg = JSON.parse(text).error; } catch { /* plain text */ }
    throw Object.assign(new Error(msg || `${res.status} ${res.statusText}`), { status: res.status });
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  return res.headers.get('location');
}

/** What protects the media: the DTLS-SRTP ciphers the connection negotiated. */
async function describeSecurity(pc) {
  let t = null;
  (await pc.getStats()).forEach((s) => { if (s.type === 'transport' && s.dtlsState === 'connected') t = s; });
  if (!t) return 'Encrypted with DTLS-SRTP (WebRTC)';
  const cipher = [t.srtpCipher, t.tlsVersion === 'FEFD' ? 'DTLS 1.2' : t.tlsVersion === 'FEFC' ? 'DTLS 1.3' : null, t.dtlsCipher].filter(Boolean).join(', ');
  return `Encrypted with DTLS-SRTP (WebRTC${cipher ? `: ${cipher}` : ''})`;
}

function showViewers(G, n) {
  G.els.liveViewers.textContent = `${n} watching`;
}

/**
 * How live streams play: `webrtc` (WHEP, under a second behind) or `hls` (low-latency HLS
 * through hls.js, a few seconds behind, for networks that block WebRTC's UDP).
 */
const liveMode = () => (storage.get('nanofs.liveMode') === 'hls' || !window.RTCPeerConnection ? 'hls' : 'webrtc');

/** Plays the live stream `name` in the gallery's live panel, the way the viewer chose. */
async function watchLive(G, name, viewers = 0) {
  const e = G.els;
  const mode = liveMode();
  e.liveMode.textContent = mode === 'hls' ? 'Switch to WebRTC (lowest latency)' : 'Switch to HLS';
  e.liveMode.onclick = () => {
    storage.set('nanofs.liveMode', mode === 'hls' ? 'webrtc' : 'hls');
    stopWatching(G);
    watchLive(G, name, viewers);
  };
  if (mode === 'hls') return watchLiveHls(G, name, viewers);
  const pc = new RTCPeerConnection();
  G.live = { name, pc, session: null, mode };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const media = new MediaStream();
  pc.ontrack = (ev) => { media.addTrack(ev.track); e.liveVideo.srcObject = media; };
  const ended = () => {
    if (G.live?.pc !== pc) return;
    stopWatching(G);
    announce(`The live stream ${name} stopped.`);
  };
  pc.onconnectionstatechange = async () => {
    const s = pc.connectionState;
    if (s === 'connected') e.liveSecurity.textContent = await describeSecurity(pc);
    if (s === 'failed' || s === 'closed') ended();
    // The server ends a session by closing DTLS; a blip of the network comes back.
    if (s === 'disconnected') setTimeout(() => { if (pc.connectionState !== 'connected') ended(); }, 3000);
  };
  e.liveName.textContent = name;
  showViewers(G, viewers);
  e.liveSecurity.textContent = 'connecting…';
  e.livePanel.hidden = false;
  try {
    G.live.session = await negotiate(pc, `/whep/${enc(name)}`);
    announce(`Watching the live stream ${name}.`);
  } catch (err) {
    if (G.live?.pc === pc) stopWatching(G);
    if (err.status !== 404) toast(`The live stream cannot be shown: ${err.message}`);
  }
}

/** Plays the live stream over low-latency HLS; the page says what protects it. */
async function watchLiveHls(G, name, viewers) {
  const e = G.els;
  const live = G.live = window.__live = { name, mode: 'hls', hls: null };
  e.liveName.textContent = name;
  showViewers(G, viewers);
  e.liveSecurity.textContent = location.protocol === 'https:'
    ? 'Encrypted with TLS 1.3 (HTTPS; X25519MLKEM768 when the browser offers it)'
    : 'Not encrypted: plain HTTP';
  e.livePanel.hidden = false;
  const url = `/live/${enc(name)}/master.m3u8`;
  const Hls = await loadHls().catch(() => null);
  if (G.live !== live) return;
  if (Hls && Hls.isSupported()) {
    live.hls = new Hls({ lowLatencyMode: true, enableWorker: false }); // the CSP allows no blob: workers
    live.hls.on(Hls.Events.ERROR, (_, d) => {
      live.errors = [...(live.errors || []).slice(-9), `${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}`];
      if (!d.fatal) return;
      if (d.type === Hls.ErrorTypes.MEDIA_ERROR) return live.hls.recoverMediaError();
      if (G.live === live) { stopWatching(G); announce(`The live stream ${name} stopped.`); }
    });
    // Play as soon as there is something to play (autoplay alone may miss the moment).
    live.hls.on(Hls.Events.MANIFEST_PARSED, () => e.liveVideo.play().catch(() => {}));
    live.hls.loadSource(url);
    live.hls.attachMedia(e.liveVideo);
  } else {
    e.liveVideo.src = url; // Safari plays HLS itself
  }
  e.liveVideo.play().catch(() => {});
  announce(`Watching the live stream ${name} over HLS.`);
}

function stopWatching(G) {
  const live = G.live;
  if (!live) return;
  G.live = null;
  if (live.hls) live.hls.destroy();
  if (live.mode === 'hls') { G.els.liveVideo.removeAttribute('src'); G.els.liveVideo.load(); }
  if (live.pc) live.pc.close();
  if (live.session) fetch(live.session, { method: 'DELETE', credentials: 'same-origin' }).catch(() => {});
  G.els.liveVideo.srcObject = null;
  G.els.livePanel.hidden = true;
}

/** Publishes the screen (and its sound, if the browser offers it) to the gallery's first stream that is not live. */
async function shareScreen(G) {
  const name = G.streams?.find((s) => !s.live)?.name;
  if (!name) return toast('Every live stream of this gallery is in use.', 'info');
  let media;
  try {
    media = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: true });
  } catch (err) {
    return toast(`Screen sharing was not started: ${err.message}`, 'info');
  }
  stopWatching(G);
  const pc = new RTCPeerConnection();
  G.sharing = { name, pc, media, session: null };
  for (const track of media.getTracks()) {
    pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    track.onended = () => stopSharing(G); // the browser's own "Stop sharing"
  }
  const btn = G.els.shareScreen;
  btn.dataset.sharing = 'true';
  btn.textContent = 'Stop sharing';
  try {
    G.sharing.session = await negotiate(pc, `/whip/${enc(name)}`);
    announce(`Your screen is live on ${name}.`);
  } catch (err) {
    stopSharing(G);
    toast(`Screen sharing failed: ${err.message}`);
  }
}

function stopSharing(G) {
  const sharing = G.sharing;
  if (!sharing) return;
  G.sharing = null;
  for (const t of sharing.media.getTracks()) t.stop();
  sharing.pc.close();
  if (sharing.session) fetch(sharing.session, { method: 'DELETE', credentials: 'same-origin' }).catch(() => {});
  const btn = G.els.shareScreen;
  btn.dataset.sharing = 'false';
  btn.textContent = 'Share screen';
}

function streamEnded(G, reason) {
  if (app.gallery !== G) return;
  stopWatching(G);
  stopSharing(G);
  if (isLinkSession()) {
    teardownGallery();
    return showMessage('Link unavailable', reason || 'This share link has expired or was revoked.');
  }
  api('GET', '/api/me').then(
    () => toast(reason || 'Live updates stopped.'),
    (e) => (e.status === 401 ? fail(e) : toast(reason || 'Live updates stopped.')),
  );
}

async function applyEvent(G, ev) {
  if (app.gallery !== G) return;
  const { item: id, data: d } = ev;
  switch (ev.type) {
    case 'reset': // the log no longer reaches back to our seq
      await reloadListing(G);
      if (G.viewer) refreshViewer(G, true);
      return;
    case 'item.added': case 'item.renamed': // data: {name, folder} (renamed: also from, from_folder)
      if (d.folder === G.folder) await showItem(G, id);
      else removeItem(G, id); // moved to another folder (unknown here: nothing to do)
      break;
    case 'item.changed': // new content: size, date and fingerprint change
      if (G.byId.has(id)) await showItem(G, id);
      break;
    case 'item.indexed': { // data: the media facts
      const it = G.byId.get(id);
      if (it) { Object.assign(it, d, { pending: false }); updateTile(G, id); }
      break;
    }
    case 'item.removed':
      removeItem(G, id);
      if (G.viewer?.id === id) { closeViewer(); toast('The item you were viewing was removed.', 'info'); }
      break;
    case 'folder.added': case 'folder.removed': case 'folder.renamed': // data: {name, folder, id | from, from_folder}
      if (d.folder === G.folder || d.from_folder === G.folder) await reloadListing(G);
      else if (ev.type === 'folder.removed' && d.id === G.folder) navigate(folderUrl(G, null));
      break;
    case 'comment.added': case 'comment.deleted':
      if (G.viewer?.id !== id) refreshTile(G, id); // the open item's tile follows refreshViewer
      break;
    case 'reaction.changed':
      reacted(G, id, d);
      break;
    case 'member.changed': case 'gallery.changed':
      try { await loadInfo(G); } catch (e) { return e.status === 404 ? streamEnded(G, e.message) : fail(e); }
      if (!G.els.members.hidden) loadMembers(G);
      break;
    case 'link.created': case 'link.revoked':
      if (!G.els.links.hidden) loadLinks(G);
      break;
    case 'live.started':
      if (!G.live) loadStreams(G);
      break;
    case 'live.viewers':
      if (G.live?.name === d.stream) showViewers(G, d.viewers);
      break;
    case 'live.ended':
      if (G.live?.name === d.stream) { stopWatching(G); announce(`The live stream ${d.stream} ended.`); }
      break;
    case 'gallery.deleted':
      toast('This gallery was deleted.', 'info');
      navigate('/');
      return;
    default:
      break;
  }
  if (G.viewer?.id === id && /^(comment|annotation|reaction)\./.test(ev.type)) refreshViewer(G);
  describeEvent(G, ev, id);
}

function describeEvent(G, ev, id) {
  if (ev.actor === app.me) return; // our own actions are not news
  const name = G.byId.get(id)?.name ?? ev.data?.name ?? 'an item';
  const what = { 'item.added': `added ${name}`, 'item.renamed': `renamed an item to ${name}`, 'item.removed': 'removed an item',
    'comment.added': `commented on ${name}`, 'annotation.added': `annotated ${name}`, 'reaction.changed': `reacted to ${name}` }[ev.type];
  if (what) announce(`${ev.actor ?? 'Someone'} ${what}`);
}

/** An item detail is the listed item plus its `discussion`. */
const listed = ({ discussion, ...it }) => it;

/** Fetches an item that arrived in, or changed in, the listed folder and shows it. */
async function showItem(G, id) {
  const d = await api('GET', itemPath(G, id)).catch(() => null); // gone again: item.removed follows
  if (!d || app.gallery !== G) return;
  const it = listed(d), known = G.byId.get(id);
  if (it.folder !== G.folder) return removeItem(G, id);
  if (!known) return insertItem(G, it);
  Object.assign(known, it);
  updateTile(G, id);
  if (G.viewer?.id === id) G.viewer.els.title.textContent = it.name;
}

/** Re-reads a loaded tile's item (debounced: a burst of events costs one request). */
function refreshTile(G, id) {
  if (!G.byId.has(id)) return;
  G.tileTimers = G.tileTimers || new Map();
  clearTimeout(G.tileTimers.get(id));
  G.tileTimers.set(id, setTimeout(() => {
    G.tileTimers.delete(id);
    api('GET', itemPath(G, id)).then((d) => syncTile(G, id, d), () => { /* removed: item.removed follows */ });
  }, 200));
}

function syncTile(G, id, detail) {
  const it = G.byId.get(id);
  if (!it || app.gallery !== G) return;
  Object.assign(it, listed(detail));
  updateTile(G, id);
}

// ---------------------------------------------------------------------------
// Reactions

/** {emoji: {count, mine}} from an item's counts and, once its detail is in, its reaction records. */
const reactionState = (it, records = []) => Object.fromEntries(EMOJI.map((e) =>
  [e, { count: it.reactions[e] ?? 0, mine: records.some((r) => r.emoji === e && r.user === app.me) }]));

/** A toggle's outcome (reaction.changed data, or the POST's answer): {emoji, user, on, count}. */
function reacted(G, id, { emoji, user, on, count }) {
  const it = G.byId.get(id);
  if (it) {
    if (count) it.reactions[emoji] = count; else delete it.reactions[emoji];
    updateTile(G, id);
  }
  const v = G.viewer;
  if (v?.id !== id) return;
  v.fetch++; // a detail requested before this change must not paint over it
  if (user === app.me) v.reactions[emoji].mine = on;
  v.reactions[emoji].count = count;
  paintReactions(G);
}

function buildReactions(G) {
  const v = G.viewer;
  v.react = new Map();
  for (const emoji of EMOJI) {
    const count = h('span', { class: 'count', 'data-testid': `reaction-count-${emoji}`, text: '0' });
    const btn = h('button', { type: 'button', class: 'reaction', 'data-testid': `reaction-${emoji}`, 'aria-pressed': 'false' },
      h('span', { class: 'emoji', 'aria-hidden': 'true', text: emoji }), count);
    btn.onclick = () => toggleReaction(G, emoji);
    v.react.set(emoji, { btn, count });
    v.els.reactions.append(btn);
  }
  paintReactions(G);
}

function paintReactions(G) {
  const v = G.viewer;
  if (!v || !v.react) return;
  for (const [emoji, { btn, count }] of v.react) {
    const r = v.reactions[emoji];
    count.textContent = String(r.count);
    btn.setAttribute('aria-pressed', String(r.mine));
    btn.setAttribute('aria-label', `${EMOJI_NAMES[emoji]}: ${r.count}${r.mine ? ', including you' : ''}`);
  }
}

async function toggleReaction(G, emoji) {
  const v = G.viewer, r = v.reactions[emoji], before = { ...r };
  Object.assign(r, { mine: !r.mine, count: Math.max(0, r.count + (r.mine ? -1 : 1)) }); // optimistic
  paintReactions(G);
  try {
    const { on, count } = await api('POST', itemPath(G, v.id, '/reactions'), { emoji });
    reacted(G, v.id, { emoji, user: app.me, on, count });
  } catch (e) {
    Object.assign(r, before);
    paintReactions(G);
    fail(e);
  }
}

// ---------------------------------------------------------------------------
// Video player: the item's adaptive ladder through hls.js when it has been packaged
// (docs/streaming.md), the original file otherwise. The device policy (/api/adapt)
// chooses the starting rung and caps the highest; the position is kept in the URL (#t=).

const HLS_URL = '/vendor/hls-1.7.4.min.js';
let hlsLoading = null;

/** hls.js, loaded once on the first packaged video (a classic script: it sets window.Hls). */
function loadHls() {
  hlsLoading = hlsLoading || new Promise((resolve, reject) => {
    const s = h('script', { src: HLS_URL });
    s.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load')));
    s.onerror = () => { hlsLoading = null; reject(new Error('hls.js did not load')); };
    document.head.append(s);
  });
  return hlsLoading;
}

let batteryManager = null;
const battery = () => {
  batteryManager = batteryManager || (navigator.getBattery ? navigator.getBattery().catch(() => null) : Promise.resolve(null));
  return batteryManager;
};

let planRequest = null;
/** The device's plan {start_height, cap_height, prefetch, …}; null when the server cannot be asked. */
function devicePlan() {
  planRequest = planRequest || (async () => {
    let pictureQuery = ''; // a discharging battery: the server may pick a format cheaper to decode
    const q = new URLSearchParams({ dpr: String(window.devicePixelRatio || 1), viewport: String(Math.round(window.innerWidth)) });
    const c = navigator.connection;
    if (c) {
      if (c.effectiveType) q.set('ect', c.effectiveType);
      if (Number.isFinite(c.downlink) && c.downlink > 0) q.set('downlink', String(c.downlink));
      if (Number.isFinite(c.rtt) && c.rtt > 0) q.set('rtt', String(c.rtt));
      if (c.saveData) q.set('save_data', 'on'); // absent: the Save-Data header decides
    }
    const b = await battery();
    if (b && Number.isFinite(b.level)) {
      q.set('battery', String(b.level));
      q.set('charging', String(!!b.charging));
      // In steps of 5 %, so picture URLs (and the browser's cache of them) rarely change.
      if (!b.charging) pictureQuery = `&battery=${(Math.floor(b.level * 20) / 20).toFixed(2)}&charging=false`;
    }
    try {
      const plan = (await api('GET', `/api/adapt?${q}`)).plan;
      app.plan = { ...plan, pictureQuery };
      return app.plan;
    } catch { return null; }
  })();
  return planRequest;
}

/** The device changed (network, battery): ask again and apply it to the playing video. */
async function replan(reason) {
  planRequest = null;
  const plan = await devicePlan();
  if (plan && app.player) app.player.apply(plan, reason);
}

function watchDevice() {
  navigator.connection?.addEventListener?.('change', () => replan('connection'));
  battery().then((b) => {
    b?.addEventListener?.('levelchange', () => replan('battery'));
    b?.addEventListener?.('chargingchange', () => replan('battery'));
  });
}

/** Index of the tallest level no taller than `height`; the lowest (hls.js sorts them by bit rate) if none is. */
function levelAtOrBelow(levels, height) {
  let best = -1;
  levels.forEach((l, i) => { if (l.height <= height && (best < 0 || l.height > levels[best].height)) best = i; });
  return Math.max(best, 0);
}

/** The position in the URL: `#t=12.3` (seconds). */
const urlTime = () => {
  const m = location.hash.match(/^#t=(\d+(?:\.\d+)?)$/);
  return m ? Number(m[1]) : 0;
};

/** The open item (and its position) in the URL, so a reload or a shared URL comes back to it. */
function setViewerUrl(id, t) {
  const q = new URLSearchParams(location.search);
  if (id) q.set('item', id); else q.delete('item');
  const s = q.toString();
  const url = `${location.pathname}${s ? `?${s}` : ''}${id && t > 0 ? `#t=${t.toFixed(1)}` : ''}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(history.state, '', url);
}

function stopPlayer() {
  if (app.player) app.player.destroy();
  app.player = null;
}

/** Plays video item `it` in `video`; `startAt` seconds in. */
async function playVideo(G, it, video, startAt) {
  const v = G.viewer, e = v.els;
  const state = window.__player = { item: it.id, engine: null, levels: [], playing: -1, cap: -1, start: -1, switches: [], plan: null };
  const stale = () => G.viewer !== v;
  let lastUrl = 0;
  const keep = () => {
    if (stale() || Date.now() - lastUrl < 1000 && !video.paused) return;
    lastUrl = Date.now();
    setViewerUrl(it.id, video.currentTime);
  };
  video.addEventListener('timeupdate', keep);
  for (const ev of ['seeked', 'pause']) video.addEventListener(ev, () => { lastUrl = 0; keep(); });
  const progressive = () => {
    state.engine = 'progressive';
    video.src = `${contentUrl(G, it.id)}${startAt ? `#t=${startAt}` : ''}`;
  };
  const master = itemPath(G, it.id, '/stream/master.m3u8');
  const [packaged, plan] = await Promise.all([
    fetch(master, { method: 'HEAD', credentials: 'same-origin', cache: 'no-store' }).then((r) => r.ok, () => false),
    devicePlan(),
  ]);
  if (stale()) return;
  state.plan = plan;
  if (!packaged) return progressive();
  const Hls = await loadHls().catch(() => null);
  if (stale()) return;
  if (!Hls || !Hls.isSupported()) {
    // Safari plays HLS itself (without our quality menu).
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      state.engine = 'native';
      video.src = `${master}${startAt ? `#t=${startAt}` : ''}`;
      return;
    }
    return progressive();
  }
  state.engine = 'hls';
  const hls = new Hls({
    autoStartLoad: false, // once the plan has chosen the first level
    enableWorker: false, // the CSP allows no blob: workers
    maxBufferLength: 12, // people flip through a gallery: do not fetch far ahead of what is watched
    backBufferLength: 30,
    abrEwmaFastVoD: 2,
    abrEwmaSlowVoD: 6,
  });
  // A ceiling from the network the browser reports, set when it reports a change.
  let netCeiling = Infinity, restoreAuto = -1;
  const player = app.player = {
    hls,
    destroy: () => { hls.destroy(); if (window.__player === state) state.engine = 'closed'; },
    apply(p, reason) {
      const levels = hls.levels;
      if (!p || !levels.length) return;
      state.plan = p;
      if (reason === 'connection') {
        const affordable = levelAtOrBelow(levels, p.start_height);
        netCeiling = affordable >= levels.length - 1 ? Infinity : affordable;
      }
      const cap = Math.min(levelAtOrBelow(levels, p.cap_height), netCeiling);
      hls.autoLevelCapping = state.cap = cap;
      // Above the new ceiling now: switch at once rather than play out the buffer ahead,
      // which the link or the battery can no longer afford to refill at that rung.
      if (hls.autoLevelEnabled && state.playing > cap) {
        restoreAuto = cap;
        hls.currentLevel = cap;
      }
    },
  };
  const menu = e.quality;
  const label = () => {
    const playing = hls.levels[state.playing];
    menu.options[0].textContent = playing && hls.autoLevelEnabled ? `Auto (${playing.height}p)` : 'Auto';
  };
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    if (stale()) return;
    const levels = hls.levels;
    state.levels = levels.map((l) => ({ height: l.height, bitrate: l.bitrate }));
    menu.replaceChildren(h('option', { value: 'auto', text: 'Auto' }),
      ...[...levels.keys()].reverse().map((i) => h('option', { value: String(i), text: `${levels[i].height}p` })));
    menu.value = 'auto';
    menu.onchange = () => {
      if (menu.value === 'auto') hls.loadLevel = -1; // back to ABR from the next segment
      else hls.currentLevel = Number(menu.value); // the viewer asked for it: now
      label();
    };
    e.qualityBox.hidden = levels.length < 2;
    if (plan) {
      player.apply(plan);
      hls.startLevel = state.start = Math.min(levelAtOrBelow(levels, plan.start_height), state.cap);
    }
    hls.startLoad(startAt || -1);
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, { level }) => {
    state.playing = level;
    state.switches.push({ level, height: hls.levels[level]?.height, at: Date.now() });
    if (level === restoreAuto) { restoreAuto = -1; if (menu.value === 'auto') hls.loadLevel = -1; }
    label();
  });
  hls.on(Hls.Events.ERROR, (_, d) => {
    if (!d.fatal || stale()) return;
    state.error = d.details;
    if (d.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
    // The ladder is unreadable: the original file still plays.
    stopPlayer();
    e.qualityBox.hidden = true;
    progressive();
  });
  hls.loadSource(master);
  hls.attachMedia(video);
}

/** The room the viewer shows a picture in, CSS pixels: {width, height}. */
function viewerBox(G) {
  const e = G.viewer.els, cs = getComputedStyle(e.stage);
  const width = e.stage.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const media = e.stage.querySelector('.media');
  const maxHeight = media ? parseFloat(getComputedStyle(media).maxHeight) : NaN; // the same rule for pictures and videos
  return { width: Math.max(1, width), height: Number.isFinite(maxHeight) ? maxHeight : window.innerHeight * 0.7 };
}

/** The width `it` is displayed at in the viewer: its own, within the box, aspect kept. */
const viewerSlot = (it, box) => Math.min(it.width, box.width, (box.height * it.width) / it.height);

/** The viewer's picture attributes for `it`: the same for the viewer and for its prefetch. */
function viewerPicture(G, it, box) {
  const { density, query } = pictureTerms();
  return { sizes: sizesOf(viewerSlot(it, box), density), srcset: srcsetOf(G, it, VIEWER_WIDTHS, query) };
}

/** Shows the open picture's render, once the viewer is laid out (it is sized by the room it has). */
async function showViewerPicture(G) {
  const v = G.viewer;
  await devicePlan();
  if (G.viewer !== v) return;
  const it = G.byId.get(v.id), img = v.els.picture;
  if (img && renderable(it)) fitViewerPicture(G);
  else if (img) img.src = contentUrl(G, it.id);
  v.box = v.box || viewerBox(G);
  prefetchAround(G);
}

/**
 * Sizes the viewer's render to the room it has now. Its CSS width is set: `sizes` is the
 * slot at the plan's density, not the screen's, so the picture's intrinsic width is not
 * the width to show it at.
 */
function fitViewerPicture(G) {
  const v = G.viewer, img = v?.els.picture, it = v && G.byId.get(v.id);
  if (!img || !renderable(it) || !img.isConnected) return;
  v.box = viewerBox(G);
  img.style.width = `${viewerSlot(it, v.box)}px`;
  Object.assign(img, viewerPicture(G, it, v.box));
}

/**
 * Warms the browser cache with the next items' pictures, as far ahead as the plan says:
 * the renders the viewer will ask for (same srcset and sizes), so stepping on is a hit.
 */
async function prefetchAround(G) {
  const v = G.viewer;
  const plan = await devicePlan();
  if (G.viewer !== v || !plan) return;
  const i = G.items.findIndex((x) => x.id === v.id);
  v.prefetched = []; // held, so the loads are not dropped with the elements
  for (const it of G.items.slice(i + 1, i + 1 + plan.prefetch)) {
    const kind = kindOf(it), img = new Image();
    if (renderable(it)) Object.assign(img, viewerPicture(G, it, v.box || viewerBox(G)));
    else if (kind === 'image') img.src = contentUrl(G, it.id);
    else if (kind === 'video') img.src = thumbUrl(G, it, 1024);
    else continue;
    v.prefetched.push(img);
  }
}

// ---------------------------------------------------------------------------
// Viewer

function closeViewer() {
  const dlg = $('#viewer');
  if (dlg && dlg.open) dlg.close();
}

function onViewerClose() {
  const dlg = $('#viewer');
  if (dlg.open) return; // reopened in the same task
  document.body.append($('#live'), $('#toasts')); // back out of the dialog
  stopPlayer();
  dlg.replaceChildren(); // stops playback and frees the full-size image
  const G = app.gallery;
  if (!G || !G.viewer) return;
  if (new URLSearchParams(location.search).get('item') === G.viewer.id) setViewerUrl(null);
  const btn = G.tiles.get(G.viewer.id);
  G.viewer = null;
  if (btn) btn.focus();
}

function openViewer(G, id, startAt = 0) {
  const dlg = $('#viewer');
  G.viewer = newViewerState(G, id);
  G.viewer.startAt = startAt;
  renderViewer(G);
  if (!dlg.open) dlg.showModal();
  G.viewer.els.close.focus();
  refreshViewer(G, true);
}

const newViewerState = (G, id) => ({
  id, detail: null, reactions: reactionState(G.byId.get(id)), draw: false, draft: null, replyTo: null, editing: false, fetch: 0,
});

async function stepViewer(G, delta) {
  const v = G.viewer;
  if (!v) return;
  let i = G.items.findIndex((x) => x.id === v.id) + delta;
  if (i >= G.items.length && !G.done) { await loadPage(G); i = Math.min(i, G.items.length - 1); }
  if (i < 0 || i >= G.items.length || G.viewer !== v) return;
  const focused = document.activeElement?.dataset?.testid;
  const id = G.items[i].id;
  G.viewer = newViewerState(G, id);
  renderViewer(G);
  const again = focused && $(`#viewer [data-testid="${focused}"]`); // keep focus on prev/next
  (again && !again.disabled ? again : G.viewer.els.close).focus();
  const tile = G.tiles.get(id);
  if (tile) tile.scrollIntoView({ block: 'nearest' });
  refreshViewer(G, true);
}

/** Re-reads the open item with its discussion {comments, annotations, reactions}; later answers win. */
function refreshViewer(G, now = false) {
  clearTimeout(G.viewerTimer);
  G.viewerTimer = setTimeout(async () => {
    const v = G.viewer;
    if (!v) return;
    const ticket = ++v.fetch;
    try {
      const d = await api('GET', itemPath(G, v.id));
      if (G.viewer !== v || ticket !== v.fetch) return;
      v.detail = d;
      v.reactions = reactionState(d, d.discussion.reactions);
      paintReactions(G);
      renderAnnotations(G);
      renderComments(G);
      syncTile(G, v.id, d);
    } catch (e) {
      if (G.viewer !== v) return;
      if (e.status === 404) { closeViewer(); toast('This item no longer exists.', 'info'); } else fail(e);
    }
  }, now ? 0 : 120);
}

function renderViewer(G) {
  stopPlayer();
  const v = G.viewer;
  const e = v.els = use('tpl-viewer');
  const it = G.byId.get(v.id);
  const idx = G.items.indexOf(it);
  $('#viewer').dataset.itemId = v.id;
  e.title.textContent = it.name;
  e.pos.textContent = `${idx + 1} of ${G.total}`;
  e.prev.disabled = idx <= 0;
  e.next.disabled = idx >= G.items.length - 1 && G.done;
  e.prev.onclick = () => stepViewer(G, -1);
  e.next.onclick = () => stepViewer(G, 1);
  e.close.onclick = closeViewer;
  e.download.href = contentUrl(G, v.id);
  e.download.download = it.name;
  e.stage.prepend(mediaFor(G, it));
  e.caption.textContent = [it.type, fmtSize(it.size), it.width && it.height ? `${it.width}×${it.height}` : '',
    it.duration != null ? fmtDuration(it.duration) : '', it.author ? `by ${it.author}` : '', fmtDate(new Date(it.modified))]
    .filter(Boolean).join(' · ');
  buildReactions(G);
  buildAnnotationForms(G, kindOf(it));
  buildCommentForm(G);
  // The live regions move into the modal dialog: outside it they are inert.
  $('#viewer').replaceChildren(e.frag, $('#live'), $('#toasts'));
  setViewerUrl(v.id, v.startAt);
  showViewerPicture(G); // after the callers open the dialog: it measures the room
}

function mediaFor(G, it) {
  const e = G.viewer.els, kind = kindOf(it), src = contentUrl(G, it.id);
  if (kind === 'image') {
    // Progressive: the BlurHash, the 1024 thumbnail over it, then the render (its source
    // set once the viewer is laid out, showViewerPicture). Without a render, the original;
    // when the browser cannot decode that either (HEIC, RAW…), the thumbnail stays.
    const thumb = thumbUrl(G, it, 1024);
    const img = e.picture = h('img', { class: 'media', alt: it.name, draggable: false, decoding: 'async', width: it.width, height: it.height,
      'data-testid': 'viewer-picture' });
    img.onerror = () => {
      if (img.srcset) { img.removeAttribute('srcset'); img.removeAttribute('sizes'); img.src = src; return; }
      img.onerror = null;
      img.src = thumb;
    };
    e.overlay = h('div', { class: 'overlay', 'aria-hidden': 'true' });
    drawHandlers(G, e.overlay);
    const layers = [`url("${thumb}")`];
    if (it.placeholder) layers.push(`url("${placeholderCanvas(it.placeholder).toDataURL()}")`);
    const wrap = h('div', { class: 'image-wrap' }, img, e.overlay);
    wrap.style.backgroundImage = layers.join(', ');
    e.original.href = src;
    e.original.textContent = `Open the original${it.width ? ` (${it.width}×${it.height}, ${fmtSize(it.size)})` : ''}`;
    e.original.hidden = false;
    return wrap;
  }
  if (kind === 'video') {
    e.player = h('video', { class: 'media', controls: true, preload: 'metadata', playsinline: true, poster: thumbUrl(G, it, 1024),
      'data-testid': 'video' });
    playVideo(G, it, e.player, G.viewer.startAt || 0);
    return e.player;
  }
  if (kind === 'audio') {
    e.player = h('audio', { class: 'media', src, controls: true, preload: 'metadata' });
    return e.player;
  }
  return h('p', { class: 'no-preview' }, 'No preview for this type. ', h('a', { href: src, download: it.name, text: `Download ${it.name}` }));
}

/** The open item's discussion (empty until its detail is in). */
const talk = (v) => v.detail?.discussion ?? { comments: [], annotations: [], reactions: [] };
const discussionPath = (G, kind, id) => itemPath(G, G.viewer.id, `/${kind}/${enc(id)}`);

// Annotations: {id, author, text, created, edited, region: {x, y, w, h} | time: {start, end}}

/** Contributors get the box form (images) or the time form (video, audio); others neither. */
function buildAnnotationForms(G, kind) {
  const e = G.viewer.els;
  const can = atLeast(G, 'contributor');
  if (!(can && kind === 'image')) e.regionForm.remove();
  if (!(can && (kind === 'video' || kind === 'audio'))) e.timeForm.remove();
  if (!can) return;
  const floor = (n) => Math.floor(n * 10000) / 10000; // down, so that x + w stays <= 1
  e.regionForm.hidden = e.timeForm.hidden = false;
  e.drawButton.onclick = () => setDrawing(G, !G.viewer.draw);
  e.regionForm.onsubmit = (ev) => {
    ev.preventDefault();
    const r = G.viewer.draft || { x: 0, y: 0, w: 1, h: 1 };
    const x = floor(r.x), y = floor(r.y);
    postAnnotation(G, e.regionText, { region: { x, y, w: Math.min(floor(r.w), floor(1 - x)), h: Math.min(floor(r.h), floor(1 - y)) } });
  };
  e.now.onclick = () => {
    if (!e.player) return;
    const t = e.player.currentTime.toFixed(1);
    if (e.start.value === '') e.start.value = t; else e.end.value = t;
  };
  e.timeForm.onsubmit = (ev) => {
    ev.preventDefault();
    const start = Number(e.start.value), end = e.end.value === '' ? start : Number(e.end.value);
    if (end < start) return toast('The end must not be before the start.');
    postAnnotation(G, e.timeText, { time: { start, end } });
    e.start.value = e.end.value = '';
  };
}

async function postAnnotation(G, input, where) {
  const v = G.viewer;
  const text = input.value.trim();
  if (!text) return;
  try {
    await api('POST', itemPath(G, v.id, '/annotations'), { text, ...where });
    input.value = '';
    v.draft = null;
    setDrawing(G, false);
    announce('Annotation added');
    refreshViewer(G, true);
  } catch (e) { fail(e); }
}

function setDrawing(G, on) {
  const v = G.viewer;
  v.draw = on;
  if (v.els.drawButton) v.els.drawButton.setAttribute('aria-pressed', String(on));
  if (v.els.overlay) v.els.overlay.classList.toggle('drawing', on);
  renderBoxes(G);
}

function drawHandlers(G, overlay) {
  let start = null;
  const at = (ev) => {
    const r = overlay.getBoundingClientRect();
    return { x: clamp((ev.clientX - r.left) / r.width, 0, 1), y: clamp((ev.clientY - r.top) / r.height, 0, 1) };
  };
  overlay.addEventListener('pointerdown', (ev) => {
    if (!G.viewer || !G.viewer.draw) return;
    ev.preventDefault();
    overlay.setPointerCapture(ev.pointerId);
    start = at(ev);
    G.viewer.draft = { ...start, w: 0, h: 0 };
    renderBoxes(G);
  });
  overlay.addEventListener('pointermove', (ev) => {
    if (!start || !G.viewer) return;
    const p = at(ev);
    G.viewer.draft = { x: Math.min(start.x, p.x), y: Math.min(start.y, p.y), w: Math.abs(p.x - start.x), h: Math.abs(p.y - start.y) };
    renderBoxes(G);
  });
  const finish = () => {
    if (!start || !G.viewer) return;
    start = null;
    const d = G.viewer.draft;
    if (!d || d.w < 0.01 || d.h < 0.01) G.viewer.draft = null; // a click, not a box
    renderBoxes(G);
    if (G.viewer.draft) G.viewer.els.regionText.focus();
  };
  overlay.addEventListener('pointerup', finish);
  overlay.addEventListener('pointercancel', finish);
}

function renderBoxes(G) {
  const v = G.viewer;
  if (!v || !v.els.overlay) return;
  const pct = (n) => `${(n * 100).toFixed(3)}%`;
  const box = (r, cls, text) => h('div', { class: `box ${cls}`, style: `left:${pct(r.x)};top:${pct(r.y)};width:${pct(r.w)};height:${pct(r.h)}` },
    text ? h('span', { class: 'label', text }) : null);
  const boxes = talk(v).annotations.filter((a) => a.region).map((a) => box(a.region, '', a.text));
  if (v.draft) boxes.push(box(v.draft, 'draft', ''));
  v.els.overlay.replaceChildren(...boxes);
}

function renderAnnotations(G) {
  const v = G.viewer;
  if (!v || v.editing) return;
  const items = talk(v).annotations.map((a) => {
    const text = h('span', { class: 'ann-text', text: a.text });
    const where = a.time
      ? h('button', { type: 'button', class: 'seek', 'aria-label': `Play from ${fmtDuration(a.time.start)}`,
        text: `▶ ${fmtDuration(a.time.start)}–${fmtDuration(a.time.end)}`, onclick: () => seek(G, a.time.start) })
      : h('span', { class: 'where', 'aria-hidden': 'true', text: '▭' });
    return h('li', { class: 'annotation', 'data-testid': 'annotation', 'data-annotation-id': a.id },
      where, ' ', text, h('span', { class: 'muted', text: a.author ? ` — ${a.author}` : '' }),
      actionsFor(G, a, {
        path: discussionPath(G, 'annotations', a.id), textEl: text, what: 'annotation', ownNeeds: 'contributor',
      }));
  });
  v.els.annList.replaceChildren(...(items.length ? items : [h('li', { class: 'muted', text: 'No annotations.' })]));
  renderBoxes(G);
}

function seek(G, t) {
  const p = G.viewer && G.viewer.els.player;
  if (!p) return;
  p.currentTime = t;
  p.play().catch(() => { /* autoplay rules: the user can press play */ });
}

/** Edit (own) and delete (own, or moderator+) buttons shared by comments and annotations: PATCH/DELETE on `path`. */
function actionsFor(G, obj, { path, textEl, what, ownNeeds }) {
  const own = obj.author != null && obj.author === app.me && atLeast(G, ownNeeds);
  const box = h('span', { class: 'actions' });
  if (obj.deleted) return box;
  if (own) {
    box.append(h('button', { type: 'button', class: 'link', text: 'Edit', 'aria-label': `Edit ${what}`,
      onclick: () => inlineEdit(G, textEl, obj.text, (text) => api('PATCH', path, { text })) }));
  }
  if (own || atLeast(G, 'moderator')) {
    box.append(h('button', { type: 'button', class: 'link danger', text: 'Delete', 'aria-label': `Delete ${what}`,
      onclick: async () => {
        if (!confirm(`Delete this ${what}?`)) return;
        try { await api('DELETE', path); refreshViewer(G, true); } catch (e) { fail(e); }
      } }));
  }
  return box;
}

/** Swaps a text for a textarea; list re-renders wait (v.editing) so live events don't eat it. */
function inlineEdit(G, textEl, initial, save) {
  const v = G.viewer;
  v.editing = true;
  const area = h('textarea', { rows: 2, value: initial, 'aria-label': 'Edit text', 'data-testid': 'edit-input' });
  const done = () => { if (G.viewer === v) { v.editing = false; renderComments(G); renderAnnotations(G); } };
  const form = h('form', { class: 'edit-form' }, area,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary small', text: 'Save' }),
      h('button', { type: 'button', class: 'small', text: 'Cancel', onclick: done })));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    try { await save(area.value.trim()); refreshViewer(G, true); } catch (e) { fail(e); }
    done();
  };
  textEl.replaceWith(form);
  area.focus();
}

// Comments: {id, parent, author, text, created, edited, deleted}; times in unix seconds

function buildCommentForm(G) {
  const e = G.viewer.els;
  e.commentInput.onkeydown = (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) e.commentForm.requestSubmit(); };
  e.commentForm.onsubmit = (ev) => { ev.preventDefault(); postComment(G); };
}

function renderComments(G) {
  const v = G.viewer;
  if (!v || v.editing) return;
  const all = talk(v).comments;
  const ids = new Set(all.map((c) => c.id));
  const kids = new Map(); // parent id ('' for the top) -> comments
  for (const c of all) {
    // A deleted comment whose replies were all deleted goes for good: replies left below it move up.
    const p = ids.has(c.parent) ? c.parent : '';
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(c);
  }
  const node = (c) => commentNode(G, c, (kids.get(c.id) || []).map(node));
  const top = (kids.get('') || []).map(node);
  v.els.commentList.replaceChildren(...(top.length ? top : [h('li', { class: 'muted', text: 'No comments yet.' })]));
  v.els.commentsTitle.textContent = `Comments (${all.filter((c) => !c.deleted).length})`;
}

function commentNode(G, c, replies) {
  const text = h('p', { class: 'comment-text', 'data-testid': 'comment-text', text: c.deleted ? '(deleted)' : c.text });
  const actions = actionsFor(G, c, { path: discussionPath(G, 'comments', c.id), textEl: text, what: 'comment', ownNeeds: 'viewer' });
  if (!c.deleted) {
    actions.prepend(h('button', { type: 'button', class: 'link', text: 'Reply', 'aria-label': `Reply to ${c.author ?? 'comment'}`,
      onclick: () => setReply(G, c) }));
  }
  const created = unix(c.created);
  const art = h('article', { class: 'comment', 'data-testid': 'comment', 'data-comment-id': c.id },
    h('header', {}, h('strong', { text: c.author ?? 'someone' }), ' ',
      h('time', { datetime: created.toISOString(), class: 'muted', text: fmtDate(created) }),
      c.edited ? h('span', { class: 'muted', text: ' (edited)' }) : null),
    text, actions);
  return h('li', {}, art, replies.length ? h('ul', { class: 'replies' }, replies) : null);
}

function setReply(G, c) {
  const v = G.viewer;
  v.replyTo = c ? c.id : null;
  v.els.replyNote.hidden = !c;
  if (c) {
    v.els.replyNote.replaceChildren(`Replying to ${c.author ?? 'a comment'} `,
      h('button', { type: 'button', class: 'link', text: 'Cancel reply', onclick: () => setReply(G, null) }));
  }
  v.els.commentInput.focus();
}

async function postComment(G) {
  const v = G.viewer, e = v.els;
  const text = e.commentInput.value.trim();
  if (!text) return;
  e.commentSubmit.disabled = true;
  try {
    const c = await api('POST', itemPath(G, v.id, '/comments'), { text, parent: v.replyTo });
    if (G.viewer !== v) return;
    e.commentInput.value = '';
    if (v.detail) { // the answer is the comment: show it at once
      v.detail.discussion.comments.push(c);
      renderComments(G);
    }
    setReply(G, null);
    announce('Comment posted');
    refreshViewer(G);
  } catch (err) {
    fail(err);
  } finally {
    e.commentSubmit.disabled = false;
  }
}

function viewerKeys(e) {
  const G = app.gallery;
  if (!$('#viewer').open || !G || !G.viewer) return;
  if (e.target.closest && e.target.closest('input, textarea, select, video, audio, [contenteditable]')) return;
  if (e.key === 'ArrowLeft') { e.preventDefault(); stepViewer(G, -1); }
  if (e.key === 'ArrowRight') { e.preventDefault(); stepViewer(G, 1); }
}

/** Esc first abandons a box being drawn, then closes the viewer. */
function onViewerCancel(e) {
  const v = app.gallery && app.gallery.viewer;
  if (v && (v.draw || v.draft)) {
    e.preventDefault();
    v.draft = null;
    setDrawing(app.gallery, false);
  }
}

// ---------------------------------------------------------------------------
// Uploads (tus 1.0.0 on /uploads, metadata `gallery`, `filename` and `folder`: the file
// lands in the folder being viewed, as `name (2).ext` when the name is taken)

const hasFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');

function dropHandlers(G, zone) {
  let depth = 0; // dragenter/leave fire for every child crossed
  const allowed = () => atLeast(G, 'contributor');
  const on = (type, fn) => zone.addEventListener(type, (e) => { if (hasFiles(e)) { e.preventDefault(); fn(e); } });
  on('dragenter', () => { depth++; zone.classList.toggle('dragging', allowed()); });
  on('dragover', (e) => { e.dataTransfer.dropEffect = allowed() ? 'copy' : 'none'; });
  zone.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; zone.classList.remove('dragging'); } });
  on('drop', (e) => {
    depth = 0;
    zone.classList.remove('dragging');
    if (allowed()) queueUploads(G, [...e.dataTransfer.files]);
    else toast('Your role in this gallery cannot upload.');
  });
}

function queueUploads(G, files) {
  for (const file of files) {
    const row = uploadRow(G, file);
    G.uploading = (G.uploading || Promise.resolve()).then(() => runUpload(G, file, row)); // one at a time
  }
}

let uploadCounter = 0;
function uploadRow(G, file) {
  const bar = h('progress', { id: `upload-${++uploadCounter}`, max: Math.max(1, file.size), value: 0,
    'data-testid': 'upload-progress', 'data-name': file.name, 'data-state': 'queued' });
  const pct = h('span', { class: 'pct', 'data-testid': 'upload-status', text: 'queued' });
  const dismiss = h('button', { type: 'button', class: 'link', hidden: true, text: 'Dismiss', 'aria-label': `Dismiss ${file.name}` });
  const li = h('li', { class: 'upload' }, h('label', { for: bar.id, text: file.name }), bar, pct, dismiss);
  dismiss.onclick = () => li.remove();
  G.els.uploads.append(li);
  return {
    // The bar reaches its max only when the server confirms the last byte.
    progress(sent) {
      bar.value = Math.min(sent, bar.max - 1);
      bar.dataset.state = 'uploading';
      pct.textContent = `${Math.floor((100 * bar.value) / bar.max)}%`;
    },
    note(msg) { pct.textContent = msg; },
    done(where) { bar.value = bar.max; bar.dataset.state = 'done'; pct.textContent = `100% · done${where}`; dismiss.hidden = false; },
    failed(msg) { bar.dataset.state = 'failed'; li.classList.add('failed'); pct.textContent = `failed: ${msg}`; dismiss.hidden = false; },
  };
}

async function runUpload(G, file, row) {
  announce(`Uploading ${file.name}`);
  row.progress(0);
  try {
    await tusUpload(G.id, G.folder, file, (n) => row.progress(n), (m) => row.note(m));
    row.done('');
    announce(`${file.name} uploaded`);
  } catch (e) {
    row.failed(e.message);
    announce(`Upload of ${file.name} failed: ${e.message}`);
  }
}

function b64utf8(s) {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}

const tusHeaders = (extra) => ({ 'Tus-Resumable': '1.0.0', ...extra });

/** An upload error ({"error"}); fatal ones (most 4xx) are not retried, `gone` ones forget the upload URL. */
function tusError(status, bodyText) {
  let msg = String(status);
  try { msg = JSON.parse(bodyText).error; } catch { /* HEAD has no body */ }
  const fatal = status >= 400 && status < 500 && ![408, 409, 423, 429].includes(status);
  return Object.assign(new Error(msg), { status, fatal, gone: status === 404 || status === 410 });
}

async function tusCreate(galleryId, folder, file) {
  const res = await fetch('/uploads', {
    method: 'POST', credentials: 'same-origin',
    headers: tusHeaders({
      'Upload-Length': String(file.size),
      'Upload-Metadata': [`gallery ${b64utf8(galleryId)}`, `filename ${b64utf8(file.name)}`,
        ...(folder ? [`folder ${b64utf8(String(folder))}`] : [])].join(','),
    }),
  });
  if (res.status !== 201) throw tusError(res.status, await res.text());
  return new URL(res.headers.get('Location'), location.href).href;
}

async function tusHead(url) {
  const res = await fetch(url, { method: 'HEAD', credentials: 'same-origin', cache: 'no-store', headers: tusHeaders() });
  if (!res.ok) throw tusError(res.status, '');
  return Number(res.headers.get('Upload-Offset'));
}

/** One PATCH of up to CHUNK bytes through XHR, for upload progress; resolves to the new offset. */
function tusPatch(url, file, offset, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PATCH', url);
    const headers = tusHeaders({ 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' });
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(offset + e.loaded);
    xhr.onload = () => {
      if (xhr.status !== 204) return reject(tusError(xhr.status, xhr.responseText));
      const next = Number(xhr.getResponseHeader('Upload-Offset'));
      if (next > offset) resolve(next);
      else reject(new Error('the server did not advance the offset'));
    };
    xhr.onerror = () => reject(new Error('network error'));
    xhr.send(file.slice(offset, Math.min(file.size, offset + CHUNK)));
  });
}

/** Creates (or resumes, after a reload) an upload and sends it, retrying with backoff. */
async function tusUpload(galleryId, folder, file, onProgress, onNote) {
  const key = `nanofs.tus:${galleryId}:${folder}:${file.name}:${file.size}:${file.lastModified}`;
  let url = storage.get(key);
  let offset = 0;
  if (url) {
    try { offset = await tusHead(url); } catch { url = null; storage.remove(key); }
  }
  for (let tries = 0; !url; tries++) {
    try {
      url = await tusCreate(galleryId, folder, file);
      storage.set(key, url);
    } catch (e) {
      if (e.fatal || tries >= 2) throw e;
      await sleep(1000 * 2 ** tries);
    }
  }
  onProgress(offset);
  for (let failures = 0; offset < file.size;) {
    try {
      offset = await tusPatch(url, file, offset, onProgress);
      failures = 0;
    } catch (e) {
      if (e.gone) storage.remove(key);
      if (e.fatal || ++failures > UPLOAD_RETRIES) throw e;
      const wait = Math.min(30, 2 ** failures);
      onNote(`${e.message}; retrying in ${wait} s…`);
      await sleep(wait * 1000);
      try {
        offset = await tusHead(url); // where the server really is
      } catch (e2) {
        if (e2.fatal) { storage.remove(key); throw e2; }
      }
    }
  }
  storage.remove(key);
}

// ---------------------------------------------------------------------------
// Members ({members: {user: role}}) and share links (moderator and owner)

const memberPath = (G, user) => gPath(G, `/members/${enc(user)}`);

function showMembers(G, members) {
  if (app.gallery !== G) return;
  G.members = Object.entries(members).map(([user, role]) => ({ user, role }));
  renderMembers(G);
}

async function loadMembers(G) {
  try { showMembers(G, (await api('GET', gPath(G, '/members'))).members); } catch (e) { fail(e); }
}

/** A members change; its answer carries the new members. Resolves to whether it worked. */
async function memberCall(G, method, path, body, message) {
  try {
    const { members } = await api(method, path, body);
    announce(message);
    await loadInfo(G); // my own role may have changed (transfer, self-demotion)
    if (atLeast(G, 'moderator')) showMembers(G, members);
    return true;
  } catch (e) {
    fail(e);
    if (app.gallery === G) renderMembers(G); // undo the select's change
    return false;
  }
}

function renderMembers(G) {
  const e = G.els;
  const assignable = ['viewer', 'contributor', 'moderator']; // the owner role moves only by transfer
  e.memberRows.replaceChildren(...G.members.map((m) => {
    const locked = m.role === 'owner';
    const role = locked ? h('span', { text: 'owner' })
      : h('select', { 'aria-label': `Role of ${m.user}`, 'data-testid': 'member-role-select',
        onchange: (ev) => memberCall(G, 'PUT', memberPath(G, m.user), { role: ev.target.value }, `${m.user} is now ${ev.target.value}`) },
      options(assignable, m.role));
    const remove = locked ? null : h('button', { type: 'button', class: 'link danger', text: 'Remove', 'aria-label': `Remove ${m.user}`,
      onclick: () => { if (confirm(`Remove ${m.user} from this gallery?`)) memberCall(G, 'DELETE', memberPath(G, m.user), undefined, `${m.user} removed`); } });
    return h('tr', { 'data-testid': 'member', 'data-user': m.user }, h('th', { scope: 'row', text: m.user }), h('td', {}, role), h('td', {}, remove));
  }));
  const others = G.members.filter((m) => m.role !== 'owner').map((m) => m.user);
  e.transfer.hidden = G.role !== 'owner' || !others.length;
  e.newOwner.replaceChildren(...options(others, e.newOwner.value));
}

/** {links: [{id, role, created, expires, created_by, password}]}: expired links stay listed until revoked. */
async function loadLinks(G) {
  try {
    const { links } = await api('GET', gPath(G, '/links'));
    if (app.gallery !== G) return;
    const now = Date.now() / 1000;
    const items = links.map((l) => h('li', { class: 'link-row', 'data-testid': 'link', 'data-link-id': l.id },
      h('span', { text: [`${l.role} link`, `${l.expires <= now ? 'expired' : 'expires'} ${fmtDate(unix(l.expires))}`,
        l.created_by ? `by ${l.created_by}` : '', l.password ? 'password' : ''].filter(Boolean).join(' · ') }),
      h('button', { type: 'button', class: 'link danger', text: 'Revoke', 'aria-label': `Revoke ${l.role} link ${l.id}`,
        onclick: () => revokeLink(G, l) })));
    G.els.linkList.replaceChildren(...(items.length ? items : [h('li', { class: 'muted', text: 'No links.' })]));
  } catch (e) { fail(e); }
}

/** The answer {link, token, url} is the only time the token is seen; url is /s/<token>. */
async function createLink(G) {
  const e = G.els;
  const body = { role: e.linkRole.value, expires_in_secs: Number(e.linkExpiry.value), password: e.linkPassword.value || undefined };
  try {
    const { url } = await api('POST', gPath(G, '/links'), body);
    e.linkUrl.value = new URL(url, location.href).href;
    e.linkCopy.textContent = 'Copy';
    e.linkPassword.value = '';
    e.newLink.hidden = false;
    e.linkUrl.select();
    announce('Share link created');
    loadLinks(G);
  } catch (err) { fail(err); }
}

async function copyLink(G) {
  const e = G.els;
  try { await navigator.clipboard.writeText(e.linkUrl.value); } catch { e.linkUrl.select(); document.execCommand('copy'); }
  e.linkCopy.textContent = 'Copied';
  announce('Link copied');
}

async function revokeLink(G, l) {
  if (!confirm('Revoke this link? Everyone using it loses access at once.')) return;
  try {
    await api('DELETE', gPath(G, `/links/${enc(l.id)}`));
    announce('Link revoked');
    loadLinks(G);
  } catch (e) { fail(e); }
}

// ---------------------------------------------------------------------------
// Start

async function boot() {
  document.addEventListener('click', interceptLinks);
  document.addEventListener('keydown', viewerKeys);
  window.addEventListener('popstate', route);
  // A file dropped outside the drop zone must not navigate away from the app.
  window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener('drop', (e) => { if (hasFiles(e)) e.preventDefault(); });
  $('#viewer').addEventListener('close', onViewerClose);
  $('#viewer').addEventListener('cancel', onViewerCancel);
  watchDevice();
  window.addEventListener('resize', () => { if (app.gallery?.viewer) fitViewerPicture(app.gallery); });
  if (!location.pathname.startsWith('/s/')) { // a share link opens its own session
    try {
      setMe(await api('GET', '/api/me'));
    } catch (e) {
      if (e.status !== 401) toast(e.message);
    }
  }
  route();
}

boot();
