/* The photographer's upload page: pick or drop photos (or a folder), skip ones the event has,
   upload a few at a time under one batch id, and follow each photo live from the batch stream. */
"use strict";
(function () {
  const { api, el, fmt } = window.Snapmatch;
  const eventId = document.getElementById("upload-script").dataset.eventId;
  const list = document.getElementById("file-list");
  const batchBox = document.getElementById("batch");
  const bar = document.getElementById("bar");
  const countsLine = document.getElementById("counts");
  const retryButton = document.getElementById("retry-failed");
  const dropzone = document.getElementById("dropzone");

  const PARALLEL_REQUESTS = 3;          // uploads in flight at once
  const FILES_PER_REQUEST = 4;
  const BYTES_PER_REQUEST = 24 * 1024 * 1024;
  const HASH_GROUP = 25;                // files hashed and checked per /photos/check call
  const IMAGE_NAME = /\.(jpe?g|png|webp)$/i;
  const RANK = { waiting: 0, uploading: 1, queued: 2, processing: 3, done: 4, failed: 4, duplicate: 4, rejected: 4 };
  const LABEL = {
    waiting: "Waiting", uploading: "Uploading…", queued: "Queued", processing: "Finding faces…",
    done: "Done", failed: "Failed", duplicate: "Already in this event: skipped", rejected: "Not accepted",
  };

  const batchId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^a-zA-Z0-9]/g, "").slice(0, 32);
  const entries = [];                   // every file handled on this page, in order
  const byPhotoId = new Map();
  const earlyEvents = new Map();        // stream events for photos whose upload answer has not come yet
  const uploadQueue = [];
  let uploadsRunning = 0;
  let stream = null;
  let lastEventId = null;
  let batchKnown = false;               // the server has the batch once one upload was accepted

  // ---- rows -------------------------------------------------------------------------------
  function addFile(file) {
    const row = el("li", { "data-filename": file.name, "data-status": "waiting", class: "file" });
    const thumb = el("span", { class: "thumb", "aria-hidden": "true" });
    const name = el("span", { class: "name" }, file.webkitRelativePath || file.name);
    const state = el("span", { class: "state" }, LABEL.waiting);
    const reason = el("span", { class: "reason" });
    row.append(thumb, name, state, reason);
    list.append(row);
    const entry = { file, row, state, reason, thumb, status: "waiting", photoId: null, sha256: null, retryable: false };
    entries.push(entry);
    return entry;
  }

  function setStatus(entry, status, message, force) {
    if (!force && RANK[status] < RANK[entry.status]) return;
    if (!force && RANK[entry.status] === 4 && entry.status !== status && !entry.retryable) return;
    entry.status = status;
    entry.row.dataset.status = status;
    entry.state.textContent = LABEL[status];
    entry.reason.textContent = message || "";
    entry.retryable = status === "failed" && !entry.photoId;
    if (status === "done" && entry.photoId && !entry.thumb.firstChild) {
      entry.thumb.append(el("img", { src: `/api/photos/${entry.photoId}/thumbnail`, alt: "", loading: "lazy", width: 48, height: 48 }));
    }
    scheduleSummary();
  }

  let summaryPending = false;
  function scheduleSummary() {
    if (summaryPending) return;
    summaryPending = true;
    requestAnimationFrame(() => { summaryPending = false; summarize(); });
  }

  function summarize() {
    const counts = {};
    for (const e of entries) counts[e.status] = (counts[e.status] || 0) + 1;
    const finished = entries.filter((e) => RANK[e.status] === 4).length;
    const pct = entries.length ? Math.round((100 * finished) / entries.length) : 0;
    bar.style.width = pct + "%";
    bar.parentElement.setAttribute("aria-valuenow", String(pct));
    const order = ["done", "processing", "queued", "uploading", "waiting", "duplicate", "rejected", "failed"];
    countsLine.textContent = `${fmt(finished)} of ${fmt(entries.length)} handled — ` +
      order.filter((s) => counts[s]).map((s) => `${fmt(counts[s])} ${s}`).join(", ");
    const retryable = entries.filter((e) => e.retryable).length;
    retryButton.hidden = retryable === 0;
    retryButton.textContent = `Retry ${fmt(retryable)} failed upload${retryable === 1 ? "" : "s"}`;
    if (stream && finished === entries.length && uploadsRunning === 0) closeStream();
  }

  // ---- intake: hash, skip what the event has, queue the rest ------------------------------
  async function take(files) {
    const fresh = [];
    for (const file of files) {
      if (file.name.startsWith(".")) continue;     // .DS_Store and friends from folders
      const entry = addFile(file);
      if (!(file.type.startsWith("image/") || IMAGE_NAME.test(file.name))) {
        setStatus(entry, "rejected", "Not a photo: send JPEG, PNG or WebP files.");
        continue;
      }
      fresh.push(entry);
    }
    batchBox.hidden = entries.length === 0;
    summarize();
    for (let i = 0; i < fresh.length; i += HASH_GROUP) {
      const group = fresh.slice(i, i + HASH_GROUP);
      await skipDuplicates(group);
      for (const entry of group) if (entry.status === "waiting") uploadQueue.push(entry);
      pump();
    }
  }

  async function sha256Hex(file) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function skipDuplicates(group) {
    if (!(window.crypto && crypto.subtle)) return;  // plain http off localhost: the server still dedupes
    try {
      for (const entry of group) entry.sha256 = await sha256Hex(entry.file);
      const seen = new Set();
      const result = await api("POST", `/api/events/${eventId}/photos/check`, { sha256: group.map((e) => e.sha256) });
      const present = new Set(result.present);
      for (const entry of group) {
        if (present.has(entry.sha256) || seen.has(entry.sha256)) setStatus(entry, "duplicate", "");
        seen.add(entry.sha256);
      }
    } catch (err) {
      // The check only saves bandwidth; uploading anyway is safe (the server skips duplicates).
    }
  }

  // ---- uploads: a few requests at a time, each with a few files, all under one batch id -----
  function pump() {
    while (uploadsRunning < PARALLEL_REQUESTS && uploadQueue.length) {
      const group = [];
      let bytes = 0;
      while (uploadQueue.length && group.length < FILES_PER_REQUEST &&
             (group.length === 0 || bytes + uploadQueue[0].file.size <= BYTES_PER_REQUEST)) {
        const entry = uploadQueue.shift();
        bytes += entry.file.size;
        group.push(entry);
      }
      uploadsRunning += 1;
      send(group).finally(() => { uploadsRunning -= 1; pump(); scheduleSummary(); });
    }
  }

  async function send(group) {
    const form = new FormData();
    form.append("batch_id", batchId);
    for (const entry of group) {
      setStatus(entry, "uploading", "", true);
      form.append("files", entry.file, entry.file.name);
    }
    try {
      const answer = await api("POST", `/api/events/${eventId}/photos`, form);
      batchKnown = true;
      answer.photos.forEach((p, i) => {
        const entry = group[i];
        entry.photoId = p.photo_id || null;
        if (entry.photoId) byPhotoId.set(entry.photoId, entry);
        const reason = p.error ? p.error.message : "";
        setStatus(entry, p.status === "queued" ? "queued" : p.status, reason, true);
        for (const data of earlyEvents.get(entry.photoId) || []) applyEvent(data);
        earlyEvents.delete(entry.photoId);
      });
      openStream();
      if (answer.photos.some((p) => p.status === "queued")) refreshEventCountSoon();
    } catch (err) {
      if (err.status === 503 || err.status === 429) {
        // The queue is full or we are too fast: nothing was stored; try these again shortly.
        for (const entry of group) setStatus(entry, "waiting", `Server busy, retrying in ${err.retryAfter || 5} s…`, true);
        await new Promise((r) => setTimeout(r, 1000 * (err.retryAfter || 5)));
        uploadQueue.unshift(...group);
        return;
      }
      for (const entry of group) setStatus(entry, "failed", "Upload failed: " + err.message, true);
    }
  }

  retryButton.addEventListener("click", () => {
    for (const entry of entries) {
      if (!entry.retryable) continue;
      setStatus(entry, "waiting", "", true);
      uploadQueue.push(entry);
    }
    pump();
  });

  // ---- live statuses from the batch stream --------------------------------------------------
  function openStream() {
    if (stream || !batchKnown) return;
    const url = `/api/batches/${batchId}/events` + (lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : "");
    stream = new EventSource(url);
    const handle = (ev) => {
      if (ev.lastEventId) lastEventId = ev.lastEventId;
      let data;
      try { data = JSON.parse(ev.data); } catch (err) { return; }
      applyEvent(data);
      if (COUNTED_STAGES.has(data.stage)) refreshEventCountSoon();
    };
    for (const name of ["photo:queued", "photo:started", "faces:indexed", "photo:done", "photo:failed", "batch:done", "analysis:done"]) {
      stream.addEventListener(name, handle);
    }
  }

  function closeStream() {
    if (stream) { stream.close(); stream = null; }
  }

  function applyEvent(data) {
    if (data.photoId == null) return;
    const entry = byPhotoId.get(data.photoId);
    if (!entry) {
      if (!earlyEvents.has(data.photoId)) earlyEvents.set(data.photoId, []);
      earlyEvents.get(data.photoId).push(data);
      return;
    }
    if (data.stage === "photo:queued") setStatus(entry, "queued");
    else if (data.stage === "photo:started") setStatus(entry, "processing");
    else if (data.stage === "photo:done") {
      setStatus(entry, "done", data.faces != null ? `${data.faces} face${data.faces === 1 ? "" : "s"} found` : "");
      reloadProcessedSoon();
    } else if (data.stage === "photo:failed") {
      setStatus(entry, "failed", (data.error && data.error.message) || "The photo could not be processed.");
    }
  }

  // ---- "N photos in this event: …", re-read from the API when the stream says a photo changed ----
  const eventCount = document.getElementById("event-photo-count");
  const COUNTED_STAGES = new Set(["photo:queued", "photo:started", "photo:done", "photo:failed", "batch:done"]);
  const COUNT_REFRESH_MS = 500;         // at most two reads a second, however fast photos finish
  let countTimer = null;
  let countDirty = false;
  function refreshEventCountSoon() {
    countDirty = true;
    if (countTimer) return;
    countTimer = setTimeout(loadEventCount, COUNT_REFRESH_MS);
  }
  async function loadEventCount() {
    countDirty = false;
    try {
      const data = await api("GET", `/api/events/${encodeURIComponent(eventId)}`);
      const total = data.photos_total;
      const parts = Object.keys(data.photo_counts).sort().map((s) => `${fmt(data.photo_counts[s])} ${s}`);
      eventCount.dataset.total = String(total);
      eventCount.textContent = `${fmt(total)} photo${total === 1 ? "" : "s"} in this event` +
        (parts.length ? `: ${parts.join(", ")}` : "") + ".";
    } catch (err) { /* keep the last figures; the next change reads them again */ }
    countTimer = countDirty ? setTimeout(loadEventCount, COUNT_REFRESH_MS) : null;
  }

  // ---- the event's processed photos (first 120), refreshed when this page's uploads finish ----
  const processed = document.getElementById("processed");
  const processedCount = document.getElementById("processed-count");
  let processedTimer = null;
  async function loadProcessed() {
    try {
      const data = await api("GET", `/api/all-photos?event_id=${encodeURIComponent(eventId)}&per_page=120`);
      const have = new Set(Array.from(processed.children, (li) => Number(li.dataset.thumbPhotoId)));
      for (const p of data.photos) {
        if (have.has(p.photo_id)) continue;
        const li = el("li", { class: "photo", "data-thumb-photo-id": p.photo_id });
        const a = el("a", { href: `/api/photos/${p.photo_id}/original`, class: "open", target: "_blank", rel: "noopener", "aria-label": `Open photo ${p.photo_id}` });
        a.append(el("img", { src: p.thumbnail_url, loading: "lazy", decoding: "async", alt: "", width: 160, height: 160 }));
        li.append(a);
        processed.append(li);
      }
      processedCount.textContent = data.total ? `(${fmt(data.total)}${data.total > data.photos.length ? `, first ${fmt(data.photos.length)} shown` : ""})` : "";
      processed.parentElement.hidden = data.total === 0;
    } catch (err) { /* the list is a convenience; the rows above carry the statuses */ }
  }
  function reloadProcessedSoon() {
    clearTimeout(processedTimer);
    processedTimer = setTimeout(loadProcessed, 1500);
  }
  loadProcessed();

  // ---- pickers and the drop zone (files or whole folders) -----------------------------------
  for (const id of ["files", "folder"]) {
    const input = document.getElementById(id);
    input.addEventListener("change", () => { take(Array.from(input.files)); input.value = ""; });
  }
  dropzone.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); document.getElementById("files").click(); }
  });
  ["dragenter", "dragover"].forEach((t) => dropzone.addEventListener(t, (ev) => {
    ev.preventDefault(); dropzone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => dropzone.addEventListener(t, () => dropzone.classList.remove("over")));
  dropzone.addEventListener("drop", async (ev) => {
    ev.preventDefault();
    const items = Array.from(ev.dataTransfer.items || []);
    const roots = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
    take(roots.length ? await filesOf(roots) : Array.from(ev.dataTransfer.files));
  });

  async function filesOf(roots) {
    const out = [];
    async function walk(entry) {
      if (entry.isFile) {
        out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
          if (!batch.length) break;           // readEntries gives at most ~100 at a time
          for (const child of batch) await walk(child);
        }
      }
    }
    for (const root of roots) await walk(root);
    return out;
  }
})();
