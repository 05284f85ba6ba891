// LongCat Video playground. Plain browser JavaScript, no build step, no network beyond this
// server. The form is built at load time from the server's OpenAPI document, so a new input
// field appears here without editing this file.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "longcat.playground.key";
  const HISTORY_STORE = "longcat.playground.history";
  const HISTORY_MAX = 50;
  // Strings longer than this are not kept in the history (data URIs).
  const HISTORY_MAX_STRING = 2048;
  // `stage: segment 1/2, step 3/5, eta 1m05s` (longcat_worker::progress::format_progress).
  const PROGRESS_RE = /^([a-z_]+): (?:segment (\d+)\/(\d+), )?step (\d+)\/(\d+)(?:, eta (\S+))?$/;
  // How fields are shown beyond what their schema says: which go above the fold, and which
  // get a special widget. Names absent from the schema are ignored.
  const HINTS = {
    image_url: { primary: true, widget: "image" },
    prompt: { primary: true, widget: "textarea" },
    negative_prompt: { widget: "textarea" },
    seed: { widget: "seed" },
  };

  // Where the API lives: the page is `/` or `/playground/{app}` on the server itself.
  const ROOT = (() => {
    const p = location.pathname;
    const i = p.indexOf("/playground");
    return location.origin + (i >= 0 ? p.slice(0, i) : p.replace(/\/[^/]*$/, ""));
  })();
  const PATH_APP = (() => {
    const m = location.pathname.match(/\/playground\/(.+?)\/?$/);
    return m ? decodeURIComponent(m[1]) : null;
  })();

  let APP = PATH_APP;
  let fields = []; // { name, schema, kind, required, get(), set(v), el, errEl }
  let snippetLang = "curl";
  let view = null; // the job shown on the right

  // ---- helpers --------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    const key = $("api-key").value.trim();
    if (key) h.Authorization = "Key " + key;
    return h;
  }

  async function readJson(resp) {
    const text = await resp.text();
    try { return JSON.parse(text); } catch (_) { return text; }
  }

  function describeError(resp, body) {
    let detail = body && typeof body === "object" ? body.detail : body;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    if (resp.status === 401) {
      return "401: this server needs an API key (enter it at the top right). " + (detail || "");
    }
    return resp.status + " " + resp.statusText + ": " + (detail || "");
  }

  function formatBytes(n) {
    if (typeof n !== "number") return "?";
    const units = ["B", "KiB", "MiB", "GiB"];
    let v = n, u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return (u ? v.toFixed(1) : v) + " " + units[u] + (u ? " (" + n + " bytes)" : "");
  }

  function formatSeconds(s) {
    return typeof s === "number" && isFinite(s) ? s.toFixed(2) + " s" : "?";
  }

  // ---- schema → form ----------------------------------------------------------------------

  function lookup(doc, ref) {
    return ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), doc);
  }

  // The schema with `$ref` and single-member `allOf` resolved (the outer keys win).
  function resolve(doc, s) {
    if (!s) return {};
    let out = Object.assign({}, s);
    if (s.$ref) out = Object.assign({}, resolve(doc, lookup(doc, s.$ref)), s);
    if (Array.isArray(s.allOf) && s.allOf.length === 1) {
      out = Object.assign({}, resolve(doc, s.allOf[0]), out);
    }
    delete out.$ref;
    delete out.allOf;
    return out;
  }

  // One of: enum, boolean, integer, number, string, image, json; `nullable` for anyOf [T, null].
  function kindOf(doc, name, s) {
    let nullable = false;
    if (Array.isArray(s.anyOf)) {
      const members = s.anyOf.map((m) => resolve(doc, m));
      const real = members.filter((m) => m.type !== "null");
      nullable = real.length < members.length;
      if (real.length === 1) s = Object.assign({}, real[0], s, { anyOf: undefined });
      else return { kind: "json", nullable, s };
    }
    const hint = HINTS[name] || {};
    let kind = "json";
    if (Array.isArray(s.enum)) kind = "enum";
    else if (s.type === "boolean") kind = "boolean";
    else if (s.type === "integer" || s.type === "number") kind = s.type;
    else if (s.type === "string") {
      kind = hint.widget === "image" || /(^|_)image_url$/.test(name) ? "image" : "string";
    }
    return { kind, nullable, s };
  }

  function inputSchemaOf(doc, app) {
    const op = doc.paths && doc.paths["/" + app] && doc.paths["/" + app].post;
    const body = op && op.requestBody && op.requestBody.content &&
      op.requestBody.content["application/json"];
    if (body && body.schema) return resolve(doc, body.schema);
    throw new Error("the OpenAPI document has no POST /" + app);
  }

  function buildField(doc, name, raw, required) {
    const { kind, nullable, s } = kindOf(doc, name, resolve(doc, raw));
    const hint = HINTS[name] || {};
    const id = "f-" + name;
    const title = s.title || name;
    const errEl = el("div", { class: "err", "data-error-for": name });
    const wrap = el("div", { class: "field", "data-field": name, "data-kind": kind });
    const label = el("label", { for: id }, title, required ? el("span", { class: "req", text: " *" }) : null);
    const parts = [];
    const rangeNote = [];
    if (s.minimum !== undefined || s.maximum !== undefined) {
      rangeNote.push("range " + (s.minimum ?? "−∞") + " – " + (s.maximum ?? "∞"));
    }
    if (s.maxLength !== undefined) rangeNote.push("up to " + s.maxLength + " characters");
    if (s.default !== undefined && kind !== "string" && kind !== "image") {
      rangeNote.push("default " + JSON.stringify(s.default));
    }
    const desc = el("div", { class: "desc", text: (s.description || "") + (rangeNote.length ? " (" + rangeNote.join("; ") + ")" : "") });
    let get, set, control;

    if (kind === "enum") {
      control = el("select", { id, name });
      if (nullable || (!required && s.default === undefined)) control.append(el("option", { value: "", text: "(none)" }));
      for (const v of s.enum) control.append(el("option", { value: v, text: v }));
      get = () => (control.value === "" ? undefined : control.value);
      set = (v) => { control.value = v === undefined || v === null ? "" : String(v); };
      parts.push(control);
    } else if (kind === "boolean") {
      control = el("input", { id, name, type: "checkbox" });
      get = () => control.checked;
      set = (v) => { control.checked = !!v; };
      parts.push(el("div", { class: "row" }, control, el("span", { class: "muted", text: "on / off" })));
    } else if (kind === "integer" || kind === "number") {
      const step = kind === "integer" ? "1" : "any";
      control = el("input", { id, name, type: "number", step, min: s.minimum, max: s.maximum });
      const row = el("div", { class: "row" });
      let slider = null;
      if (typeof s.minimum === "number" && typeof s.maximum === "number") {
        slider = el("input", { type: "range", min: s.minimum, max: s.maximum, step: kind === "integer" ? 1 : (s.maximum - s.minimum) / 100, "aria-label": title + " slider" });
        slider.addEventListener("input", () => { control.value = slider.value; updateSnippet(); });
        control.addEventListener("input", () => { slider.value = control.value; });
        row.append(slider);
      }
      if (hint.widget === "seed" || nullable) {
        row.append(el("button", { type: "button", class: "random", text: "random", onclick: () => { control.value = String(Math.floor(Math.random() * 2 ** 31)); updateSnippet(); } }));
        control.placeholder = "random";
      }
      row.prepend(control);
      get = () => {
        if (control.value.trim() === "") return undefined;
        const n = Number(control.value);
        return isFinite(n) ? n : control.value;
      };
      set = (v) => {
        control.value = v === undefined || v === null ? "" : String(v);
        if (slider && control.value !== "") slider.value = control.value;
      };
      parts.push(row);
    } else if (kind === "string" || kind === "image") {
      const long = hint.widget === "textarea" || (s.maxLength || 0) > 256;
      control = long ? el("textarea", { id, name, rows: 3 }) : el("input", { id, name, type: "text" });
      if (Array.isArray(s.examples) && s.examples.length) control.placeholder = "e.g. " + s.examples[0];
      get = () => (control.value === "" && !required ? undefined : control.value);
      set = (v) => { control.value = v === undefined || v === null ? "" : String(v); };
      parts.push(control);
      if (kind === "image") parts.push(...imageWidget(name, control));
    } else {
      control = el("textarea", { id, name, rows: 2, placeholder: "JSON" });
      get = () => {
        if (control.value.trim() === "") return undefined;
        try { return JSON.parse(control.value); } catch (_) { return control.value; }
      };
      set = (v) => { control.value = v === undefined || v === null ? "" : JSON.stringify(v); };
      parts.push(control);
    }
    control.addEventListener("input", () => { clearFieldError(name); updateSnippet(); });
    control.addEventListener("change", () => updateSnippet());
    wrap.append(label, desc, ...parts, errEl);
    const f = { name, schema: s, kind, required, nullable, get, set, el: wrap, errEl, control, primary: required || !!hint.primary };
    f.reset = () => set(s.default);
    f.reset();
    return f;
  }

  // Upload (file input or drop) through the storage upload routes, or a URL; a preview.
  function imageWidget(name, urlInput) {
    const preview = el("img", { class: "preview", alt: "preview", hidden: true, "data-preview-for": name });
    const file = el("input", { type: "file", accept: "image/*", "data-upload-for": name });
    const note = el("span", { class: "muted", "data-upload-status-for": name });
    const drop = el("div", { class: "drop" }, "Drop an image here, or ", file, " ", note);
    const show = (src) => { preview.src = src; preview.hidden = !src; };
    urlInput.addEventListener("change", () => {
      const v = urlInput.value.trim();
      if (/^(https?:|data:image\/)/.test(v)) show(v); else show("");
    });
    const upload = async (f) => {
      if (!f) return;
      clearFieldError(name);
      show(URL.createObjectURL(f));
      note.textContent = "uploading " + f.name + "…";
      try {
        urlInput.value = await uploadFile(f);
        note.textContent = "uploaded " + f.name + " (" + formatBytes(f.size) + ")";
        note.dataset.done = "1";
        updateSnippet();
      } catch (e) {
        note.textContent = "";
        showFieldError(name, "upload failed: " + e.message);
      }
    };
    file.addEventListener("change", () => upload(file.files[0]));
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      upload(e.dataTransfer.files[0]);
    });
    return [drop, preview];
  }

  // As the fal clients do: initiate (with the key), then PUT the bytes to the upload URL.
  async function uploadFile(f) {
    const type = f.type || "application/octet-stream";
    const init = await fetch(ROOT + "/storage/upload/initiate", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ content_type: type, file_name: f.name }),
    });
    const info = await readJson(init);
    if (!init.ok) throw new Error(describeError(init, info));
    const put = await fetch(info.upload_url, { method: "PUT", headers: { "Content-Type": type }, body: f });
    if (!put.ok) throw new Error(describeError(put, await readJson(put)));
    return info.file_url;
  }

  function collectInput() {
    const input = {};
    for (const f of fields) {
      const v = f.get();
      if (v === undefined) continue;
      // Defaults are left out (the server applies them), so snippets stay short.
      if (!f.required && f.schema.default !== undefined && JSON.stringify(v) === JSON.stringify(f.schema.default)) continue;
      input[f.name] = v;
    }
    return input;
  }

  function setInput(values) {
    for (const f of fields) {
      if (Object.prototype.hasOwnProperty.call(values, f.name)) f.set(values[f.name]);
      else f.reset();
    }
    updateSnippet();
  }

  // ---- errors -------------------------------------------------------------------------------

  function clearFieldError(name) {
    const f = fields.find((x) => x.name === name);
    if (!f) return;
    f.el.classList.remove("invalid");
    f.errEl.textContent = "";
  }

  function showFieldError(name, msg) {
    const f = fields.find((x) => x.name === name);
    if (!f) return false;
    f.el.classList.add("invalid");
    f.errEl.textContent = f.errEl.textContent ? f.errEl.textContent + "; " + msg : msg;
    if (!f.primary) $("more").open = true;
    return true;
  }

  function clearErrors() {
    for (const f of fields) clearFieldError(f.name);
    $("form-error").hidden = true;
    $("form-error").textContent = "";
  }

  function showFormError(msg) {
    $("form-error").textContent = msg;
    $("form-error").hidden = false;
  }

  // fal's 422 body: `{"detail": [{"loc": ["body", field, ...], "msg", "type"}]}`.
  function show422(detail) {
    const rest = [];
    for (const d of detail) {
      const loc = Array.isArray(d.loc) ? d.loc : [];
      const name = loc[0] === "body" ? loc[1] : loc[0];
      if (!showFieldError(String(name), d.msg || JSON.stringify(d))) rest.push(loc.join(".") + ": " + d.msg);
    }
    if (rest.length) showFormError(rest.join("\n"));
  }

  // ---- snippets -----------------------------------------------------------------------------

  function py(v, indent) {
    const pad = "    ".repeat(indent + 1), end = "    ".repeat(indent);
    if (v === null || v === undefined) return "None";
    if (v === true) return "True";
    if (v === false) return "False";
    if (typeof v === "number" || typeof v === "string") return JSON.stringify(v);
    if (Array.isArray(v)) return "[" + v.map((x) => py(x, indent + 1)).join(", ") + "]";
    const items = Object.entries(v).map(([k, x]) => pad + JSON.stringify(k) + ": " + py(x, indent + 1));
    return items.length ? "{\n" + items.join(",\n") + ",\n" + end + "}" : "{}";
  }

  function snippet(lang) {
    const input = collectInput();
    const base = ROOT;
    if (lang === "curl") {
      const body = JSON.stringify(input, null, 2).replace(/'/g, "'\\''");
      return "# FAL_KEY: your API key (leave the header out on a server without keys)\n" +
        "curl -s -X POST \"" + base + "/queue/" + APP + "\" \\\n" +
        "  -H \"Authorization: Key $FAL_KEY\" -H 'Content-Type: application/json' \\\n" +
        "  -d '" + body + "'\n" +
        "# then: curl -sN \"$STATUS_URL/stream?logs=1\" -H \"Authorization: Key $FAL_KEY\"\n" +
        "#       curl -s \"$RESPONSE_URL\" -H \"Authorization: Key $FAL_KEY\"";
    }
    if (lang === "python") {
      return "import fal_client, fal_client.client as fc\n" +
        "fc.RUN_URL_FORMAT = " + JSON.stringify(base + "/") + "\n" +
        "fc.QUEUE_URL_FORMAT = " + JSON.stringify(base + "/queue/") + "\n" +
        "fc.REST_URL = fc.CDN_URL = " + JSON.stringify(base) + "      # uploads\n" +
        "# FAL_KEY=your-key in the environment, as with fal\n" +
        "result = fal_client.subscribe(\n" +
        "    " + JSON.stringify(APP) + ",\n" +
        "    arguments=" + py(input, 1) + ",\n" +
        "    with_logs=True, on_queue_update=print)\n" +
        "print(result[\"video\"][\"url\"])";
    }
    return "import { createFalClient } from \"@fal-ai/client\";\n" +
      "const fal = createFalClient({ credentials: process.env.FAL_KEY,\n" +
      "  proxyUrl: { url: " + JSON.stringify(base + "/api/fal/proxy") + ", when: \"always\" } });\n" +
      "const { data } = await fal.subscribe(" + JSON.stringify(APP) + ", {\n" +
      "  input: " + JSON.stringify(input, null, 2).replace(/\n/g, "\n  ") + ",\n" +
      "  logs: true, mode: \"streaming\",\n" +
      "  onQueueUpdate: (u) => console.log(u.status, u.logs?.at(-1)?.message) });\n" +
      "console.log(data.video.url);";
  }

  function updateSnippet() {
    if (!APP) return;
    $("snippet").textContent = snippet(snippetLang);
    $("snippet").dataset.lang = snippetLang;
  }

  // ---- history ------------------------------------------------------------------------------

  function loadHistory() {
    try { return JSON.parse(localStorage.getItem(HISTORY_STORE) || "[]"); } catch (_) { return []; }
  }

  function saveHistory(list) {
    try { localStorage.setItem(HISTORY_STORE, JSON.stringify(list.slice(0, HISTORY_MAX))); } catch (_) { /* quota */ }
    renderHistory();
  }

  function updateHistory(id, patch) {
    const list = loadHistory();
    const e = list.find((x) => x.id === id);
    if (!e) return;
    Object.assign(e, patch);
    saveHistory(list);
  }

  function storableInput(input) {
    const out = {};
    for (const [k, v] of Object.entries(input)) {
      if (typeof v === "string" && v.length > HISTORY_MAX_STRING) continue;
      out[k] = v;
    }
    return out;
  }

  function renderHistory() {
    const ul = $("history");
    ul.textContent = "";
    for (const e of loadHistory()) {
      const when = new Date(e.submitted_at).toLocaleString();
      ul.append(el("li", { "data-request-id": e.id },
        el("span", { class: "badge " + (e.state || ""), text: e.state || "?" }),
        el("span", { class: "mono", text: e.id.slice(0, 8) }),
        el("span", { class: "muted", text: when }),
        el("span", { text: (e.input && e.input.prompt ? String(e.input.prompt).slice(0, 40) : "") }),
        el("button", { type: "button", class: "open", text: "Open", onclick: () => openJob(e) }),
        el("button", { type: "button", class: "load", text: "Load input", onclick: () => setInput(e.input || {}) })));
    }
  }

  // ---- jobs ---------------------------------------------------------------------------------

  async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    const input = collectInput();
    const btn = $("submit");
    btn.disabled = true;
    try {
      let resp;
      try {
        resp = await fetch(ROOT + "/queue/" + APP, {
          method: "POST",
          headers: authHeaders({ "Content-Type": "application/json" }),
          body: JSON.stringify(input),
        });
      } catch (e) {
        showFormError("network error: " + e.message);
        return;
      }
      const body = await readJson(resp);
      if (resp.status === 422 && body && Array.isArray(body.detail)) {
        show422(body.detail);
        return;
      }
      if (!resp.ok) {
        showFormError(describeError(resp, body));
        return;
      }
      const entry = {
        id: body.request_id,
        app: APP,
        submitted_at: Date.now(),
        status_url: body.status_url,
        response_url: body.response_url,
        cancel_url: body.cancel_url,
        input: storableInput(input),
        state: "IN_QUEUE",
        estimated_cost_usd: body.estimated_cost_usd,
      };
      saveHistory([entry].concat(loadHistory().filter((x) => x.id !== entry.id)));
      openJob(entry, true);
    } finally {
      btn.disabled = false;
    }
  }

  function openJob(entry, fresh) {
    if (view) view.abort.abort();
    // `fresh`: just submitted here, so the time until IN_PROGRESS is the queue wait.
    view = { entry, abort: new AbortController(), stages: new Map(), done: false, runningAt: null, sawQueued: !!fresh };
    $("no-job").hidden = true;
    $("job").hidden = false;
    $("job-id").textContent = entry.id;
    $("progress").textContent = "";
    $("logs").textContent = "";
    $("output").textContent = "";
    $("output-meta").textContent = "";
    $("job-error").hidden = true;
    setBadge(entry.state || "IN_QUEUE");
    $("cancel").hidden = false;
    follow(view);
  }

  function setBadge(state, extra) {
    const b = $("job-status");
    b.textContent = state + (extra ? " · " + extra : "");
    b.className = "badge " + state;
    b.dataset.state = state;
  }

  async function follow(v) {
    try {
      await streamStatus(v);
    } catch (e) {
      if (v.abort.signal.aborted) return;
      appendLog(v, "", "status stream: " + e.message + "; polling instead");
    }
    while (!v.done && !v.abort.signal.aborted) {
      try {
        const resp = await fetch(v.entry.status_url + "?logs=1", { headers: authHeaders(), signal: v.abort.signal });
        const body = await readJson(resp);
        if (!resp.ok && resp.status !== 202) { jobError(v, describeError(resp, body)); return; }
        // Polling returns every log line: show only the new ones.
        const logs = body.logs || [];
        body.logs = logs.slice(v.logCount || 0);
        await onStatus(v, body);
      } catch (e) {
        if (v.abort.signal.aborted) return;
        appendLog(v, "", "status: " + e.message);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  // The SSE status stream, read with fetch so the key can go in a header (EventSource cannot).
  async function streamStatus(v) {
    const resp = await fetch(v.entry.status_url + "/stream?logs=1", {
      headers: authHeaders({ Accept: "text/event-stream" }),
      signal: v.abort.signal,
    });
    if (!resp.ok) {
      const body = await readJson(resp);
      if (resp.status === 404 || resp.status === 401) { jobError(v, describeError(resp, body)); v.done = true; return; }
      throw new Error(describeError(resp, body));
    }
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) await onStatus(v, JSON.parse(data));
      }
    }
  }

  async function onStatus(v, st) {
    if (v !== view) return;
    for (const l of st.logs || []) {
      v.logCount = (v.logCount || 0) + 1;
      appendLog(v, l.timestamp, l.message);
      progress(v, l.message);
    }
    if (st.status === "IN_QUEUE") {
      v.sawQueued = true;
      setBadge("IN_QUEUE", st.queue_position !== undefined ? "position " + st.queue_position : "");
    } else if (st.status === "IN_PROGRESS") {
      if (!v.runningAt) v.runningAt = Date.now();
      setBadge("IN_PROGRESS");
      if (v.entry.state !== "IN_PROGRESS") {
        v.entry.state = "IN_PROGRESS";
        updateHistory(v.entry.id, { state: "IN_PROGRESS" });
      }
    } else if (st.status === "COMPLETED" && !v.done) {
      v.done = true;
      $("cancel").hidden = true;
      const doneAt = Date.now();
      const timings = {
        inference_time: st.metrics ? st.metrics.inference_time : undefined,
        queue_wait: v.runningAt && v.sawQueued && !v.entry.finished_at ? (v.runningAt - v.entry.submitted_at) / 1000 : v.entry.queue_wait,
        total: v.entry.finished_at ? v.entry.total : (doneAt - v.entry.submitted_at) / 1000,
      };
      if (st.error) {
        const state = st.error_type === "client_cancelled" ? "CANCELLED" : "FAILED";
        setBadge(state);
        jobError(v, st.error + (st.error_type ? " (" + st.error_type + ")" : ""));
        updateHistory(v.entry.id, { state, finished_at: v.entry.finished_at || doneAt, error: st.error });
        return;
      }
      setBadge("COMPLETED");
      await showResult(v, timings);
      updateHistory(v.entry.id, { state: "COMPLETED", finished_at: v.entry.finished_at || doneAt, queue_wait: timings.queue_wait, total: timings.total });
    }
  }

  function jobError(v, msg) {
    if (v !== view) return;
    $("cancel").hidden = true;
    $("job-error").textContent = msg;
    $("job-error").hidden = false;
  }

  function appendLog(v, ts, msg) {
    if (v !== view) return;
    const logs = $("logs");
    logs.textContent += (ts ? ts.replace("T", " ").slice(0, 23) + "  " : "") + msg + "\n";
    logs.scrollTop = logs.scrollHeight;
  }

  // A progress bar per stage from the job's log lines.
  function progress(v, msg) {
    const m = PROGRESS_RE.exec(msg);
    if (!m) return;
    const [, stage, seg, segs, step, total, eta] = m;
    const p = { stage, seg: seg ? +seg : 1, segs: segs ? +segs : 1, step: +step, total: +total, eta };
    let row = v.stages.get(stage);
    if (!row) {
      row = el("div", { class: "stage", "data-stage": stage },
        el("div", { class: "label" }, el("span", { class: "name", text: stage }), el("span", { class: "detail" })),
        el("div", { class: "bar" }, el("div")));
      v.stages.set(stage, row);
      $("progress").append(row);
    }
    setFraction(row, p.total > 0 ? ((p.seg - 1) * p.total + p.step) / (p.segs * p.total) : 0);
    // Stages run one after another: another stage reporting means the others are done.
    for (const [name, other] of v.stages) if (name !== stage) markDone(other);
    const detail = (p.segs > 1 ? "segment " + p.seg + "/" + p.segs + " · " : "") +
      "step " + p.step + "/" + p.total + (eta ? " · eta " + eta : "");
    row.querySelector(".detail").textContent = detail;
  }

  function markDone(row) {
    if (row.dataset.fraction === "1.000") return;
    setFraction(row, 1);
    row.querySelector(".detail").textContent = "done";
  }

  function setFraction(row, frac) {
    row.querySelector(".bar > div").style.width = Math.min(100, Math.round(frac * 100)) + "%";
    row.dataset.fraction = frac.toFixed(3);
  }

  async function showResult(v, timings) {
    for (const row of v.stages.values()) markDone(row);
    const resp = await fetch(v.entry.response_url, { headers: authHeaders(), signal: v.abort.signal });
    const out = await readJson(resp);
    if (!resp.ok) { jobError(v, describeError(resp, out)); return; }
    if (v !== view) return;
    const video = out.video || {};
    const isGif = /gif/.test(video.content_type || "") || /\.gif$/i.test(video.file_name || "");
    const media = isGif
      ? el("img", { id: "result-media", src: video.url, alt: "generated GIF" })
      : el("video", { id: "result-media", src: video.url, controls: true, autoplay: true, muted: true, loop: true, playsinline: true });
    if (!isGif) media.muted = true;
    $("output").append(media, el("div", {}, el("a", { href: video.url, download: video.file_name || "", text: "download " + (video.file_name || "") })));
    const meta = $("output-meta");
    const row = (k, val) => meta.append(el("dt", { text: k }), el("dd", { "data-meta": k, text: val }));
    row("file", (video.file_name || "?") + " · " + (video.content_type || "?"));
    row("size", formatBytes(video.file_size));
    row("seed", String(out.seed));
    row("inference", formatSeconds(timings.inference_time));
    if (typeof timings.queue_wait === "number") row("queue wait", formatSeconds(timings.queue_wait));
    if (typeof timings.total === "number") row("total", formatSeconds(timings.total));
    if (out.prompt) row("prompt", out.prompt);
  }

  async function cancel() {
    if (!view) return;
    const v = view;
    const resp = await fetch(v.entry.cancel_url, { method: "PUT", headers: authHeaders() });
    const body = await readJson(resp);
    if (resp.status === 202) appendLog(v, "", "cancellation requested");
    else appendLog(v, "", "cancel: " + describeError(resp, body));
  }

  // ---- start --------------------------------------------------------------------------------

  async function start() {
    const keyInput = $("api-key");
    keyInput.value = localStorage.getItem(KEY_STORE) || "";
    keyInput.addEventListener("change", () => localStorage.setItem(KEY_STORE, keyInput.value.trim()));
    $("input-form").addEventListener("submit", submit);
    $("reset").addEventListener("click", () => { clearErrors(); setInput({}); });
    $("cancel").addEventListener("click", cancel);
    $("clear-history").addEventListener("click", () => saveHistory([]));
    for (const b of $("snippet-tabs").querySelectorAll("button[data-lang]")) {
      b.addEventListener("click", () => {
        snippetLang = b.dataset.lang;
        for (const x of $("snippet-tabs").querySelectorAll("button[data-lang]")) x.classList.toggle("active", x === b);
        updateSnippet();
      });
    }
    $("copy-snippet").addEventListener("click", async () => {
      try { await navigator.clipboard.writeText($("snippet").textContent); $("copy-snippet").textContent = "Copied"; } catch (_) {
        const r = document.createRange(); r.selectNodeContents($("snippet"));
        const s = getSelection(); s.removeAllRanges(); s.addRange(r);
      }
      setTimeout(() => { $("copy-snippet").textContent = "Copy"; }, 1500);
    });
    renderHistory();

    fetch(ROOT + "/health").then(readJson).then((h) => {
      if (h && h.model) {
        $("server-info").textContent = "model: " + h.model.name + " · queue " + h.queue_depth;
      }
    }).catch(() => {});

    let doc;
    try {
      // `/playground/{app}` builds its form from that app's own document.
      const docUrl = ROOT + "/openapi.json" +
        (PATH_APP ? "?endpoint_id=" + encodeURIComponent(PATH_APP) : "");
      const resp = await fetch(docUrl);
      doc = await readJson(resp);
      if (!resp.ok) throw new Error(describeError(resp, doc));
      const meta = doc.info && doc.info["x-fal-metadata"];
      APP = APP || (meta && meta.endpointId);
      if (!APP) throw new Error("no endpoint id in the OpenAPI document");
      const schema = inputSchemaOf(doc, APP);
      const props = schema.properties || {};
      const order = (schema["x-fal-order-properties"] || []).filter((n) => n in props);
      for (const n of Object.keys(props)) if (!order.includes(n)) order.push(n);
      const required = new Set(schema.required || []);
      fields = order.map((n) => buildField(doc, n, props[n], required.has(n)));
    } catch (e) {
      $("load-error").textContent = "Could not build the form from the OpenAPI document: " + e.message;
      $("load-error").hidden = false;
      return;
    }
    $("app-id").textContent = APP;
    document.title = APP + " · LongCat playground";
    for (const f of fields) (f.primary ? $("fields") : $("more-fields")).append(f.el);
    $("submit").disabled = false;
    updateSnippet();
    document.body.dataset.ready = "1";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
