// tkr-embed's page: search and collection browser over the same-origin
// HTTP API. No framework, no build step, nothing fetched but our own API.
//
// Media: without an API key, <img>/<video> load content and thumbnail URLs
// directly (so the browser streams videos with Range requests); with a key
// they cannot send the header, so the page fetches them with it and shows
// them from blob URLs.

const $ = (selector, root = document) => root.querySelector(selector);
const KEY_STORE = "tkr-embed.api-key";

// ---------------------------------------------------------------- API calls

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let keyPrompt = null; // the pending key prompt, shared by concurrent 401s

function apiKey() {
  return sessionStorage.getItem(KEY_STORE);
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorFrom(response) {
  let code = "http_" + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch (_) { /* not JSON: keep the status line */ }
  message = keyRefusal(response.status, code, message, response.headers.get("Retry-After"));
  return new ApiError(response.status, code, message);
}

// A 403 `forbidden` or a 429 is about the key, not what was asked: say so
// (asking for the key again would not help).
function keyRefusal(status, code, message, retryAfter) {
  if (status === 403 && code === "forbidden") return `Not allowed with this API key: ${message}`;
  if (status === 429) {
    return `Too many requests with this API key: try again in ${retryAfter || 1} s.`;
  }
  return message;
}

// fetch() with the key; a 401 asks for a key and tries again.
async function call(path, options = {}) {
  for (;;) {
    const response = await fetch(path, {
      ...options,
      headers: { ...(options.headers || {}), ...authHeaders() },
    });
    if (response.status === 401) {
      await askForKey(apiKey() ? "That key was refused." : "");
      continue;
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }
}

async function json(path, options = {}) {
  return (await call(path, options)).json();
}

function postJson(path, body) {
  return json(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function askForKey(error) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve) => {
      const dialog = $("#key-dialog");
      $("#key-error").textContent = error;
      $("#api-key").value = "";
      $("#key-form").onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY_STORE, $("#api-key").value.trim());
        dialog.close();
        keyPrompt = null;
        resolve();
      };
      dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
      dialog.showModal();
      $("#api-key").focus();
    });
  }
  return keyPrompt;
}

const enc = encodeURIComponent;
const docPath = (c, id) => `/collections/${enc(c)}/documents/${enc(id)}`;

// A URL an <img>/<video> can load: the API URL itself, or with a key, a
// blob URL of the bytes fetched with it.
const blobUrls = [];
async function mediaUrl(path) {
  if (!apiKey()) return path;
  const blob = await (await call(path)).blob();
  const url = URL.createObjectURL(blob);
  blobUrls.push(url);
  return url;
}

function releaseBlobs() {
  while (blobUrls.length) URL.revokeObjectURL(blobUrls.pop());
}

function thumbnailPath(collection, id, segment) {
  const params = new URLSearchParams();
  if (segment && segment.page != null && segment.start == null) params.set("page", segment.page);
  if (segment && segment.start_s != null) {
    params.set("start_s", segment.start_s);
    params.set("end_s", segment.end_s);
  }
  const query = params.toString();
  return `${docPath(collection, id)}/thumbnail${query ? "?" + query : ""}`;
}

// ------------------------------------------------------------------ helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function showNotice(message) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.hidden = !message;
}

function fmtTime(seconds) {
  const m = Math.floor(seconds / 60);
  const s = (seconds - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

function segmentLabel(segment) {
  if (!segment) return "";
  if (segment.start_s != null) return `${fmtTime(segment.start_s)}–${fmtTime(segment.end_s)}`;
  if (segment.page != null && segment.start == null) return `page ${segment.page}`;
  // A text chunk: where a reader finds it (its page), else its byte range.
  if (segment.start != null) {
    return segment.page != null ? `text on page ${segment.page}` : `text at ${segment.start}–${segment.end}`;
  }
  return "";
}

function readFileAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// -------------------------------------------------------------- collections

let collections = [];
let serverModel = "";

async function loadCollections() {
  const list = await json("/collections");
  collections = list.collections;
  const previous = $("#collection").value || sessionStorage.getItem("tkr-embed.collection");
  for (const select of [$("#collection"), $("#upload-collection")]) {
    const keep = select.value || previous;
    select.replaceChildren(
      ...collections.map((c) => el("option", { value: c.name, text: `${c.name} (${c.documents})` })),
    );
    if (collections.some((c) => c.name === keep)) select.value = keep;
  }
  renderCollectionRows();
  const total = collections.reduce((sum, c) => sum + c.documents, 0);
  $("#server-info").textContent = `${serverModel} · ${total} documents`;
}

function renderCollectionRows() {
  $("#collections-empty").hidden = collections.length > 0;
  $("#collection-rows").replaceChildren(
    ...collections.map((c) =>
      el("tr", { "data-collection": c.name },
        el("td", { text: c.name }),
        el("td", { text: String(c.documents) }),
        el("td", { text: c.vectors }),
        el("td", { text: new Date(c.created_ms).toLocaleString() }),
        el("td", {},
          el("button", { type: "button", class: "danger", "aria-label": `Drop collection ${c.name}`,
            text: "Drop", onclick: () => dropCollection(c.name) })))),
  );
}

async function dropCollection(name) {
  if (!confirm(`Drop the collection "${name}" and all its documents? This cannot be undone.`)) return;
  try {
    await call(`/collections/${enc(name)}`, { method: "DELETE" });
    await loadCollections();
  } catch (error) {
    showNotice(`Could not drop ${name}: ${error.message}`);
  }
}

async function createCollection(event) {
  event.preventDefault();
  const name = $("#new-name").value.trim();
  const textFields = $("#new-text-fields").value.split(",").map((s) => s.trim()).filter(Boolean);
  $("#create-error").textContent = "";
  try {
    await postJson("/collections", { name, text_fields: textFields });
    $("#new-name").value = "";
    $("#new-text-fields").value = "";
    await loadCollections();
    $("#collection").value = name;
    $("#upload-collection").value = name;
  } catch (error) {
    $("#create-error").textContent = error.message;
  }
}

// ------------------------------------------------------------------ uploads

// One file at a time (the server embeds them one after another anyway), each
// with its own progress bar and the server's message when it fails.
const uploadQueue = [];
let uploading = false;

function queueUploads(files) {
  const collection = $("#upload-collection").value;
  if (!collection) {
    showNotice("Create a collection first, then upload into it.");
    return;
  }
  for (const file of files) {
    const progress = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
    const status = el("span", { class: "status", text: "waiting" });
    const row = el("li", { "data-file": file.name }, el("span", { text: file.name }), progress, status);
    $("#upload-list").append(row);
    uploadQueue.push({ file, collection, progress, status, row });
  }
  if (!uploading) drainUploads();
}

async function drainUploads() {
  uploading = true;
  while (uploadQueue.length) {
    const job = uploadQueue.shift();
    try {
      const inserted = await upload(job);
      job.row.classList.add("done");
      job.status.textContent = `stored as ${inserted.id} (${inserted.modality})`;
    } catch (error) {
      job.row.classList.add("failed");
      job.status.textContent = error.message;
    }
  }
  uploading = false;
  loadCollections().catch((error) => showNotice(error.message));
}

// XMLHttpRequest, because fetch() reports no upload progress.
function upload({ file, collection, progress, status }) {
  return new Promise((resolve, reject) => {
    const send = () => {
      const form = new FormData();
      form.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/collections/${enc(collection)}/documents`);
      const key = apiKey();
      if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) progress.value = event.loaded / event.total;
        status.textContent = progress.value >= 1 ? "embedding…" : "uploading…";
      };
      xhr.onload = async () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        if (xhr.status === 401) {
          await askForKey(key ? "That key was refused." : "");
          send();
        } else if (xhr.status >= 200 && xhr.status < 300) {
          progress.value = 1;
          resolve(body);
        } else {
          const error = body && body.error ? body.error : { code: "", message: `${xhr.status} ${xhr.statusText}` };
          reject(new Error(keyRefusal(xhr.status, error.code, error.message,
            xhr.getResponseHeader("Retry-After"))));
        }
      };
      xhr.onerror = () => reject(new Error("the connection to the server failed"));
      status.textContent = "uploading…";
      xhr.send(form);
    };
    send();
  });
}

// ------------------------------------------------------------------- search

let queryImage = null; // the query image as a data URL

async function setQueryImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showNotice("That is not an image file.");
    return;
  }
  queryImage = await readFileAsDataUrl(file);
  $("#image-preview img").src = queryImage;
  $("#image-preview").hidden = false;
}

function clearQueryImage() {
  queryImage = null;
  $("#image-query").value = "";
  $("#image-preview").hidden = true;
}

function readFilter() {
  const text = $("#filter").value.trim();
  $("#filter-error").textContent = "";
  $("#filter").removeAttribute("aria-invalid");
  if (!text) return { ok: true, filter: undefined };
  try {
    return { ok: true, filter: JSON.parse(text) };
  } catch (error) {
    $("#filter-error").textContent = `Not JSON: ${error.message}`;
    $("#filter").setAttribute("aria-invalid", "true");
    return { ok: false };
  }
}

async function search(query) {
  const collection = $("#collection").value;
  if (!collection) {
    $("#search-status").textContent = "No collection to search: create one under Collections.";
    return;
  }
  sessionStorage.setItem("tkr-embed.collection", collection);
  const filter = readFilter();
  if (!filter.ok) return;
  const body = {
    ...query,
    k: Number($("#k").value) || 12,
    include: ["metadata", "chunk"],
  };
  if (filter.filter !== undefined) body.filter = filter.filter;
  if ($("#mode").value) body.mode = $("#mode").value;
  $("#search-status").textContent = "Searching…";
  const button = $("#search-form button[type=submit]");
  button.disabled = true;
  try {
    const result = await postJson(`/collections/${enc(collection)}/search`, body);
    releaseBlobs();
    browseNext = null;
    browsing = "";
    $("#more").hidden = true;
    await renderHits(collection, result.hits);
    $("#search-status").textContent = result.hits.length
      ? `${result.hits.length} results in ${result.took_ms.toFixed(1)} ms`
      : "Nothing found.";
  } catch (error) {
    $("#results").replaceChildren();
    $("#search-status").textContent = "";
    if (error.code === "invalid_filter" || /filter/i.test(error.message)) {
      $("#filter-error").textContent = error.message;
      $("#filter").setAttribute("aria-invalid", "true");
    } else {
      showNotice(error.message);
    }
  } finally {
    button.disabled = false;
  }
}

function searchFromForm(event) {
  event.preventDefault();
  showNotice("");
  const text = $("#query-text").value.trim();
  if (!text && !queryImage) {
    $("#search-status").textContent = "Type some text or choose an image to search with.";
    return;
  }
  const query = {};
  if (text) query.text = text;
  if (queryImage) query.image = queryImage;
  search(query);
}

async function renderHits(collection, hits) {
  const cards = await Promise.all(hits.map((hit) => hitCard(collection, hit)));
  $("#results").replaceChildren(...cards);
}

async function hitCard(collection, hit) {
  const segment = hit.segment || null;
  const card = el("article", {
    class: "card",
    "data-testid": "hit",
    "data-doc-id": hit.id,
    "data-score": String(hit.score),
    "data-modality": hit.modality,
    "data-segment": segment ? JSON.stringify(segment) : null,
  });
  const media = await hitMedia(collection, hit, segment);
  if (media) card.append(media);
  card.append(
    el("div", { class: "meta" },
      el("span", { class: "id", text: hit.id }),
      el("span", { class: "badge", text: hit.modality }),
      segment ? el("span", { class: "badge", text: segmentLabel(segment) }) : null,
      el("span", { class: "muted", text: `score ${hit.score.toFixed(4)}` })),
    cardActions(collection, hit.id, segment),
  );
  return card;
}

// "More like this" (search by the stored document) and "Details".
function cardActions(collection, id, segment) {
  return el("div", { class: "actions" },
    el("button", { type: "button", "data-testid": "more-like-this", text: "More like this",
      onclick: () => search({ document_id: id }) }),
    el("button", { type: "button", "data-testid": "details", text: "Details",
      onclick: () => showDetail(collection, id, segment) }));
}

async function hitMedia(collection, hit, segment) {
  const chunk = typeof hit.chunk === "string" ? hit.chunk : null;
  try {
    if (segment && segment.start_s != null && hit.content_url) {
      const src = await mediaUrl(hit.content_url);
      return el("div", { class: "media" }, segmentVideo(src, segment, `Video ${hit.id}`));
    }
    if (segment && segment.page != null && segment.start == null) {
      const src = await mediaUrl(thumbnailPath(collection, hit.id, segment));
      return el("div", { class: "media" },
        el("img", { src, alt: `Page ${segment.page} of ${hit.id}`, loading: "lazy" }));
    }
    if ((hit.modality === "image" || hit.modality === "fused") && hit.content_url) {
      const src = await mediaUrl(thumbnailPath(collection, hit.id, null));
      return el("div", { class: "media" }, el("img", { src, alt: hit.id, loading: "lazy" }));
    }
  } catch (error) {
    return el("p", { class: "chunk field-error", text: `Preview failed: ${error.message}` });
  }
  const text = chunk || (hit.metadata && hit.metadata.title) || "";
  return text ? el("p", { class: "chunk", text }) : null;
}

// ------------------------------------------------------------------- browse

// The collection a page at a time, in id order: only what is shown is
// loaded, whatever the collection's size.
const BROWSE_PAGE = 48;
let browseNext = null;
let browsing = "";

async function browse(more) {
  const collection = $("#collection").value;
  if (!collection) return;
  showNotice("");
  const params = new URLSearchParams({ limit: String(BROWSE_PAGE) });
  if (more && browseNext) params.set("after", browseNext);
  try {
    const page = await json(`/collections/${enc(collection)}/documents?${params}`);
    if (!more) {
      releaseBlobs();
      $("#results").replaceChildren();
    }
    browsing = collection;
    const cards = await Promise.all(page.documents.map((doc) => documentCard(collection, doc)));
    $("#results").append(...cards);
    browseNext = page.next || null;
    $("#more").hidden = !browseNext;
    const shown = $("#results").children.length;
    $("#search-status").textContent = shown
      ? `${collection}: the first ${shown} documents by id${browseNext ? "" : " (all of them)"}`
      : `${collection} has no documents yet: upload some under Collections.`;
  } catch (error) {
    showNotice(error.message);
  }
}

// A stored document as a card: its picture (an image, a PDF's first page, a
// video's first segment) or the start of its text.
async function documentCard(collection, doc) {
  const card = el("article", { class: "card", "data-testid": "document", "data-doc-id": doc.id,
    "data-modality": doc.modality });
  const picture = doc.modality === "image" || doc.modality === "fused" ||
    doc.segments.some((s) => s.start_s != null || (s.page != null && s.start == null));
  let media = null;
  if (picture && doc.content_url) {
    try {
      media = el("div", { class: "media" }, el("img", {
        src: await mediaUrl(thumbnailPath(collection, doc.id, null)), alt: doc.id, loading: "lazy" }));
    } catch (error) {
      media = el("p", { class: "chunk field-error", text: `Preview failed: ${error.message}` });
    }
  } else if (doc.text) {
    media = el("p", { class: "chunk", text: doc.text.slice(0, 400) });
  }
  if (media) card.append(media);
  card.append(
    el("div", { class: "meta" },
      el("span", { class: "id", text: doc.id }),
      el("span", { class: "badge", text: doc.modality }),
      doc.segments.length ? el("span", { class: "muted", text: `${doc.segments.length} segments` }) : null),
    cardActions(collection, doc.id, null),
  );
  return card;
}

// A video that starts at the segment and stops at its end. The media
// fragment (#t=start,end) does it for direct URLs; setting currentTime does
// it for blob URLs, which some browsers do not seek from a fragment.
function segmentVideo(src, segment, label) {
  const video = el("video", {
    src: `${src}#t=${segment.start_s},${segment.end_s}`,
    controls: true, muted: true, preload: "metadata", playsinline: true,
    "aria-label": `${label}, ${segmentLabel(segment)}`,
    "data-start": String(segment.start_s),
  });
  video.muted = true;
  video.addEventListener("loadedmetadata", () => {
    if (Math.abs(video.currentTime - segment.start_s) > 0.05) video.currentTime = segment.start_s;
  }, { once: true });
  return video;
}

// ---------------------------------------------------------------- detail view

async function showDetail(collection, id, segment) {
  const dialog = $("#detail");
  $("#detail-title").textContent = id;
  const body = $("#detail-body");
  body.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  dialog.showModal();
  try {
    const doc = await json(docPath(collection, id));
    body.replaceChildren(...(await detailParts(collection, doc, segment)));
  } catch (error) {
    body.replaceChildren(el("p", { class: "field-error", text: error.message }));
  }
}

async function detailParts(collection, doc, segment) {
  const parts = [];
  const facts = [`${doc.modality}`];
  if (doc.content && doc.content.content_type) facts.push(doc.content.content_type);
  if (doc.content && doc.content.bytes != null) facts.push(`${doc.content.bytes} bytes`);
  facts.push(`updated ${new Date(doc.updated_ms).toLocaleString()}`);
  parts.push(el("p", { class: "muted", text: facts.join(" · ") }));

  const type = (doc.content && doc.content.content_type) || "";
  const main = el("div", { class: "detail-media" });
  if (doc.content_url && type.startsWith("video/")) {
    const start = segment && segment.start_s != null ? segment : { start_s: 0, end_s: 0 };
    const video = segmentVideo(await mediaUrl(doc.content_url), start, `Video ${doc.id}`);
    main.append(video);
    parts.push(main);
    const frames = doc.segments.filter((s) => s.start_s != null);
    if (frames.length) {
      parts.push(el("h3", { text: "Segments" }));
      parts.push(el("div", { class: "strip" }, ...(await Promise.all(frames.map(async (s) =>
        el("figure", {},
          el("button", { type: "button", "aria-label": `Play from ${fmtTime(s.start_s)}`,
            onclick: () => { video.currentTime = s.start_s; video.play().catch(() => {}); } },
            el("img", { src: await mediaUrl(thumbnailPath(collection, doc.id, s)), alt: "", loading: "lazy" })),
          el("figcaption", { text: segmentLabel(s) })))))));
    }
  } else if (doc.content_url && type === "application/pdf") {
    const pages = doc.segments.filter((s) => s.page != null && s.start == null);
    parts.push(el("h3", { text: "Pages" }));
    parts.push(el("div", { class: "strip" }, ...(await Promise.all(pages.map(async (s) =>
      el("figure", { "data-page": String(s.page), class: segment && segment.page === s.page ? "current" : null },
        el("img", { src: await mediaUrl(thumbnailPath(collection, doc.id, s)), alt: `Page ${s.page}`, loading: "lazy" }),
        el("figcaption", { text: `page ${s.page}` })))))));
  } else if (doc.content_url && type.startsWith("image/")) {
    main.append(el("img", { src: await mediaUrl(doc.content_url), alt: doc.id }));
    parts.push(main);
  }
  if (doc.text) {
    parts.push(el("h3", { text: "Text" }));
    parts.push(el("pre", { class: "json", text: doc.text.length > 4000 ? doc.text.slice(0, 4000) + "…" : doc.text }));
  }
  parts.push(el("h3", { text: "Metadata" }));
  parts.push(el("pre", { class: "json", text: JSON.stringify(doc.metadata, null, 2) }));
  if (doc.content_url) {
    const download = el("a", { href: doc.content_url, download: doc.id, text: "Download the original" });
    if (apiKey()) {
      download.addEventListener("click", async (event) => {
        event.preventDefault();
        const link = el("a", { href: await mediaUrl(doc.content_url), download: doc.id });
        link.click();
      });
    }
    parts.push(el("p", {}, download));
  }
  return parts;
}

// -------------------------------------------------------------------- setup

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const entries = [...event.dataTransfer.items]
      .map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
      .filter(Boolean);
    const files = entries.length ? await filesOf(entries) : [...event.dataTransfer.files];
    if (files.length) onFiles(files);
  });
}

// The files of dropped entries, folders walked (hidden entries skipped, as
// the CLI's import does).
async function filesOf(entries) {
  const files = [];
  const walk = async (entry) => {
    if (entry.name.startsWith(".")) return;
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      // readEntries returns a batch at a time, until an empty one.
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-pressed", String(tab.dataset.tab === name));
  }
  $("#tab-search").hidden = name !== "search";
  $("#tab-collections").hidden = name !== "collections";
}

async function start() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  $("#search-form").addEventListener("submit", searchFromForm);
  $("#image-query").addEventListener("change", (event) => setQueryImage(event.target.files[0]));
  $("#image-clear").addEventListener("click", clearQueryImage);
  dropZone($("#image-drop"), (files) => setQueryImage(files[0]));
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) setQueryImage(file);
  });
  $("#browse").addEventListener("click", () => browse(false));
  $("#more").addEventListener("click", () => browse(true));
  $("#collection").addEventListener("change", () => {
    if (browsing) browse(false);
    else $("#results").replaceChildren();
  });
  $("#create-form").addEventListener("submit", createCollection);
  $("#upload").addEventListener("change", (event) => {
    queueUploads([...event.target.files]);
    event.target.value = "";
  });
  dropZone($("#upload-drop"), queueUploads);
  $("#detail").addEventListener("close", () => {
    for (const video of $("#detail").querySelectorAll("video")) video.pause();
  });

  try {
    const info = await json("/info");
    // A hub id is owner/name; a local model directory shows its last two parts.
    serverModel = info.model.name.split("/").filter(Boolean).slice(-2).join("/");
    $("#k").max = String(info.limits.max_k);
    await loadCollections();
    if (!collections.length) showTab("collections");
  } catch (error) {
    showNotice(`The server did not answer: ${error.message}`);
  }
}

start();
