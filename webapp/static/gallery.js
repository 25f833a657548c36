/* The attendee's page: one selfie, "my photos" growing live from the event stream, indexing
   progress, originals one by one or all as a zip, and deleting the selfie after a confirmation. */
"use strict";
(function () {
  const { api, el, fmt } = window.Snapmatch;
  const eventId = document.getElementById("gallery-script").dataset.eventId;
  const gallery = document.getElementById("gallery");
  const maybeGallery = document.getElementById("maybe-gallery");
  const maybeSection = document.getElementById("maybe-section");
  const empty = document.getElementById("gallery-empty");
  const mineCount = document.getElementById("mine-count");
  const statusLine = document.getElementById("selfie-status");
  const selfieInput = document.getElementById("selfie");
  const deleteButton = document.querySelector("[data-action=delete-selfie]");
  const downloadAll = document.getElementById("download-all");
  const indexingLine = document.getElementById("indexing");
  const indexingBar = document.getElementById("indexing-bar");
  const viewer = document.getElementById("viewer");

  const shown = new Map();        // photo id -> <li data-photo-id>
  const maybeShown = new Map();   // photo id -> <li data-maybe-photo-id>
  let hasFeedback = false;        // the API offers "maybe" and not-me / is-me
  let selfieStatus = null;
  let uploading = false;

  const STATUS_TEXT = {
    missing: "No selfie yet. Take one to find your photos.",
    processing: "Looking for your face in the event's photos…",
    ready: "Done: these are the photos you are in. New ones appear here as they are checked.",
    no_face: "We could not find a face in that selfie. Take another one facing the camera, in good light.",
    failed: "Your selfie could not be used. Try another one.",
  };

  // ---- my photos ------------------------------------------------------------------------------
  let refreshing = null;
  let again = false;
  function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      try {
        const data = await api("GET", `/api/my-photos?event_id=${encodeURIComponent(eventId)}`);
        render(data);
      } catch (err) {
        statusLine.textContent = err.message;
      } finally {
        refreshing = null;
        if (again) { again = false; refresh(); }
      }
    })();
    return refreshing;
  }

  function render(data) {
    hasFeedback = Array.isArray(data.maybe);
    selfieStatus = data.status;
    if (!uploading) statusLine.textContent = STATUS_TEXT[data.status] || data.status;
    statusLine.dataset.status = data.status;
    deleteButton.hidden = data.status === "missing";
    place(gallery, shown, data.photos || [], photoItem);
    place(maybeGallery, maybeShown, data.maybe || [], maybeItem);
    maybeSection.hidden = maybeShown.size === 0;
    empty.hidden = shown.size > 0;
    if (data.status === "missing") empty.textContent = "Take a selfie and your photos appear here.";
    else if (data.status === "ready") empty.textContent = "No photos of you yet. New ones appear here as the event's photos are checked.";
    else empty.textContent = "Your photos appear here as soon as they are found.";
    mineCount.textContent = shown.size ? `(${fmt(shown.size)})` : "";
    downloadAll.hidden = shown.size === 0;
  }

  /** Make ``list`` show exactly ``photos`` in their order, touching only what changed. */
  function place(list, map, photos, make) {
    const wanted = new Set(photos.map((p) => p.photo_id));
    for (const [id, li] of map) if (!wanted.has(id)) { li.remove(); map.delete(id); }
    let before = list.firstChild;
    for (const p of photos) {
      let li = map.get(p.photo_id);
      if (!li) { li = make(p); map.set(p.photo_id, li); }
      if (li !== before) list.insertBefore(li, before);
      else before = before.nextSibling;
    }
  }

  function photoItem(p) {
    const li = el("li", { "data-photo-id": p.photo_id, class: "photo" });
    const open = el("a", { href: `/api/photos/${p.photo_id}/original`, class: "open", "aria-label": `Open photo ${p.photo_id}` });
    open.append(el("img", { src: p.thumbnail_url, loading: "lazy", decoding: "async", alt: "", width: 240, height: 240 }));
    open.addEventListener("click", (ev) => { ev.preventDefault(); view(p.photo_id); });
    const tools = el("div", { class: "tools" });
    tools.append(el("a", { href: `/api/photos/${p.photo_id}/original`, download: `photo-${p.photo_id}`, class: "small" }, "Download"));
    if (hasFeedback) tools.append(feedbackButton(p.photo_id, "not-me", "Not me"));
    li.append(open, tools);
    return li;
  }

  function maybeItem(p) {
    const li = el("li", { "data-maybe-photo-id": p.photo_id, class: "photo maybe" });
    const open = el("a", { href: `/api/photos/${p.photo_id}/original`, class: "open", "aria-label": `Open photo ${p.photo_id}` });
    open.append(el("img", { src: p.thumbnail_url || `/api/photos/${p.photo_id}/thumbnail`, loading: "lazy", decoding: "async", alt: "", width: 240, height: 240 }));
    open.addEventListener("click", (ev) => { ev.preventDefault(); view(p.photo_id); });
    const tools = el("div", { class: "tools" });
    tools.append(feedbackButton(p.photo_id, "is-me", "That's me"), feedbackButton(p.photo_id, "not-me", "Not me"));
    li.append(open, tools);
    return li;
  }

  function feedbackButton(photoId, action, label) {
    const b = el("button", { type: "button", class: "small secondary", "data-action": action }, label);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await api("POST", `/api/photos/${photoId}/${action}`); await refresh(); }
      catch (err) { statusLine.textContent = err.message; b.disabled = false; }
    });
    return b;
  }

  function view(photoId) {
    const url = `/api/photos/${photoId}/original`;
    document.getElementById("viewer-img").src = url;
    const dl = document.getElementById("viewer-download");
    dl.href = url; dl.setAttribute("download", `photo-${photoId}`);
    if (viewer.showModal) viewer.showModal(); else window.open(url, "_blank");
  }
  document.getElementById("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (ev) => { if (ev.target === viewer) viewer.close(); });

  // ---- selfie ---------------------------------------------------------------------------------
  selfieInput.addEventListener("change", async () => {
    const file = selfieInput.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name || "selfie.jpg");
    uploading = true;
    statusLine.textContent = "Sending your selfie…";
    try {
      await api("PUT", `/api/events/${eventId}/selfie`, form);
      uploading = false;
      statusLine.textContent = STATUS_TEXT.processing;
      deleteButton.hidden = false;
    } catch (err) {
      uploading = false;
      statusLine.textContent = "Your selfie was not accepted: " + err.message;
    } finally {
      selfieInput.value = "";
      refresh();
    }
  });

  deleteButton.addEventListener("click", async () => {
    const ok = window.confirm("Delete your selfie and your face data for this event? Your photos disappear from this page until you take a new selfie.");
    if (!ok) return;
    deleteButton.disabled = true;
    try {
      await api("DELETE", `/api/events/${eventId}/selfie`);
      statusLine.textContent = "Your selfie and face data were deleted.";
    } catch (err) {
      statusLine.textContent = err.message;
    } finally {
      deleteButton.disabled = false;
      refresh();
    }
  });

  // ---- search (bib numbers, words) among the photos I may see ---------------------------------
  const searchForm = document.getElementById("search-form");
  if (searchForm) {
    const results = document.getElementById("search-results");
    const searchStatus = document.getElementById("search-status");
    const clear = document.getElementById("search-clear");
    searchForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const q = document.getElementById("search-q").value.trim();
      if (!q) return;
      searchStatus.textContent = "Searching…";
      results.replaceChildren();
      try {
        const data = await api("GET", `/api/events/${eventId}/search?q=${encodeURIComponent(q)}&per_page=100`);
        for (const p of data.photos) {
          // Results are not "my photos": their own hook, so the gallery's [data-photo-id] stays exact.
          const li = el("li", { "data-search-photo-id": p.photo_id, class: "photo" });
          const open = el("a", { href: `/api/photos/${p.photo_id}/original`, class: "open", "aria-label": p.caption || `Photo ${p.photo_id}` });
          open.append(el("img", { src: p.thumbnail_url, loading: "lazy", decoding: "async", alt: p.caption || "", width: 240, height: 240 }));
          open.addEventListener("click", (e) => { e.preventDefault(); view(p.photo_id); });
          li.append(open);
          results.append(li);
        }
        searchStatus.textContent = data.total ? `${fmt(data.total)} photo(s) found for “${q}”.` : `No photo found for “${q}”.`;
        clear.hidden = false;
      } catch (err) {
        searchStatus.textContent = err.message;
      }
    });
    clear.addEventListener("click", () => {
      results.replaceChildren();
      searchStatus.textContent = "";
      document.getElementById("search-q").value = "";
      clear.hidden = true;
    });
  }

  // ---- live: my photos changed, indexing progress ------------------------------------------
  function showIndexing(d) {
    indexingLine.textContent = d.total
      ? `${fmt(d.checked)} of ${fmt(d.total)} photos checked` + (d.checked >= d.total ? "" : "…")
      : "No photos in this event yet.";
    const pct = d.total ? (100 * d.checked) / d.total : 0;
    indexingBar.style.width = pct + "%";
    indexingBar.parentElement.setAttribute("aria-valuenow", String(Math.round(pct)));
  }

  const stream = new EventSource(`/api/events/${eventId}/events`);
  stream.addEventListener("my-photos", () => refresh());
  stream.addEventListener("indexing", (ev) => { try { showIndexing(JSON.parse(ev.data)); } catch (err) { /* ignore */ } });
  stream.addEventListener("error", () => {
    // EventSource reconnects by itself with Last-Event-ID; meanwhile keep the page current.
    if (stream.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 5000);
  });
  refresh();
})();
