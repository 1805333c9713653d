// The embedded Videoflix page. It talks only to the public API (the same endpoints the real frontend
// uses), so anything that works here works for the real client too. No framework on purpose: this page
// is a window into the platform, not a product.
"use strict";

// Every endpoint in one place; paths are relative so the page also works under a path prefix.
const API = {
  me: "users/me/",
  login: "users/login/",
  register: "users/register/",
  refresh: "users/refresh/",
  logout: "users/logout/",
  forgot: "users/forgot-password/",
  reset: "users/reset-password/",
  content: "content/",
  favorite: "content/add-favorite/",
  videoUrl: (id, quality) => `content/video-url/${id}/?quality=${encodeURIComponent(quality)}`,
  hlsMaster: (id) => `videos/${id}/hls/master.m3u8`,
  upload: "videos/upload/",
};

const POLL_MS = 1500;

const state = {
  user: null,
  videos: [],
  favorites: new Set(),
  onlyFavorites: false,
  pollTimer: null,
  hls: null,
  playing: null,
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, body) {
    super(describeError(body) || `Request failed (${status})`);
    this.status = status;
    this.body = body;
  }
}

// DRF-shaped errors: {"detail": "..."} or {"field": ["message", ...]}; FastAPI adds [{loc, msg}].
function describeError(body) {
  if (!body || typeof body !== "object") return "";
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || String(d)).join("; ");
  return Object.entries(body)
    .map(([field, msgs]) => `${field}: ${Array.isArray(msgs) ? msgs.join(" ") : String(msgs)}`)
    .join("; ");
}

async function parseBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

// Like the real client: on 401 refresh once, then retry with X-Retry so the server can tell.
async function api(path, { method = "GET", json, retry = true } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, credentials: "include", headers };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  if (!retry) headers["X-Retry"] = "1";
  let response = await fetch(path, init);
  if (response.status === 401 && retry && path !== API.refresh && path !== API.login) {
    const refreshed = await fetch(API.refresh, { method: "POST", credentials: "include" });
    if (refreshed.ok) return api(path, { method, json, retry: false });
  }
  const body = await parseBody(response);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function flash(message, bad = false) {
  const el = $("flash");
  el.textContent = message;
  el.classList.toggle("bad", bad);
  el.hidden = !message;
}

function showError(name, message) {
  const el = document.querySelector(`.error[data-for="${name}"]`);
  if (el) el.textContent = message || "";
}

// ---- views ---------------------------------------------------------------------------------------

function showSignedOut() {
  state.user = null;
  stopPolling();
  closePlayer();
  $("nav").hidden = true;
  $("grid-view").hidden = true;
  $("upload-view").hidden = true;
  $("auth-view").hidden = false;
}

function showSignedIn(user) {
  state.user = user;
  state.favorites = new Set(user.favorite_videos || []);
  $("auth-view").hidden = true;
  $("nav").hidden = false;
  $("grid-view").hidden = false;
  $("user-email").textContent = user.email || "";
  $("open-upload").hidden = !isStaff(user);
  refreshVideos();
}

function isStaff(user) {
  return Boolean(user && user.is_staff);
}

// One of the auth forms: "login", "register", "forgot" or "reset".
function selectTab(which) {
  $("tab-login").setAttribute("aria-selected", String(which !== "register"));
  $("tab-register").setAttribute("aria-selected", String(which === "register"));
  for (const name of ["login", "register", "forgot", "reset"]) {
    $(`${name}-form`).hidden = name !== which;
    showError(name, "");
  }
}

// ---- auth ----------------------------------------------------------------------------------------

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = new FormData(form);
  showError("login", "");
  try {
    const user = await api(API.login, {
      method: "POST",
      json: {
        email: data.get("email"),
        password: data.get("password"),
        remember: data.get("remember") === "on",
      },
    });
    form.reset();
    flash("");
    // The login answer is the contract's public user; ask for the full one (staff flag) if we can.
    showSignedIn(await loadMe(user));
  } catch (err) {
    showError("login", err.message);
  }
}

async function onRegister(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = new FormData(form);
  showError("register", "");
  try {
    await api(API.register, {
      method: "POST",
      json: {
        email: data.get("email"),
        password: data.get("password"),
        confirm_password: data.get("confirm_password"),
      },
    });
    form.reset();
    selectTab("login");
    flash("Registered. Confirm your e-mail address with the link we sent, then sign in.");
  } catch (err) {
    showError("register", err.message);
  }
}

async function onForgot(event) {
  event.preventDefault();
  const form = event.currentTarget;
  showError("forgot", "");
  try {
    await api(API.forgot, { method: "POST", json: { email: new FormData(form).get("email") } });
    form.reset();
    selectTab("login");
    flash("If an account uses this address, a link to reset the password is on its way.");
  } catch (err) {
    showError("forgot", err.message);
  }
}

async function onReset(event) {
  event.preventDefault();
  const form = event.currentTarget;
  showError("reset", "");
  try {
    await api(API.reset, {
      method: "POST",
      json: {
        uid: Number(form.dataset.uid),
        token: form.dataset.token,
        new_password: new FormData(form).get("new_password"),
      },
    });
    form.reset();
    selectTab("login");
    flash("Password changed. Sign in with the new one.");
  } catch (err) {
    showError("reset", err.message);
  }
}

// E-mail links land on /login?confirmed=… and /reset-password?uid=…&token=… (the frontend's
// paths), so the embedded page can serve as the frontend for them.
function handleLandingLink() {
  const params = new URLSearchParams(window.location.search);
  const path = window.location.pathname.replace(/\/+$/, "");
  let form = null;
  if (path.endsWith("/login") && params.has("confirmed")) {
    if (params.get("confirmed") === "1") flash("E-mail address confirmed. You can sign in now.");
    else flash("This confirmation link is invalid or has expired.", true);
  } else if (path.endsWith("/reset-password") && params.has("uid") && params.has("token")) {
    form = "reset";
    $("reset-form").dataset.uid = params.get("uid");
    $("reset-form").dataset.token = params.get("token");
  }
  if (path.endsWith("/login") || path.endsWith("/reset-password")) {
    // The token must not linger in the address bar or the history.
    window.history.replaceState(null, "", "./");
  }
  return form;
}

async function loadMe(fallback) {
  try {
    return await api(API.me);
  } catch (err) {
    if (fallback && err.status !== 401) return fallback;
    throw err;
  }
}

async function onLogout() {
  try {
    await api(API.logout, { method: "POST" });
  } catch {
    // Signed out either way: an expired session cannot be logged out twice.
  }
  showSignedOut();
}

// ---- video grid ----------------------------------------------------------------------------------

function isUnfinished(video) {
  return video.processing_state === "pending" || video.processing_state === "processing";
}

async function refreshVideos() {
  try {
    state.videos = await api(API.content);
  } catch (err) {
    if (err.status === 401) {
      showSignedOut();
      return;
    }
    flash(err.message, true);
  }
  renderGrid();
  schedulePoll();
}

function schedulePoll() {
  stopPolling();
  // Only poll while something is still moving: a settled grid costs the server nothing.
  if (state.user && state.videos.some(isUnfinished)) {
    state.pollTimer = setTimeout(refreshVideos, POLL_MS);
  }
}

function stopPolling() {
  if (state.pollTimer) clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

function formatDuration(video) {
  const total = Math.round(Number(video.duration_seconds));
  if (!Number.isFinite(total) || total <= 0) return "";
  const s = String(total % 60).padStart(2, "0");
  const m = Math.floor(total / 60) % 60;
  const h = Math.floor(total / 3600);
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function progressOf(video) {
  const p = Number(video.progress ?? video.processing_progress);
  return Number.isFinite(p) ? Math.max(0, Math.min(100, Math.round(p))) : null;
}

// Highest quality first; names are "<height>p" by contract.
function qualitiesOf(video) {
  const height = (q) => parseInt(q, 10) || 0;
  return Object.keys(video.converted_files || {}).sort((a, b) => height(b) - height(a));
}

function renderGrid() {
  const grid = $("grid");
  const template = $("card-template");
  const visible = state.videos.filter((v) => !state.onlyFavorites || state.favorites.has(v.id));
  $("empty").hidden = visible.length > 0;
  $("empty").textContent = state.onlyFavorites ? "No favorites yet." : "No videos yet.";
  const cards = visible.map((video) => {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.videoId = String(video.id);
    node.dataset.state = video.processing_state;
    const img = node.querySelector("img");
    if (video.image_file) img.src = video.image_file;
    img.alt = video.title || "";
    node.querySelector(".title").textContent = video.title || `Video ${video.id}`;
    node.querySelector(".title").title = video.title || "";
    node.querySelector(".category").textContent = [video.category, formatDuration(video)]
      .filter(Boolean)
      .join(" \u00b7 ");
    const badge = node.querySelector(".state");
    badge.textContent = video.processing_state;
    badge.classList.add(video.processing_state);
    const fav = node.querySelector(".fav");
    const isFav = state.favorites.has(video.id);
    fav.setAttribute("aria-pressed", String(isFav));
    fav.textContent = isFav ? "\u2665" : "\u2661";
    fav.title = isFav ? "Remove from favorites" : "Add to favorites";

    const pct = progressOf(video);
    const overlay = node.querySelector(".status-overlay");
    const bar = node.querySelector(".progress");
    if (isUnfinished(video)) {
      overlay.hidden = false;
      const label = video.processing_state === "pending" ? "Queued" : "Processing";
      overlay.querySelector(".status-text").textContent = pct === null ? label : `${label} ${pct}%`;
      bar.hidden = false;
      if (pct === null) bar.removeAttribute("value");
      else bar.value = pct;
    } else if (video.processing_state === "error") {
      overlay.hidden = false;
      overlay.querySelector(".spinner").hidden = true;
      overlay.querySelector(".status-text").textContent = "Failed";
      node.querySelector(".error-text").textContent = video.processing_error || "";
    }
    // A video is playable as soon as its first rendition exists, even while the rest still encodes.
    node.querySelector(".thumb").disabled = qualitiesOf(video).length === 0;
    return node;
  });
  grid.replaceChildren(...cards);
}

async function onGridClick(event) {
  const target = event.target.closest("[data-action]");
  if (!target) return;
  const card = target.closest(".video");
  const video = state.videos.find((v) => String(v.id) === card.dataset.videoId);
  if (!video) return;
  if (target.dataset.action === "favorite") {
    try {
      const ids = await api(API.favorite, { method: "POST", json: { video_id: video.id } });
      state.favorites = new Set(ids);
      renderGrid();
    } catch (err) {
      flash(err.message, true);
    }
  } else if (target.dataset.action === "play") {
    openPlayer(video);
  }
}

// ---- player --------------------------------------------------------------------------------------

function hlsSupported() {
  return typeof window.Hls !== "undefined" && window.Hls.isSupported();
}

function openPlayer(video) {
  state.playing = video;
  $("player-view").hidden = false;
  $("player-title").textContent = video.title || `Video ${video.id}`;
  $("player-description").textContent = video.description || "";
  const select = $("quality");
  const options = [];
  if (hlsSupported()) options.push(new Option("Auto (HLS)", "auto"));
  for (const q of qualitiesOf(video)) options.push(new Option(q, q));
  select.replaceChildren(...options);
  select.value = options.length ? options[0].value : "";
  loadQuality(select.value, 0, true);
  $("player-view").scrollIntoView({ behavior: "smooth", block: "start" });
}

function destroyHls() {
  if (state.hls) {
    state.hls.destroy();
    state.hls = null;
  }
}

function closePlayer() {
  destroyHls();
  const player = $("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  state.playing = null;
  $("player-view").hidden = true;
}

// Switching quality keeps the position and the play/pause state, like a real player does.
async function loadQuality(quality, startAt, autoplay) {
  const player = $("player");
  const video = state.playing;
  if (!video || !quality) return;
  destroyHls();
  $("quality-info").textContent = "";
  const resume = () => {
    if (startAt > 0) player.currentTime = startAt;
    if (autoplay) player.play().catch(() => {});
  };
  if (quality === "auto") {
    // Playlists come from the API (same origin: the session cookie goes along); media URLs inside
    // are signed, so they need no cookie and work from any origin.
    const hls = new window.Hls();
    state.hls = hls;
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => player.addEventListener("loadedmetadata", resume, { once: true }));
    hls.on(window.Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      const level = hls.levels[data.level];
      if (level) $("quality-info").textContent = `auto: ${level.height}p now`;
    });
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) $("quality-info").textContent = `HLS error: ${data.details}`;
    });
    hls.loadSource(API.hlsMaster(video.id));
    hls.attachMedia(player);
    return;
  }
  try {
    const { url } = await api(API.videoUrl(video.id, quality));
    player.addEventListener("loadedmetadata", resume, { once: true });
    player.src = url;
    $("quality-info").textContent = `progressive ${quality}`;
  } catch (err) {
    $("quality-info").textContent = err.message;
  }
}

function onQualityChange() {
  const player = $("player");
  loadQuality($("quality").value, player.currentTime, !player.paused);
}

// ---- upload --------------------------------------------------------------------------------------

// XMLHttpRequest rather than fetch: only XHR reports upload progress.
function uploadMultipart(formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API.upload);
    xhr.withCredentials = true;
    xhr.responseType = "text";
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress((100 * e.loaded) / e.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = { detail: xhr.responseText };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new Error("Upload failed: network error"));
    xhr.send(formData);
  });
}

async function onUpload(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const submit = form.querySelector('button[type="submit"]');
  const bar = $("upload-progress");
  const pct = $("upload-percent");
  showError("upload", "");
  submit.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  const setProgress = (p) => {
    bar.value = p;
    pct.textContent = `${Math.round(p)}%`;
  };
  try {
    await uploadWithRefresh(new FormData(form), setProgress);
    setProgress(100);
    form.reset();
    flash("Upload complete. Transcoding has started.");
    await refreshVideos();
  } catch (err) {
    showError("upload", err.message);
  } finally {
    submit.disabled = false;
  }
}

async function uploadWithRefresh(formData, onProgress) {
  try {
    return await uploadMultipart(formData, onProgress);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    const refreshed = await fetch(API.refresh, { method: "POST", credentials: "include" });
    if (!refreshed.ok) throw err;
    return uploadMultipart(formData, onProgress);
  }
}

// ---- start ---------------------------------------------------------------------------------------

function wire() {
  $("tab-login").addEventListener("click", () => selectTab("login"));
  $("tab-register").addEventListener("click", () => selectTab("register"));
  $("login-form").addEventListener("submit", onLogin);
  $("register-form").addEventListener("submit", onRegister);
  $("forgot-form").addEventListener("submit", onForgot);
  $("reset-form").addEventListener("submit", onReset);
  $("show-forgot").addEventListener("click", () => selectTab("forgot"));
  $("logout").addEventListener("click", onLogout);
  $("grid").addEventListener("click", onGridClick);
  $("quality").addEventListener("change", onQualityChange);
  $("close-player").addEventListener("click", closePlayer);
  $("open-upload").addEventListener("click", () => {
    $("upload-view").hidden = false;
    $("upload-percent").textContent = "";
    $("upload-progress").hidden = true;
  });
  $("close-upload").addEventListener("click", () => {
    $("upload-view").hidden = true;
  });
  $("upload-form").addEventListener("submit", onUpload);
  $("only-favorites").addEventListener("change", (e) => {
    state.onlyFavorites = e.currentTarget.checked;
    renderGrid();
  });
}

async function start() {
  wire();
  const landing = handleLandingLink();
  if (landing) {
    showSignedOut();
    selectTab(landing);
    return;
  }
  try {
    showSignedIn(await loadMe(null));
  } catch {
    showSignedOut();
  }
}

document.addEventListener("DOMContentLoaded", start);
