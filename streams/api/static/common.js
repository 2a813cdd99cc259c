/* relsec pages: fetching the API (with a bearer token when the server asks for one),
   escaping, time formatting. No dependency: the pages are served by `relsec api` only. */
"use strict";

const relsec = (() => {
  const TOKEN_KEY = "relsec.api.token";

  function escapeHtml(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec"];

  /** "2026-03-04 09:20" in UTC. */
  function formatTime(ms) {
    const d = new Date(ms);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  }

  function formatIso(text) {
    return text ? formatTime(Date.parse(text)) : "";
  }

  function formatDuration(ms) {
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} days`;
  }

  function showAuth(retry) {
    const box = document.getElementById("auth");
    box.hidden = false;
    box.innerHTML = '<form id="auth-form"><label>This relsec api needs its bearer token: ' +
      '<input id="auth-token" type="password" autocomplete="off"></label> ' +
      '<button type="submit">Use</button></form>';
    document.getElementById("auth-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("auth-token").value);
      box.hidden = true;
      retry();
    });
  }

  /** GET a JSON answer; resolves to null (and asks for a token) on 401. */
  async function getJson(path, retry) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch(path, { headers, credentials: "same-origin" });
    if (resp.status === 401) {
      showAuth(retry);
      return null;
    }
    const body = await resp.json();
    if (!resp.ok) {
      const err = new Error(body.error || `HTTP ${resp.status}`);
      err.body = body;
      throw err;
    }
    return body;
  }

  /** One line saying how far behind its topics the read model is. */
  function freshnessText(freshness) {
    const parts = [];
    for (const [kind, f] of Object.entries(freshness || {})) {
      if (!f.caught_up) {
        parts.push(`${kind}: ${f.records_behind} records behind` +
          (f.behind_ms ? ` (${formatDuration(f.behind_ms)})` : ""));
      }
    }
    return parts.length ? `Catching up — ${parts.join("; ")}` : "Up to date with the worker's state";
  }

  function showFreshness(freshness) {
    const el = document.getElementById("freshness");
    const behind = Object.values(freshness || {}).some((f) => !f.caught_up);
    el.textContent = freshnessText(freshness);
    el.classList.toggle("stale", behind);
  }

  function showError(err) {
    const el = document.getElementById("error");
    el.hidden = false;
    el.textContent = `relsec api: ${err.message}`;
  }

  return { escapeHtml, formatTime, formatIso, formatDuration, getJson, showFreshness, showError,
           MONTHS, pad };
})();
