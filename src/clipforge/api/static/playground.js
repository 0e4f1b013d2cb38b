// clipforge playground: vanilla JS, no dependencies. Talks to the AIML dialect of this server.
(() => {
  "use strict";

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  // The API lives next to the page (works behind a path prefix too).
  const BASE = new URL("./", location.href).href.replace(/\/$/, "");
  const GEN = BASE + "/v2/video/generations";
  const LS = { key: "clipforge.key", ids: "clipforge.ids", notes: "clipforge.notes", model: "clipforge.model" };
  const FIELDS = ["model", "prompt", "image_url", "tail_image_url", "duration", "aspect_ratio", "generate_audio",
                  "negative_prompt", "cfg_scale", "seed"];
  const ALIASES = { last_image_url: "tail_image_url" };
  const IN_FLIGHT = new Set(["queued", "generating"]);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  const store = {
    get(name, fallback) {
      try { const v = localStorage.getItem(name); return v === null ? fallback : JSON.parse(v); } catch { return fallback; }
    },
    set(name, value) { try { localStorage.setItem(name, JSON.stringify(value)); } catch { /* full or disabled */ } },
  };

  const state = {
    key: store.get(LS.key, ""),
    models: [],
    images: { image_url: null, tail_image_url: null }, // {dataUri, name, type, width, height, size}
    source: { image_url: "upload", tail_image_url: "upload" },
    duration: "5",
    aspect: "",
    current: null,      // the generation shown in the output panel
    follow: null,       // {stop: bool, abort: AbortController} for the one being followed
    lang: "curl",
    codeFor: "form",    // the Code panel shows the form's request ("form") or the opened generation's ("current")
    gallery: { cursor: null, items: [], listing: null },
  };

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, body) {
      const message = (body && (body.message || (body.error && body.error.message))) || `HTTP ${status}`;
      super(message);
      this.status = status;
      this.body = body;
      this.param = body && body.error ? body.error.param : null;
    }
  }

  async function api(url, { method = "GET", body, signal } = {}) {
    const headers = { Authorization: "Bearer " + state.key };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (!res.ok) {
      const err = new ApiError(res.status, data);
      if (res.status === 401) askKey(err.message);
      throw err;
    }
    return { data, res, retryAfter: retryAfter(res) };
  }

  function retryAfter(res, fallback = 2) {
    const v = parseFloat(res.headers.get("Retry-After"));
    return Number.isFinite(v) && v >= 0 ? Math.min(Math.max(v, 0.5), 30) : fallback;
  }

  // ---------------------------------------------------------------- key
  const keyDialog = $("#key-dialog");

  function showKey() {
    const ok = !!state.key;
    $("#key-label").textContent = ok ? "Key …" + state.key.slice(-4) : "Set API key";
    $("#key-dot").className = "dot " + (ok ? "ok" : "bad");
  }

  function askKey(message) {
    $("#key-error").textContent = message || "";
    $("#key-input").value = "";
    $("#key-cancel").hidden = !state.key;
    if (!keyDialog.open) keyDialog.showModal();
    $("#key-input").focus();
  }

  $("#key-button").addEventListener("click", () => askKey(""));
  $("#key-cancel").addEventListener("click", () => keyDialog.close());
  keyDialog.addEventListener("cancel", (e) => { if (!state.key) e.preventDefault(); });
  $("#key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) { $("#key-error").textContent = "Enter a key."; return; }
    const res = await fetch(BASE + "/v1/models", { headers: { Authorization: "Bearer " + key } }).catch(() => null);
    if (!res) { $("#key-error").textContent = "The server did not answer."; return; }
    if (res.status === 401) {
      const body = await res.json().catch(() => ({}));
      $("#key-error").textContent = body.message || "That key was refused.";
      return;
    }
    state.key = key;
    store.set(LS.key, key);
    showKey();
    keyDialog.close();
    await loadModels();
    await loadGallery(true);
  });

  // ---------------------------------------------------------------- models
  const modelSelect = $("#model");

  async function loadModels() {
    $("#model-hint").textContent = "Loading models…";
    try {
      const { data } = await api(BASE + "/v1/models");
      state.models = data.data || [];
    } catch (err) {
      $("#model-hint").textContent = "Could not load models: " + err.message;
      return;
    }
    const previous = modelSelect.value || store.get(LS.model, "");
    modelSelect.textContent = "";
    for (const m of state.models) {
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = `${m.ready ? "●" : "○"} ${m.id}${m.ready ? "" : " (not ready)"}`;
      modelSelect.append(opt);
    }
    const keep = state.models.find((m) => m.id === previous);
    const firstReady = state.models.find((m) => m.ready);
    modelSelect.value = keep ? keep.id : firstReady ? firstReady.id : (state.models[0] || {}).id || "";
    if (!fitModelToImage()) modelChanged();
  }

  // Seed model ids come in pairs (...-image-to-video / ...-text-to-video). When the first-frame image is added
  // or removed, the form moves to the pair's other half, so a prompt alone runs text-to-video and a dropped
  // image runs image-to-video. A model picked by hand in the list is kept until the image changes again.
  const PAIRS = [["image-to-video", "text-to-video"], ["i2v", "t2v"]];

  function pairedModel(id, wantImage) {
    for (const [i2v, t2v] of PAIRS) {
      const [from, to] = wantImage ? [t2v, i2v] : [i2v, t2v];
      if (!id.includes(from)) continue;
      const other = state.models.find((m) => m.id === id.replace(from, to));
      if (other) return other;
    }
    return null;
  }

  function fitModelToImage() {
    const m = currentModel();
    const hasImage = !!imageValue("image_url");
    if (!m || m.task !== (hasImage ? "t2v" : "i2v")) return false;
    const pair = pairedModel(m.id, hasImage);
    if (!pair) return false;
    modelSelect.value = pair.id;
    modelChanged();
    $("#model-hint").append(document.createTextNode(hasImage ? " · picked for the image" : " · picked for a prompt alone"));
    return true;
  }

  function currentModel() { return state.models.find((m) => m.id === modelSelect.value) || null; }

  function modelChanged() {
    const m = currentModel();
    const hint = $("#model-hint");
    hint.textContent = "";
    if (!m) { hint.textContent = "No models are configured on this server."; return; }
    store.set(LS.model, m.id);
    const tag = document.createElement("span");
    tag.className = m.ready ? "ready" : "unready";
    tag.textContent = m.ready ? "Ready" : "Not ready";
    hint.append(tag);
    const task = { i2v: "image to video", t2v: "text to video", any: "text or image to video" }[m.task] || m.task;
    let detail = ` · ${task}`;
    if (m.ready && m.engine) detail += ` · engine ${m.engine}`;
    if (!m.ready) {
      const reasons = (m.engines || []).map((e) => e.reason).filter(Boolean);
      detail += reasons.length ? ` · ${reasons[0]}` : " · no live worker serves it yet";
    }
    hint.append(document.createTextNode(detail));
    const paired = pairedModel(m.id, m.task === "t2v");
    $("#image-need").textContent = m.task === "i2v"
      ? (paired ? "(first frame; remove it for text-to-video)" : "(first frame, required)")
      : m.task === "t2v" ? (paired ? "(optional: adding one switches to image-to-video)" : "(not used by text-to-video models)")
        : "(first frame, optional)";
    clearError("model");
    renderCode();
  }

  modelSelect.addEventListener("change", () => { modelChanged(); formEdited(); });
  $("#models-refresh").addEventListener("click", loadModels);

  // ---------------------------------------------------------------- images
  function readImage(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onerror = () => reject(reader.error);
      reader.onload = () => {
        const img = new Image();
        const info = { dataUri: reader.result, name: file.name || "image", type: file.type, size: file.size };
        img.onload = () => resolve({ ...info, width: img.naturalWidth, height: img.naturalHeight });
        img.onerror = () => resolve({ ...info, width: 0, height: 0 });
        img.src = reader.result;
      };
      reader.readAsDataURL(file);
    });
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(0) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function setupImage(field, fieldEl) {
    const drop = $(".drop", fieldEl);
    const input = $("input[type=file]", fieldEl);
    const urlInput = $("input[type=url]", fieldEl);

    const show = () => {
      const img = state.images[field];
      drop.classList.toggle("has-image", !!img);
      if (img) {
        $(".thumb", drop).src = img.dataUri;
        $(".name", drop).textContent = img.name;
        $(".dims", drop).textContent = [img.width ? `${img.width}×${img.height} px` : "", bytes(img.size)]
          .filter(Boolean).join(" · ");
      } else {
        $(".thumb", drop).removeAttribute("src");
      }
      imageChanged(field);
    };
    const take = async (file) => {
      if (!file) return;
      clearError(field);
      state.images[field] = await readImage(file);
      show();
    };
    input.addEventListener("change", () => take(input.files[0]));
    for (const ev of ["dragenter", "dragover"]) {
      drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
    }
    for (const ev of ["dragleave", "drop"]) {
      drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
    }
    drop.addEventListener("drop", (e) => {
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) { take(file); return; }
      const uri = e.dataTransfer && (e.dataTransfer.getData("text/uri-list") || e.dataTransfer.getData("text/plain"));
      if (uri && /^https?:\/\//i.test(uri.trim())) { urlInput.value = uri.trim(); selectSource(fieldEl, field, "url"); }
    });
    $(".remove", drop).addEventListener("click", (e) => {
      e.preventDefault();
      e.stopPropagation();
      state.images[field] = null;
      input.value = "";
      clearError(field);
      show();
    });
    urlInput.addEventListener("input", () => { clearError(field); imageChanged(field); });
    for (const tab of $$(".tab", fieldEl)) {
      tab.addEventListener("click", () => selectSource(fieldEl, field, tab.dataset.source));
    }
  }

  function selectSource(fieldEl, field, source) {
    state.source[field] = source;
    for (const tab of $$(".tab", fieldEl)) tab.classList.toggle("active", tab.dataset.source === source);
    $(".source-upload", fieldEl).hidden = source !== "upload";
    $(".source-url", fieldEl).hidden = source !== "url";
    imageChanged(field);
  }

  let hadImage = false;
  function imageChanged(field) {
    const has = !!imageValue("image_url");
    if (field === "image_url" && has !== hadImage) fitModelToImage();
    hadImage = has;
    formEdited();
  }

  setupImage("image_url", $("#image-field"));
  setupImage("tail_image_url", $("#tail-field"));

  function imageValue(field) {
    if (state.source[field] === "url") {
      const v = $(field === "image_url" ? "#image-url" : "#tail-url").value.trim();
      return v ? { url: v } : null;
    }
    const img = state.images[field];
    return img ? { upload: img } : null;
  }

  // ---------------------------------------------------------------- other inputs
  function segmented(el, onPick) {
    for (const b of $$("button", el)) {
      b.addEventListener("click", () => {
        for (const o of $$("button", el)) o.setAttribute("aria-checked", String(o === b));
        onPick(b.dataset.value);
        formEdited();
      });
    }
  }
  segmented($("#duration"), (v) => { state.duration = v; clearError("duration"); });
  segmented($("#aspect"), (v) => { state.aspect = v; clearError("aspect_ratio"); });

  const cfg = $("#cfg");
  const cfgChanged = () => { $("#cfg-value").textContent = Number(cfg.value).toFixed(2); clearError("cfg_scale"); formEdited(); };
  cfg.addEventListener("input", cfgChanged);
  $("#seed-dice").addEventListener("click", () => {
    $("#seed").value = String(Math.floor(Math.random() * 2 ** 31));
    clearError("seed");
    formEdited();
  });
  const prompt = $("#prompt");
  prompt.addEventListener("input", () => { $("#prompt-count").textContent = `${prompt.value.length} / 2500`; });
  for (const [sel, field] of [["#prompt", "prompt"], ["#negative", "negative_prompt"], ["#seed", "seed"], ["#audio", "generate_audio"]]) {
    const el = $(sel);
    el.addEventListener(el.type === "checkbox" ? "change" : "input", () => { clearError(field); formEdited(); });
  }

  // The request body the form describes. `forCode` keeps uploads as placeholders (file names).
  function payload() {
    const body = { model: modelSelect.value, prompt: prompt.value };
    const img = imageValue("image_url");
    const tail = imageValue("tail_image_url");
    if (img) body.image_url = img.url || img.upload;
    if (tail) body.tail_image_url = tail.url || tail.upload;
    body.duration = Number(state.duration);
    if (state.aspect) body.aspect_ratio = state.aspect;
    body.generate_audio = $("#audio").checked;
    const neg = $("#negative").value.trim();
    if (neg) body.negative_prompt = neg;
    if (Number(cfg.value) !== 0.5) body.cfg_scale = Number(cfg.value);
    const seed = $("#seed").value.trim();
    if (seed !== "") body.seed = /^-?\d+$/.test(seed) ? Number(seed) : seed;
    return body;
  }

  function wireBody() {
    const body = payload();
    for (const f of ["image_url", "tail_image_url"]) if (body[f] && body[f].dataUri) body[f] = body[f].dataUri;
    return body;
  }

  // ---------------------------------------------------------------- errors next to fields
  function fieldOf(err) {
    let param = err.param || "";
    if (!param) {
      const m = /^([a-z_]+)\s*:/.exec(err.message || "");
      if (m) param = m[1];
    }
    param = param.split(".")[0];
    param = ALIASES[param] || param;
    return FIELDS.includes(param) ? param : null;
  }

  function showError(field, message) {
    const slot = $(`[data-error-for="${field}"]`);
    const wrap = $(`[data-field="${field}"]`);
    if (!slot) return false;
    slot.textContent = message;
    if (wrap) wrap.classList.add("invalid");
    const details = slot.closest("details");
    if (details) details.open = true;
    (wrap || slot).scrollIntoView({ block: "center", behavior: "smooth" });
    return true;
  }

  function clearError(field) {
    const slot = $(`[data-error-for="${field}"]`);
    if (slot) slot.textContent = "";
    const wrap = $(`[data-field="${field}"]`);
    if (wrap) wrap.classList.remove("invalid");
  }

  function clearErrors() {
    FIELDS.forEach(clearError);
    $("#form-error").hidden = true;
  }

  function formError(message) {
    $("#form-error").textContent = message;
    $("#form-error").hidden = false;
  }

  // ---------------------------------------------------------------- submit
  $("#gen-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    if (!state.key) { askKey(""); return; }
    const button = $("#submit");
    button.disabled = true;
    button.textContent = "Submitting…";
    const body = wireBody();
    try {
      const { data } = await api(GEN, { method: "POST", body });
      remember(data.id, body.prompt, codeBody());
      showGeneration(data);
      revealOutput();
      loadGallery(true);
    } catch (err) {
      if (err instanceof ApiError) {
        const field = fieldOf(err);
        if (!(field && showError(field, err.message)) && err.status !== 401) formError(err.message);
      } else {
        formError("The server did not answer: " + err.message);
      }
    } finally {
      button.disabled = false;
      button.textContent = "Generate";
    }
  });

  // The request is kept with uploads as {name, type} (not their data), for the Code panel of that generation.
  function remember(id, promptText, request) {
    const ids = store.get(LS.ids, []).filter((x) => x !== id);
    ids.unshift(id);
    store.set(LS.ids, ids.slice(0, 200));
    const notes = store.get(LS.notes, {});
    notes[id] = { prompt: promptText, request };
    for (const k of Object.keys(notes)) if (!ids.includes(k)) delete notes[k];
    store.set(LS.notes, notes);
  }

  function forget(id) {
    store.set(LS.ids, store.get(LS.ids, []).filter((x) => x !== id));
  }

  // ---------------------------------------------------------------- output panel
  function stopFollowing() {
    if (state.follow) {
      state.follow.stop = true;
      state.follow.abort.abort();
      state.follow = null;
    }
  }

  function showGeneration(gen) {
    stopFollowing();
    state.current = { ...gen };
    $("#action-error").hidden = true;
    const video = $("#video");
    video.removeAttribute("src");
    video.load();
    render();
    state.codeFor = "current";
    renderCode();
    markCurrentTile();
    if (IN_FLIGHT.has(gen.status)) follow(gen.id);
  }

  // Bring the output card into view when it is not: its top just below the sticky header (a tile clicked at the
  // bottom of the gallery, or the one-column phone layout where the output sits below the form).
  function revealOutput() {
    const out = $("#output");
    const top = $(".topbar").getBoundingClientRect().bottom + 12;
    const box = out.getBoundingClientRect();
    if (box.top >= top - 1 && box.top < window.innerHeight * 0.5) return;
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    window.scrollTo({ top: window.scrollY + box.top - top, behavior: smooth ? "smooth" : "auto" });
  }

  function update(id, patch) {
    if (!state.current || state.current.id !== id) return;
    Object.assign(state.current, patch);
    render();
    updateTile(state.current);
  }

  // "error" covers cancelled and expired jobs too (the AIML enum); show which it was.
  function label(g) {
    const name = g.error && g.error.name;
    return g.status === "error" && (name === "Cancelled" || name === "Expired") ? name.toLowerCase() : g.status;
  }

  function render() {
    const g = state.current;
    $("#output-empty").hidden = !!g;
    const pill = $("#status-pill");
    pill.hidden = !g;
    if (!g) { $("#progress-block").hidden = $("#player").hidden = $("#actions").hidden = $("#gen-error").hidden = true; return; }
    pill.textContent = label(g);
    pill.className = "status-pill " + label(g);
    const done = g.status === "completed";
    const running = IN_FLIGHT.has(g.status);
    const pct = done ? 100 : Math.max(0, Math.min(100, Math.round(g.progress || 0)));
    $("#progress-block").hidden = !(running || done);
    let text = "Queued";
    if (g.status === "queued") {
      text = g.queue_position ? `Queued · position ${g.queue_position} in line` : "Queued · waiting for a worker";
    } else if (g.status === "generating") {
      text = "Generating" + (g.stage ? ` · ${g.stage}` : "");
    } else if (done) {
      text = "Done";
    }
    $("#progress-text").textContent = text;
    $("#progress-pct").textContent = pct + "%";
    $("#progress-bar").style.width = pct + "%";
    $("#progress").setAttribute("aria-valuenow", String(pct));
    $("#progress").classList.toggle("indeterminate", g.status === "queued");
    $("#progress-detail").textContent = g.id ? "id " + g.id : "";

    const url = g.video && g.video.url ? g.video.url : g.output && g.output.video_url;
    const video = $("#video");
    $("#player").hidden = !(done && url);
    if (done && url && video.getAttribute("src") !== url) {
      if (g.output && g.output.thumbnail_url) video.poster = g.output.thumbnail_url;
      video.src = url;
    }
    const failed = g.status === "error";
    const errBox = $("#gen-error");
    errBox.hidden = !failed;
    errBox.classList.toggle("neutral", label(g) !== "error");
    if (failed) {
      errBox.textContent = "";
      const name = document.createElement("strong");
      name.textContent = (g.error && g.error.name) || "Failed";
      errBox.append(name, document.createTextNode((g.error && g.error.message) || "The generation failed."));
    }
    $("#actions").hidden = false;
    $("#download").hidden = $("#open-video").hidden = !(done && url);
    if (done && url) {
      $("#download").href = url;
      $("#open-video").href = url;
      $("#download").download = `clipforge-${String(g.id).slice(0, 12).replace(/[^\w-]/g, "")}.mp4`;
    }
    $("#cancel").hidden = !running;
    $("#reuse").hidden = g.seed === undefined || g.seed === null;
    const meta = [];
    if (g.model) meta.push(g.model);
    if (done && g.output) {
      if (g.output.width) meta.push(`${g.output.width}×${g.output.height}`);
      if (g.output.duration_seconds) meta.push(`${g.output.duration_seconds} s`);
      meta.push(g.output.has_audio ? "with audio" : "no audio");
    }
    if (g.seed !== undefined && g.seed !== null) meta.push("seed " + g.seed);
    $("#gen-meta").textContent = meta.join(" · ");
  }

  $("#cancel").addEventListener("click", async () => {
    const g = state.current;
    if (!g) return;
    const btn = $("#cancel");
    btn.disabled = true;
    $("#action-error").hidden = true;
    try {
      const { data } = await api(`${GEN}/${encodeURIComponent(g.id)}`, { method: "DELETE" });
      update(g.id, data);
    } catch (err) {
      $("#action-error").textContent = "Cancel failed: " + err.message;
      $("#action-error").hidden = false;
    } finally {
      btn.disabled = false;
    }
  });

  $("#reuse").addEventListener("click", () => {
    if (state.current && state.current.seed !== null) {
      $("#seed").value = String(state.current.seed);
      $("#advanced").open = true;
      formEdited();
    }
  });

  // ---------------------------------------------------------------- live status
  // Server-sent events (read with fetch: EventSource cannot send the key), with polling as the fallback;
  // while queued, polls (paced by Retry-After) also refresh the queue position, which events do not carry.
  async function follow(id) {
    const f = { stop: false, abort: new AbortController() };
    state.follow = f;
    let ended = false;
    try {
      ended = await followEvents(id, f);
    } catch (err) {
      ended = false;
    }
    if (!ended && !f.stop) await followPolls(id, f);
    if (state.follow === f) state.follow = null;
  }

  async function followEvents(id, f) {
    const res = await fetch(`${GEN}/${encodeURIComponent(id)}/events`, {
      headers: { Authorization: "Bearer " + state.key, Accept: "text/event-stream" }, signal: f.abort.signal,
    });
    const type = res.headers.get("content-type") || "";
    if (!res.ok || !type.startsWith("text/event-stream") || !res.body) return false;
    pollQueued(id, f);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
        }
        if (!data) continue;
        let payload;
        try { payload = JSON.parse(data); } catch { continue; }
        if (f.stop) return true;
        if (payload.status !== "queued") payload.queue_position = null;
        update(id, payload);
        if (event === "done" || !IN_FLIGHT.has(payload.status)) {
          if (event !== "done") await refresh(id);
          finished();
          return true;
        }
      }
    }
  }

  async function refresh(id) {
    const { data } = await api(`${GEN}/${encodeURIComponent(id)}`);
    update(id, data);
    return data;
  }

  async function followPolls(id, f) {
    while (!f.stop) {
      let wait = 2;
      try {
        const { data, retryAfter: ra } = await api(`${GEN}/${encodeURIComponent(id)}`, { signal: f.abort.signal });
        if (f.stop) return;
        update(id, data);
        if (!IN_FLIGHT.has(data.status)) { finished(); return; }
        wait = ra;
      } catch (err) {
        if (f.stop) return;
        if (err instanceof ApiError && err.status === 404) {
          update(id, { status: "error", error: { name: "Not found", message: err.message } });
          return;
        }
        wait = 3;
      }
      await sleep(wait * 1000);
    }
  }

  async function pollQueued(id, f) {
    while (!f.stop && state.current && state.current.id === id && state.current.status === "queued") {
      try {
        const { data, retryAfter: ra } = await api(`${GEN}/${encodeURIComponent(id)}`, { signal: f.abort.signal });
        if (f.stop) return;
        if (data.status === "queued") update(id, { queue_position: data.queue_position });
        await sleep(ra * 1000);
      } catch {
        return;
      }
    }
  }

  function finished() {
    loadGallery(true);
  }

  // ---------------------------------------------------------------- gallery
  const galleryEl = $("#gallery");
  let galleryTimer = null;
  let galleryLoading = null;

  function loadGallery(reset) {
    if (galleryLoading && !reset) return galleryLoading;
    galleryLoading = doLoadGallery(reset).finally(() => { galleryLoading = null; });
    return galleryLoading;
  }

  async function doLoadGallery(reset) {
    if (!state.key) return;
    clearTimeout(galleryTimer);
    const g = state.gallery;
    let items = [];
    let wait = 2;
    try {
      const url = new URL(GEN);
      url.searchParams.set("limit", "24");
      if (!reset && g.cursor) url.searchParams.set("after", g.cursor);
      const { data, retryAfter: ra } = await api(url.href);
      if (!data || !Array.isArray(data.data)) throw new Error("no listing");
      g.listing = true;
      items = data.data;
      g.cursor = data.has_more ? data.next_cursor || (items.length ? items[items.length - 1].id : null) : null;
      wait = ra;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      // No listing on this server: poll the ids this browser created.
      g.listing = false;
      g.cursor = null;
      const ids = store.get(LS.ids, []).slice(0, 48);
      // The generation in the output panel is kept fresh by its own follower: no second poll for it.
      const results = await Promise.all(ids.map((id) => (state.current && state.current.id === id
        ? Promise.resolve({ ...state.current })
        : api(`${GEN}/${encodeURIComponent(id)}`).then((r) => r.data)).catch((e) => {
          if (e instanceof ApiError && e.status === 404) forget(id);
          return null;
        })));
      items = results.filter(Boolean);
      reset = true;
    }
    g.items = reset ? items : g.items.concat(items.filter((i) => !g.items.some((o) => o.id === i.id)));
    renderGallery();
    $("#gallery-source").textContent = g.listing ? "" : "created in this browser";
    if (g.items.some((i) => IN_FLIGHT.has(i.status))) {
      galleryTimer = setTimeout(() => loadGallery(true), Math.max(wait, 2) * 1000);
    }
  }

  function ago(ts) {
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return new Date(ts * 1000).toLocaleDateString();
  }

  function tile(gen) {
    const notes = store.get(LS.notes, {});
    const el = document.createElement("button");
    el.type = "button";
    el.className = "tile";
    el.dataset.id = gen.id;
    const shot = document.createElement("div");
    shot.className = "shot";
    const thumb = gen.output && gen.output.thumbnail_url;
    if (thumb) {
      const img = document.createElement("img");
      img.src = thumb;
      img.alt = "";
      img.loading = "lazy";
      shot.append(img);
    } else {
      shot.textContent = gen.status === "error" ? "✕" : "…";
    }
    const badge = document.createElement("span");
    badge.className = "badge " + label(gen);
    badge.textContent = gen.status === "generating" ? `${Math.round(gen.progress || 0)}%` : label(gen);
    shot.append(badge);
    if (IN_FLIGHT.has(gen.status)) {
      const mini = document.createElement("span");
      mini.className = "mini";
      mini.style.width = Math.round(gen.progress || 0) + "%";
      shot.append(mini);
    }
    const cap = document.createElement("span");
    cap.className = "cap";
    const p = document.createElement("span");
    p.className = "p";
    const note = notes[gen.id];
    p.textContent = gen.prompt || (note && note.prompt) || gen.model;
    const m = document.createElement("span");
    m.className = "m";
    m.textContent = [note ? gen.model : null, gen.created ? ago(gen.created) : null].filter(Boolean).join(" · ");
    cap.append(p, m);
    el.append(shot, cap);
    el.title = gen.id;
    el.addEventListener("click", () => { showGeneration(gen); revealOutput(); });
    return el;
  }

  function renderGallery() {
    const items = state.gallery.items;
    galleryEl.textContent = "";
    for (const gen of items) galleryEl.append(tile(gen));
    $("#gallery-empty").hidden = items.length > 0;
    $("#gallery-more").hidden = !state.gallery.cursor;
    markCurrentTile();
  }

  function updateTile(gen) {
    const i = state.gallery.items.findIndex((x) => x.id === gen.id);
    if (i < 0) return;
    state.gallery.items[i] = { ...state.gallery.items[i], ...gen };
    const old = $(`.tile[data-id="${CSS.escape(gen.id)}"]`, galleryEl);
    if (old) old.replaceWith(tile(state.gallery.items[i]));
    markCurrentTile();
  }

  function markCurrentTile() {
    for (const t of $$(".tile", galleryEl)) t.classList.toggle("current", !!state.current && t.dataset.id === state.current.id);
  }

  $("#gallery-refresh").addEventListener("click", () => loadGallery(true));
  $("#gallery-more").addEventListener("click", () => loadGallery(false));

  // ---------------------------------------------------------------- code panel
  function esc(s) { return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

  function pyValue(v) {
    if (v === true) return "True";
    if (v === false) return "False";
    if (v === null) return "None";
    return JSON.stringify(v);
  }

  // The form's request with uploads as {name, type} placeholders (what the Code panel and remember() keep).
  function codeBody() {
    const body = payload();
    for (const f of ["image_url", "tail_image_url"]) {
      if (body[f] && body[f].dataUri) body[f] = { name: body[f].name, type: body[f].type };
    }
    return body;
  }

  // The opened generation's own request: as sent from this browser when it was made here, else rebuilt from
  // what the server reports (an image-to-video input it does not report is shown as a placeholder URL).
  function currentRequest(g) {
    const note = store.get(LS.notes, {})[g.id];
    if (note && note.request) return note.request;
    const body = { model: g.model, prompt: g.prompt || (note && note.prompt) || "" };
    const model = state.models.find((m) => m.id === g.model);
    if (model && model.task === "i2v") body.image_url = "https://example.com/your-first-frame.jpg";
    const usage = g.meta && g.meta.usage;
    const duration = (g.output && g.output.duration_seconds) || (usage && usage.duration_seconds);
    if (duration) body.duration = Number(duration);
    if (g.output && typeof g.output.has_audio === "boolean") body.generate_audio = g.output.has_audio;
    if (g.seed !== undefined && g.seed !== null) body.seed = g.seed;
    return body;
  }

  // What the Code panel shows: {body, files, id}; files are the uploads (by field), id the generation polled.
  function codeRequest() {
    const g = state.current;
    const fromCurrent = state.codeFor === "current" && g;
    const body = { ...(fromCurrent ? currentRequest(g) : codeBody()) };
    const files = {};
    for (const f of ["image_url", "tail_image_url"]) {
      if (body[f] && typeof body[f] === "object") files[f] = body[f];
    }
    return { body, files, id: fromCurrent ? g.id : null };
  }

  function formEdited() {
    state.codeFor = "form";
    renderCode();
  }

  function curlCode() {
    const { body, files, id: genId } = codeRequest();
    const SENTINEL = {};
    for (const f of Object.keys(files)) { SENTINEL[f] = `__CLIPFORGE_${f.toUpperCase()}__`; body[f] = SENTINEL[f]; }
    let json = JSON.stringify(body, null, 2);
    const lines = [];
    if (Object.keys(files).length) {
      // A heredoc body: base64 of a large image does not fit in one command-line argument.
      json = json.replace(/\\/g, "\\\\").replace(/\$/g, "\\$").replace(/`/g, "\\`");
      for (const [f, img] of Object.entries(files)) {
        json = json.replace(`"${SENTINEL[f]}"`,
          `"data:${img.type || "image/png"};base64,$(base64 < ${shellWord(img.name)} | tr -d '\\n')"`);
      }
      lines.push(`curl -sS -X POST ${shellWord(GEN)} \\`,
        `  -H "Authorization: Bearer <YOUR_API_KEY>" \\`,
        `  -H "Content-Type: application/json" \\`,
        `  -d @- <<EOF`, json, "EOF");
    } else {
      lines.push(`curl -sS -X POST ${shellWord(GEN)} \\`,
        `  -H "Authorization: Bearer <YOUR_API_KEY>" \\`,
        `  -H "Content-Type: application/json" \\`,
        `  -d ${shellQuote(json)}`);
    }
    const id = genId ? encodeURIComponent(genId) : "<GENERATION_ID>";
    lines.push("", "# then poll until status is completed (or error); video.url is the MP4",
      `curl -sS -H "Authorization: Bearer <YOUR_API_KEY>" \\`,
      `  ${shellQuote(GEN + "?generation_id=" + id)}`);
    return highlightShell(lines.join("\n"));
  }

  function shellQuote(s) { return "'" + s.replace(/'/g, "'\\''") + "'"; }
  function shellWord(s) { return /^[\w@%+=:,./-]+$/.test(s) ? s : shellQuote(s); }

  function highlightShell(text) {
    return text.split("\n").map((l) => (l.startsWith("#") ? `<span class="c">${esc(l)}</span>` : esc(l))).join("\n");
  }

  function pythonCode() {
    const { body, files } = codeRequest();
    const lines = [];
    const needB64 = Object.keys(files).length > 0;
    lines.push(...(needB64 ? ["import base64"] : []), "import time", "", "import requests", "", "");
    if (needB64) {
      lines.push("def data_uri(path, mime):",
        '    with open(path, "rb") as f:',
        '        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()', "", "");
    }
    lines.push("def main():", `    url = ${pyValue(GEN)}`, "    payload = {");
    for (const [k, v] of Object.entries(body)) {
      const val = files[k] ? `data_uri(${pyValue(files[k].name)}, ${pyValue(files[k].type || "image/png")})` : pyValue(v);
      lines.push(`        ${pyValue(k)}: ${val},`);
    }
    lines.push("    }",
      '    headers = {"Authorization": "Bearer <YOUR_API_KEY>", "Content-Type": "application/json"}',
      "",
      "    response = requests.post(url, json=payload, headers=headers)",
      '    print("Generation:", response.json())',
      "    response.raise_for_status()",
      '    generation_id = response.json()["id"]',
      "",
      "    while True:",
      '        response = requests.get(url, params={"generation_id": generation_id}, headers=headers)',
      "        data = response.json()",
      '        print(data["status"], data.get("progress"))',
      '        if data["status"] not in ("queued", "generating"):',
      "            break",
      '        time.sleep(int(response.headers.get("Retry-After", 2)))',
      '    print("Video:", data["video"]["url"] if data["status"] == "completed" else data["error"])',
      "", "", 'if __name__ == "__main__":', "    main()");
    return lines.map((l) => {
      const e = esc(l);
      if (/^\s*#/.test(l)) return `<span class="c">${e}</span>`;
      return e.replace(/^(\s*)(import|def|while|if|return|with|break)\b/, '$1<span class="k">$2</span>');
    }).join("\n");
  }

  let codeQueued = false;
  function renderCode() {
    if (codeQueued) return;
    codeQueued = true;
    requestAnimationFrame(() => {
      codeQueued = false;
      $("#code").innerHTML = state.lang === "python" ? pythonCode() : curlCode();
      const g = state.current;
      $("#code-source").textContent = state.codeFor === "current" && g ? "of generation " + String(g.id).split(":")[0].slice(0, 8)
        : "of the form";
      $("#code-source").title = state.codeFor === "current" && g ? g.id : "";
    });
  }

  for (const tab of $$("#code-tabs .tab")) {
    tab.addEventListener("click", () => {
      state.lang = tab.dataset.lang;
      for (const t of $$("#code-tabs .tab")) t.classList.toggle("active", t === tab);
      renderCode();
    });
  }
  $("#copy-code").addEventListener("click", async () => {
    const text = $("#code").textContent;
    const btn = $("#copy-code");
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const ta = document.createElement("textarea");
      ta.value = text;
      document.body.append(ta);
      ta.select();
      document.execCommand("copy");
      ta.remove();
    }
    btn.textContent = "Copied";
    setTimeout(() => { btn.textContent = "Copy"; }, 1200);
  });

  // ---------------------------------------------------------------- start
  showKey();
  renderCode();
  if (state.key) {
    loadModels();
    loadGallery(true);
  } else {
    askKey("");
  }
})();
