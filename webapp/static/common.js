/* Shared by every page script: API calls that carry the CSRF token, and errors in words. */
"use strict";
window.Snapmatch = (function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrfToken = meta ? meta.content : "";
  const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

  /** fetch() with the session cookie, the CSRF header on unsafe methods, JSON in and out. */
  async function api(method, url, body, options) {
    const init = Object.assign({ method, credentials: "same-origin", headers: { Accept: "application/json" } }, options || {});
    if (UNSAFE.has(method)) init.headers["X-CSRFToken"] = csrfToken;
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new ApiError("network", "The connection failed. Check your network and try again.", 0);
    }
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) {
      const e = (data && data.error) || {};
      const retry = Number(response.headers.get("Retry-After") || 0);
      throw new ApiError(e.code || "http_" + response.status, e.message || describeStatus(response.status), response.status, retry);
    }
    return data;
  }

  class ApiError extends Error {
    constructor(code, message, status, retryAfter) {
      super(message);
      this.code = code; this.status = status; this.retryAfter = retryAfter || 0;
    }
  }

  function describeStatus(status) {
    if (status === 401) return "Your session ended. Sign in again.";
    if (status === 403) return "You are not allowed to do that.";
    if (status === 413) return "That file is too large.";
    if (status === 429) return "Too many requests; wait a moment and try again.";
    if (status >= 500) return "Something went wrong on our side. Try again in a moment.";
    return "The request failed (HTTP " + status + ").";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      node.setAttribute(k, v === true ? "" : String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const number = new Intl.NumberFormat();
  return { api, ApiError, el, csrfToken, fmt: (n) => number.format(n) };
})();
