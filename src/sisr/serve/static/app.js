// The sisr web page: plain JS, no libraries, talks only to this server's /v1 API.
// Flow: pick a file -> POST /v1/jobs -> poll GET /v1/jobs/{id} (progress in tiles) ->
// GET /v1/jobs/{id}/result (the model's image) + POST /v1/upscale?model=bicubic (the
// "before" image) -> before/after viewer and a download link for the exact result bytes.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,        // GET /v1/models
  file: null,        // the chosen File
  inputSize: null,   // [w, h] when the browser can decode the file
  job: null,         // current job id
  aborted: false,
  urls: [],          // object URLs to revoke
  out: null,         // [w, h] of the result
  zoom: "fit",
};

const ERROR_TITLES = {
  too_large: "The file is too large",
  too_many_pixels: "The image has too many pixels",
  unsupported_media_type: "Not a supported image",
  invalid: "The request was refused",
  unknown_model: "Unknown model",
  busy: "The server is busy",
  timeout: "The job took too long",
  unauthorized: "A token is needed",
  not_found: "The job is gone",
  cancelled: "Cancelled",
  out_of_memory: "The server ran out of memory",
  internal: "Server error",
};

function headers(extra = {}) {
  const token = $("token").value.trim() || sessionStorage.getItem("sisr-token") || "";
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (res.ok) return res;
  let code = "error";
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) { /* not JSON */ }
  throw new ApiError(res.status, code, message, res.headers.get("Retry-After"));
}

function showError(err) {
  const box = $("error");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const code = err.code || "error";
  let title = ERROR_TITLES[code] || (err.status ? `Error ${err.status}` : "Error");
  let text = err.message || String(err);
  if (code === "busy" && err.retryAfter) text += ` (retry after ${err.retryAfter} s)`;
  if (code === "unauthorized") {
    $("token-row").hidden = false;
    $("token").focus();
  }
  box.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  const span = document.createElement("span");
  span.textContent = text;
  box.append(strong, span);
  box.dataset.code = code;
  box.hidden = false;
}

function fmtBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KiB`;
  return `${n} B`;
}

// ------------------------------------------------------------------ models and limits

async function loadInfo() {
  try {
    const res = await api("/v1/models");
    state.info = await res.json();
  } catch (err) {
    $("server-info").textContent = "not connected";
    showError(err);
    return;
  }
  showError(null);
  const info = state.info;
  const model = $("model");
  model.replaceChildren();
  for (const fam of info.families) {
    if (fam.reference) continue;
    const opt = document.createElement("option");
    opt.value = fam.name;
    const variant = info.models.find((m) => m.family === fam.name);
    opt.textContent = variant ? `${fam.name} (${variant.arch})` : fam.name;
    model.append(opt);
  }
  model.value = info.default;
  fillScales();
  const lim = info.limits;
  $("limits").textContent =
    `Limits: ${fmtBytes(lim.max_bytes)} per upload, ${(lim.max_pixels / 1e6).toFixed(1)} Mpx, ` +
    `${lim.job_timeout_s} s per job.`;
  $("server-info").textContent = `${info.models.filter((m) => !m.reference).length} model(s)`;
  updateButton();
}

const OTHER_SCALES = [1.5, 2.5, 3, 6, 8];

function fillScales() {
  const fam = state.info.families.find((f) => f.name === $("model").value);
  const scale = $("scale");
  const keep = scale.value;
  scale.replaceChildren();
  for (const s of fam ? fam.scales : []) {
    const opt = document.createElement("option");
    opt.value = String(s);
    const m = state.info.models.find((v) => v.family === fam.name && v.scale === s);
    const psnr = m && m.metrics.length ? `, ${m.metrics[0].dataset} ${m.metrics[0].psnr.toFixed(2)} dB` : "";
    opt.textContent = `x${s}${psnr}`;
    scale.append(opt);
  }
  // Other factors: the server runs the smallest trained scale that reaches them (or two
  // passes) and resizes to the exact size.
  for (const s of fam ? OTHER_SCALES.filter((v) => !fam.scales.includes(v)) : []) {
    const opt = document.createElement("option");
    opt.value = String(s);
    opt.textContent = `x${s} (resized)`;
    scale.append(opt);
  }
  const values = [...scale.options].map((o) => o.value);
  if (fam) scale.value = values.includes(keep) ? keep : String(fam.default_scale);
}

// ------------------------------------------------------------------ file choice

function chooseFile(file) {
  showError(null);
  state.file = file || null;
  state.inputSize = null;
  if (!file) {
    $("file-info").textContent = "";
    updateButton();
    return;
  }
  $("file-info").textContent = `${file.name} (${fmtBytes(file.size)})`;
  const lim = state.info && state.info.limits;
  if (lim && file.size > lim.max_bytes) {
    showError(new ApiError(413, "too_large",
      `${file.name} is ${fmtBytes(file.size)}, above this server's limit of ${fmtBytes(lim.max_bytes)}`));
  }
  // Learn the size when the browser can decode the format (it cannot for TIFF: the
  // server checks anyway).
  const url = URL.createObjectURL(file);
  const probe = new Image();
  probe.onload = () => {
    state.inputSize = [probe.naturalWidth, probe.naturalHeight];
    $("file-info").textContent =
      `${file.name}: ${probe.naturalWidth}x${probe.naturalHeight}, ${fmtBytes(file.size)}`;
    URL.revokeObjectURL(url);
    if (lim && probe.naturalWidth * probe.naturalHeight > lim.max_pixels) {
      showError(new ApiError(413, "too_many_pixels",
        `${file.name} is ${probe.naturalWidth}x${probe.naturalHeight}, above this server's ` +
        `limit of ${(lim.max_pixels / 1e6).toFixed(1)} Mpx`));
    }
  };
  probe.onerror = () => URL.revokeObjectURL(url);
  probe.src = url;
  updateButton();
}

function updateButton() {
  $("go").disabled = !(state.file && state.info) || state.job !== null;
}

function setupDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  // The hidden input is focusable; Enter on it opens the picker like a click.
  $("file").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      $("file").click();
    }
  });
}

// ------------------------------------------------------------------ the job

function query() {
  const p = new URLSearchParams();
  p.set("model", $("model").value);
  p.set("scale", $("scale").value);
  if ($("format").value) p.set("format", $("format").value);
  if ($("tta").checked) p.set("tta", "true");
  return p;
}

function setProgress(fraction, text) {
  $("progress-wrap").hidden = false;
  $("progress").value = fraction;
  $("progress-text").textContent = text;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function upscale(event) {
  event.preventDefault();
  if (!state.file || state.job) return;
  showError(null);
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("sisr-token", token);
  state.aborted = false;
  const params = query();
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  const started = performance.now();
  $("go").disabled = true;
  $("cancel").hidden = false;
  setProgress(0, "uploading...");
  try {
    const res = await api(`/v1/jobs?${params}`, { method: "POST", body: form });
    const job = await res.json();
    state.job = job.id;
    let st = job;
    while (st.state === "queued" || st.state === "running") {
      const done = st.tiles_total ? `${st.tiles_done} / ${st.tiles_total} tiles` : st.state;
      setProgress(st.progress, `${st.state}: ${done}`);
      await sleep(200);
      if (state.aborted) return;
      st = await (await api(`/v1/jobs/${job.id}`)).json();
    }
    if (st.state !== "done") {
      const err = st.error || { status: 0, message: st.state };
      throw new ApiError(err.status, st.state === "timeout" ? "timeout" : codeFor(err.status), err.message);
    }
    setProgress(1, `done: ${st.tiles_total} tiles`);
    const result = await api(`/v1/jobs/${job.id}/result`);
    const blob = await result.blob();
    const name = filenameOf(result) || `result_x${params.get("scale")}`;
    // The "before" image: the server's MATLAB-exact bicubic at the same scale, as PNG.
    const bp = new URLSearchParams({ model: "bicubic", scale: params.get("scale"), format: "png" });
    let before = blob;
    try {
      const res = await api(`/v1/upscale?${bp}`, { method: "POST", body: formOf(state.file) });
      before = await res.blob();
    } catch (err) {
      showError(new ApiError(err.status, err.code, `No bicubic reference (${err.message}); the result is ready.`));
    }
    await api(`/v1/jobs/${job.id}`, { method: "DELETE" }).catch(() => {});
    const seconds = (performance.now() - started) / 1000;
    await showResult(blob, before, name, st, seconds);
  } catch (err) {
    if (!state.aborted) showError(err);
    $("progress-wrap").hidden = true;
  } finally {
    state.job = null;
    $("cancel").hidden = true;
    updateButton();
  }
}

function formOf(file) {
  const f = new FormData();
  f.append("file", file, file.name);
  return f;
}

function codeFor(status) {
  return { 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 503: "busy", 504: "timeout", 507: "out_of_memory" }[status] || "internal";
}

function filenameOf(res) {
  const cd = res.headers.get("Content-Disposition") || "";
  const star = /filename\*=utf-8''([^;]+)/i.exec(cd);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="([^"]+)"/i.exec(cd);
  return plain ? plain[1] : null;
}

async function cancel() {
  if (!state.job) return;
  state.aborted = true;
  const id = state.job;
  try {
    await api(`/v1/jobs/${id}`, { method: "DELETE" });
  } catch (_) { /* already finished */ }
  setProgress(0, "cancelled");
  showError(new ApiError(0, "cancelled", "The job was cancelled; its files were removed."));
}

// ------------------------------------------------------------------ the viewer

function loadImage(img, blob) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(blob);
    state.urls.push(url);
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this format; download it"));
    img.src = url;
  });
}

async function showResult(blob, before, name, st, seconds) {
  for (const url of state.urls.splice(0)) URL.revokeObjectURL(url);
  const after = $("result-after");
  const bic = $("result-before");
  $("placeholder").hidden = true;
  $("stage").hidden = false;
  await Promise.all([loadImage(bic, before), loadImage(after, blob).catch((e) => {
    showError(e);
    return after;
  })]);
  state.out = [bic.naturalWidth, bic.naturalHeight];
  const link = $("download");
  const href = URL.createObjectURL(blob);
  state.urls.push(href);
  link.href = href;
  link.download = name;
  link.classList.remove("disabled");
  link.removeAttribute("aria-disabled");
  link.tabIndex = 0;
  $("split").disabled = false;
  $("tag-model").textContent = st.model;
  const inp = state.inputSize ? `${state.inputSize[0]}x${state.inputSize[1]} -> ` : "";
  $("result-info").textContent =
    `${inp}${state.out[0]}x${state.out[1]} with ${st.model}` +
    `${st.tta ? " + TTA" : ""} in ${seconds.toFixed(1)} s (${fmtBytes(blob.size)})`;
  applyZoom();
  applySplit();
}

function applyZoom() {
  if (!state.out) return;
  const stage = $("stage");
  const vp = $("viewport");
  const [w, h] = state.out;
  let z = state.zoom === "fit" ? Math.min((vp.clientWidth - 2) / w, (vp.clientHeight - 2) / h, 1) : Number(state.zoom);
  z = Math.max(z, 0.01);
  stage.style.width = `${Math.round(w * z)}px`;
  stage.style.height = `${Math.round(h * z)}px`;
  stage.classList.toggle("pixelated", z > 1);
}

function applySplit() {
  const pct = Number($("split").value);
  $("result-after").style.clipPath = `inset(0 0 0 ${pct}%)`;
  $("divider").style.left = `${pct}%`;
}

function setupViewer() {
  $("split").addEventListener("input", applySplit);
  $("zoom").addEventListener("change", (e) => {
    state.zoom = e.target.value;
    applyZoom();
  });
  window.addEventListener("resize", applyZoom);
  const stage = $("stage");
  let dragging = false;
  const move = (e) => {
    const r = stage.getBoundingClientRect();
    const pct = Math.min(100, Math.max(0, ((e.clientX - r.left) / r.width) * 100));
    $("split").value = String(Math.round(pct));
    applySplit();
  };
  stage.addEventListener("pointerdown", (e) => {
    dragging = true;
    stage.setPointerCapture(e.pointerId);
    move(e);
  });
  stage.addEventListener("pointermove", (e) => dragging && move(e));
  stage.addEventListener("pointerup", () => { dragging = false; });
  // Keyboard on the view: arrows move the split, + / - zoom.
  $("viewport").addEventListener("keydown", (e) => {
    if (!state.out) return;
    const split = $("split");
    const zooms = ["fit", "1", "2", "4"];
    const i = zooms.indexOf(state.zoom);
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      split.value = String(Number(split.value) + (e.key === "ArrowLeft" ? -5 : 5));
      applySplit();
      e.preventDefault();
    } else if (e.key === "+" || e.key === "-") {
      state.zoom = zooms[Math.min(zooms.length - 1, Math.max(0, i + (e.key === "+" ? 1 : -1)))];
      $("zoom").value = state.zoom;
      applyZoom();
      e.preventDefault();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupDrop();
  setupViewer();
  $("model").addEventListener("change", fillScales);
  $("form").addEventListener("submit", upscale);
  $("cancel").addEventListener("click", cancel);
  $("token").addEventListener("change", loadInfo);
  const saved = sessionStorage.getItem("sisr-token");
  if (saved) $("token").value = saved;
  loadInfo();
});
