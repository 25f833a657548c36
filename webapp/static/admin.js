// Admin page: reads the admin JSON API every few seconds and draws it; buttons call the same API.
// Everything a client could have written (file names, messages) goes in with textContent only.
(function () {
  "use strict";
  const root = document.getElementById("admin");
  if (!root) return;
  const refreshMs = 1000 * Number(root.dataset.refreshSeconds || 5);
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function getJSON(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(url + " answered " + resp.status);
    return resp.json();
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error((data.error && data.error.message) || "The server answered " + resp.status);
    return data;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    return td;
  }

  function button(label, attrs, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    Object.entries(attrs).forEach(([k, v]) => b.setAttribute(k, v));
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await onClick(); await refresh(); } catch (e) { showError(e); } finally { b.disabled = false; }
    });
    return b;
  }

  function fill(tableId, rows) {
    const body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren(...rows);
  }

  function row(values, extra) {
    const tr = document.createElement("tr");
    values.forEach((v) => tr.appendChild(cell(v)));
    if (extra) { const td = document.createElement("td"); td.appendChild(extra); tr.appendChild(td); }
    return tr;
  }

  function showError(e) { document.getElementById("admin-error").textContent = e ? e.message : ""; }

  function drawQueues(stats) {
    fill("queues", Object.values(stats.queues).map((q) => {
      const tr = row([
        q.name, q.paused ? "paused" : "running", q.queued, q.started, q.failed, q.scheduled, q.deferred, q.finished,
        q.workers + " (" + q.busy_workers + ")", q.throughput_per_minute, q.median_duration_seconds,
        q.p95_duration_seconds, q.success_rate === null ? null : Math.round(q.success_rate * 100) + " %",
        q.oldest_waiting_seconds,
      ], q.paused
        ? button("Resume", { "data-action": "resume", "data-queue": q.name }, () => post("/api/admin/queue/" + q.name + "/resume"))
        : button("Pause", { "data-action": "pause", "data-queue": q.name }, () => post("/api/admin/queue/" + q.name + "/pause")));
      tr.dataset.queue = q.name;
      tr.dataset.paused = q.paused ? "true" : "false";
      if (q.paused) tr.children[1].className = "paused";
      return tr;
    }));
    const t = stats.totals;
    document.getElementById("workers-summary").textContent =
      t.workers + " workers, " + t.busy_workers + " busy (utilisation " + Math.round(t.utilisation * 100) + " %)";
  }

  function drawFailures(data) {
    fill("failure-reasons", data.by_reason.map((r) => row([r.status, r.error_code, r.count],
      button("Requeue these", { "data-action": "requeue-reason", "data-reason": r.error_code || "" },
        () => post("/api/admin/queue/failed/requeue", r.error_code ? { error_code: r.error_code, status: r.status } : { status: r.status })))));
    fill("failures", data.photos.map((p) => {
      const tr = row([p.photo_id, p.event_name, p.filename, p.status, (p.error_code || "") + (p.error_message ? ": " + p.error_message : "")],
        button("Requeue", { "data-action": "requeue-photo", "data-photo-id": String(p.photo_id) },
          () => post("/api/admin/queue/failed/requeue", { photo_ids: [p.photo_id] })));
      tr.dataset.failedPhotoId = String(p.photo_id);
      return tr;
    }));
  }

  function drawProviders(data) {
    fill("providers", Object.entries(data.providers).map(([name, p]) => {
      const lim = p.limiter || {};
      const cooldown = lim.cooldown_until ? Math.max(0, lim.cooldown_until - Date.now() / 1000).toFixed(1) : 0;
      const tokens = lim.tokens === undefined ? null : Number(lim.tokens).toFixed(2);
      return row([name, p.calls_total || 0, p.throttles_total || 0, p.estimated_cost_usd || 0,
        tokens, lim.in_flight, cooldown, lim.breaker]);
    }));
  }

  function drawCaches(data) {
    fill("caches", Object.entries(data.caches).map(([name, c]) => {
      const tr = row([name, c.hits, c.misses, Math.round(c.hit_ratio * 100) + " %", c.ttl_seconds]);
      tr.dataset.cache = name;
      return tr;
    }));
  }

  function drawSchedules(data) {
    fill("schedules", Object.entries(data.schedules).map(([name, s]) => {
      const when = s.finished_at ? new Date(s.finished_at * 1000).toLocaleTimeString() : "never";
      const result = s.error || (s.result && typeof s.result === "object" ? JSON.stringify(s.result).slice(0, 120) : s.result);
      const tr = row([name, s.every_seconds, when, s.outcome, s.duration_seconds, result]);
      tr.dataset.schedule = name;
      return tr;
    }));
  }

  function drawChart(samples) {
    const svg = document.getElementById("chart");
    const ns = "http://www.w3.org/2000/svg";
    const W = 600, H = 180, pad = 24;
    svg.replaceChildren();
    const now = Date.now() / 1000, start = now - 3600;
    const thr = samples.map((s) => [s.t, (s.throughput || {}).photos || 0]);
    const dep = samples.map((s) => [s.t, (s.depth || {}).photos || 0]);
    const maxY = Math.max(1, ...thr.map((p) => p[1]), ...dep.map((p) => p[1]));
    const x = (t) => pad + ((t - start) / 3600) * (W - 2 * pad);
    const y = (v) => H - pad - (v / maxY) * (H - 2 * pad);
    const axis = document.createElementNS(ns, "path");
    axis.setAttribute("d", `M${pad},${pad} V${H - pad} H${W - pad}`);
    axis.setAttribute("stroke", "#999"); axis.setAttribute("fill", "none");
    svg.appendChild(axis);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", pad - 6); label.setAttribute("font-size", "11");
    label.textContent = "max " + maxY;
    svg.appendChild(label);
    [[thr, "#2457d6"], [dep, "#d98b00"]].forEach(([points, color]) => {
      if (!points.length) return;
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", color); line.setAttribute("stroke-width", "2");
      svg.appendChild(line);
    });
    if (!samples.length) {
      const none = document.createElementNS(ns, "text");
      none.setAttribute("x", W / 2 - 90); none.setAttribute("y", H / 2); none.setAttribute("font-size", "12");
      none.textContent = "no samples yet (one a minute)";
      svg.appendChild(none);
    }
  }

  async function refresh() {
    try {
      const [stats, failures, providers, caches, schedules, history] = await Promise.all([
        getJSON("/api/admin/queue/stats"), getJSON("/api/admin/failures"), getJSON("/api/admin/providers"),
        getJSON("/api/admin/caches"), getJSON("/api/admin/schedules"), getJSON("/api/admin/queue/history"),
      ]);
      drawQueues(stats); drawFailures(failures); drawProviders(providers); drawCaches(caches);
      drawSchedules(schedules); drawChart(history.samples);
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      showError(null);
    } catch (e) { showError(e); }
  }

  document.querySelector('[data-action="requeue-all"]').addEventListener("click", async () => {
    try { await post("/api/admin/queue/failed/requeue", { all: true }); await refresh(); } catch (e) { showError(e); }
  });
  document.querySelector('[data-action="flush-cache"]').addEventListener("click", async () => {
    try {
      const out = await post("/api/admin/cache/clear");
      document.getElementById("flush-result").textContent = out.cleared + " entries flushed";
      await refresh();
    } catch (e) { showError(e); }
  });
  refresh();
  setInterval(refresh, refreshMs);
})();
