/* The timeline of one service: per environment the running release over time, its deploys
   and rollbacks, incidents as spans and conflict alerts; per release its security flags as
   spans. Drawn as one SVG string (fast for a year of events: dense marks are binned per
   few pixels, each bin keeping its count and the worst of what it holds). */
"use strict";

(() => {
  const esc = relsec.escapeHtml;
  const DAY = 86400000;
  const HOUR = 3600000;
  const LEFT = 170;
  const RIGHT = 24;
  const AXIS_H = 34;
  const MAX_RELEASE_ROWS = 40;
  const SEVERITY_RANK = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
  const PALETTE = ["#4e79a7", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1",
                   "#ff9da7", "#86bcb6", "#8cd17d", "#a0cbe8", "#f1ce63", "#d4a6c8"];
  const started = performance.now();
  let data = null;
  let range = "all";
  let tips = [];

  /** Remember what a mark stands for; its tooltip text is made on hover only. */
  function tip(kind, value) {
    tips.push([kind, value]);
    return tips.length - 1;
  }

  const fmt = relsec.formatTime;

  function tipText([kind, v]) {
    switch (kind) {
      case "deploys":
        return v.slice(0, 8).map((d) =>
          `${fmt(d.at)} ${d.status === "succeeded" ? d.action : "failed " + d.action} to ` +
          `${d.release}${d.team ? " by " + d.team : ""}${d.reason ? " (" + d.reason + ")" : ""}` +
          `${d.incident_id ? " for " + d.incident_id : ""}`).join("\n") +
          (v.length > 8 ? `\n… ${v.length - 8} more` : "");
      case "busy":
        return `${v.n} releases ran here: ${v.names.slice(0, 6).join(", ")}${v.n > 6 ? "…" : ""}` +
          " (zoom in to see them)";
      case "segment":
        return `${v.release} from ${fmt(v.from)}${v.to ? " to " + fmt(v.to) : " (running now)"}` +
          ` (${v.action})`;
      case "incident":
        return `${v.incident_id} (${v.severity}): ${v.title}\n` +
          `${fmt(v.from)} – ${v.to ? fmt(v.to) : "still open"}`;
      case "alerts":
        return v.slice(0, 10).map((a) =>
          `${a.severity} ${a.rule}${a.count > 1 ? " ×" + a.count : ""}: ${a.summary}`).join("\n") +
          (v.length > 10 ? `\n… ${v.length - 10} more groups` : "");
      case "flags": {
        const names = v.ids.join(", ") + (v.count > v.ids.length ?
          ` and ${v.count - v.ids.length} more` : "");
        const ended = v.to === null ? "still active" :
          `${v.ended_by === "risk_accepted" ? "risk accepted" : "cleared"} ${fmt(v.to)}`;
        return `${v.release}: ${v.count} ${v.severity} flag${v.count > 1 ? "s" : ""} — ${names}` +
          `\nraised ${fmt(v.from)}, ${ended}` +
          `${v.fixed_in.length ? "\nfixed in " + v.fixed_in.join(", ") : ""}`;
      }
      default:
        return "";
    }
  }

  function showTip(event) {
    const box = document.getElementById("tooltip");
    const target = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!target) {
      box.hidden = true;
      return;
    }
    box.textContent = tipText(tips[Number(target.dataset.tip)]);
    box.hidden = false;
    box.style.left = `${Math.min(event.pageX + 14, window.innerWidth - 380)}px`;
    box.style.top = `${event.pageY + 14}px`;
  }

  function colorOf(release) {
    let h = 0;
    for (let i = 0; i < release.length; i++) h = (h * 31 + release.charCodeAt(i)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function worstSeverity(list) {
    return list.reduce((w, s) => (SEVERITY_RANK[s] > SEVERITY_RANK[w] ? s : w), "info");
  }

  // -- time axis -------------------------------------------------------------------

  const STEPS = [HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY,
                 30 * DAY, 91 * DAY];

  function ticks(from, to, width) {
    const wanted = Math.max(2, Math.floor(width / 110));
    const step = STEPS.find((s) => (to - from) / s <= wanted) || STEPS[STEPS.length - 1];
    const out = [];
    if (step >= 30 * DAY) {
      const months = Math.round(step / (30 * DAY));
      const d = new Date(from);
      let y = d.getUTCFullYear();
      let m = d.getUTCMonth() + 1;
      for (;;) {
        if (m > 11) { y += Math.floor(m / 12); m %= 12; }
        const t = Date.UTC(y, m, 1);
        if (t > to) break;
        if (m % months === 0) out.push([t, `${relsec.MONTHS[m]} ${y}`]);
        m += 1;
      }
      return out;
    }
    let t = Math.ceil(from / step) * step;
    for (; t <= to; t += step) {
      const d = new Date(t);
      const day = `${relsec.MONTHS[d.getUTCMonth()]} ${relsec.pad(d.getUTCDate())}`;
      out.push([t, step < DAY ? `${day} ${relsec.pad(d.getUTCHours())}:00` : day]);
    }
    return out;
  }

  // -- drawing --------------------------------------------------------------------------

  function viewRange(t) {
    const last = data.alerts.reduce(
      (m, a) => Math.max(m, Date.parse(a.occurred_at)), t.to ?? Date.now());
    const first = t.from ?? last;
    if (range === "all") {
      const span = Math.max(last - first, HOUR);
      return [first - span * 0.02, last + span * 0.06];
    }
    const days = Number(range);
    return [last - days * DAY, last + days * DAY * 0.04];
  }

  /** Consecutive items closer than `px` pixels share one mark. */
  function binned(items, x, px) {
    const bins = [];
    for (const item of items) {
      const pos = x(item.at);
      const last = bins[bins.length - 1];
      if (last && pos - last.x < px) last.items.push(item);
      else bins.push({ x: pos, items: [item] });
    }
    return bins;
  }

  function drawEnvironment(out, name, env, x, y, width, from, to) {
    const now = data.environments[name] || {};
    const rec = now.recommendation;
    const recText = rec ? (rec.release ? `recommended: ${rec.release}` :
      "no safe release: coordinate a roll-forward") : "";
    out.push(`<g class="environment" data-environment="${esc(name)}">`);
    out.push(`<text class="env-title" x="8" y="${y + 14}">${esc(name)}</text>`);
    const recClass = rec && !rec.release ? "env-rec none" : "env-rec";
    out.push(`<text class="${recClass}" id="rec-${esc(name)}" x="${LEFT}" y="${y + 14}">` +
      `${esc(recText)}</text>`);
    y += 22;
    // Deploy and rollback markers, binned per 6 px (a rollback in a bin shows as one).
    const deploys = env.deploys.filter((d) => d.at >= from && d.at <= to);
    out.push(`<text class="row-label" x="8" y="${y + 12}">deploys</text>`);
    for (const bin of binned(deploys, x, 6)) {
      const rollback = bin.items.some((d) => d.action === "rollback" && d.status === "succeeded");
      const failed = bin.items.every((d) => d.status !== "succeeded");
      const kind = rollback ? "rollback" : failed ? "failed" : "deploy";
      const cx = bin.x;
      const path = kind === "rollback"
        ? `M${cx - 5},${y + 3} L${cx + 5},${y + 3} L${cx},${y + 13} Z`
        : `M${cx - 5},${y + 13} L${cx + 5},${y + 13} L${cx},${y + 3} Z`;
      const ids = bin.items.length === 1 ? ` data-event="${esc(bin.items[0].event_id)}"` : "";
      out.push(`<path class="deploy-marker ${kind}" data-action="${kind}"` +
        ` data-release="${esc(bin.items[bin.items.length - 1].release)}"` +
        ` data-count="${bin.items.length}"${ids} data-tip="${tip("deploys", bin.items)}"` +
        ` d="${path}"/>`);
    }
    y += 16;
    // The running release over time (segments narrower than 2 px merge into a busy block).
    out.push(`<text class="row-label" x="8" y="${y + 15}">running release</text>`);
    let busy = null;
    const flush = () => {
      if (!busy) return;
      out.push(`<rect class="segment busy" x="${busy.x0}" y="${y}"` +
        ` width="${Math.max(busy.x1 - busy.x0, 1)}" height="20"` +
        ` data-tip="${tip("busy", busy)}"/>`);
      busy = null;
    };
    for (const s of env.segments) {
      const end = s.to ?? to;
      if (end < from || s.from > to) continue;
      const x0 = Math.max(x(s.from), LEFT);
      const x1 = Math.min(x(end), LEFT + width);
      if (x1 - x0 < 2) {
        if (!busy) busy = { x0, x1, n: 0, names: [] };
        busy.x1 = x1; busy.n += 1; busy.names.push(s.release);
        continue;
      }
      flush();
      const label = (x1 - x0) > s.release.length * 7 + 8 ?
        `<text class="segment-label" x="${x0 + 4}" y="${y + 14}">${esc(s.release)}</text>` : "";
      const open = s.to === null ? " open" : "";
      out.push(`<rect class="segment${open}" data-release="${esc(s.release)}"` +
        ` data-action="${esc(s.action)}" x="${x0}" y="${y}" width="${x1 - x0}" height="20"` +
        ` fill="${colorOf(s.release)}" data-tip="${tip("segment", s)}"/>${label}`);
    }
    flush();
    y += 26;
    // Incidents as spans.
    out.push(`<text class="row-label" x="8" y="${y + 12}">incidents</text>`);
    for (const i of env.incidents) {
      const end = i.to ?? to;
      if (end < from || i.from > to) continue;
      const x0 = Math.max(x(i.from), LEFT);
      const x1 = Math.max(Math.min(x(end), LEFT + width), x0 + 3);
      const open = i.to === null ? " open" : "";
      const inside = (x1 - x0) > i.incident_id.length * 6.5 + 6;
      const label = inside
        ? `<text class="incident-label" x="${x0 + 3}" y="${y + 11}">${esc(i.incident_id)}</text>`
        : `<text class="incident-label outside" x="${x1 + 3}" y="${y + 11}">${esc(i.incident_id)}</text>`;
      out.push(`<rect class="incident-span${open}" data-incident="${esc(i.incident_id)}"` +
        ` data-severity="${esc(i.severity)}" x="${x0}" y="${y}" width="${x1 - x0}" height="15"` +
        ` data-tip="${tip("incident", i)}"/>${label}`);
    }
    y += 20;
    // Conflict alerts, marked where they fired.
    out.push(`<text class="row-label" x="8" y="${y + 12}">conflict alerts</text>`);
    const alerts = data.alerts.filter((a) => a.environment === name)
      .map((a) => ({ ...a, at: Date.parse(a.occurred_at) }))
      .filter((a) => a.at >= from && a.at <= to)
      .sort((a, b) => a.at - b.at);
    for (const bin of binned(alerts, x, 12)) {
      const sev = worstSeverity(bin.items.map((a) => a.severity));
      const cx = bin.x;
      const count = bin.items.reduce((n, a) => n + (a.count || 1), 0);
      const rules = [...new Set(bin.items.map((a) => a.rule))].join(" ");
      out.push(`<path class="alert-marker sev-${sev}" data-rule="${esc(rules)}"` +
        ` data-severity="${sev}" data-count="${count}"` +
        ` data-tip="${tip("alerts", bin.items)}"` +
        ` d="M${cx},${y + 1} L${cx + 7},${y + 8} L${cx},${y + 15} L${cx - 7},${y + 8} Z"/>`);
      if (count > 1) {
        out.push(`<text class="alert-count" x="${cx + 9}" y="${y + 12}">${count}</text>`);
      }
    }
    y += 22;
    out.push("</g>");
    return y + 10;
  }

  function drawReleases(out, t, x, y, width, from, to) {
    const byRelease = new Map();
    for (const f of t.flags) {
      if ((f.to ?? to) < from || f.from > to) continue;
      if (!byRelease.has(f.release)) byRelease.set(f.release, []);
      byRelease.get(f.release).push(f);
    }
    const running = new Map();
    for (const env of Object.values(t.environments)) {
      for (const s of env.segments) {
        if ((s.to ?? to) < from || s.from > to) continue;
        if (!running.has(s.release)) running.set(s.release, []);
        running.get(s.release).push(s);
      }
    }
    const lastActivity = (r) => Math.max(
      ...(byRelease.get(r) || []).map((f) => f.to ?? to), ...(running.get(r) || []).map((s) => s.to ?? to));
    const names = [...new Set([...byRelease.keys(), ...running.keys()])]
      .sort((a, b) => (byRelease.has(b) - byRelease.has(a)) || lastActivity(b) - lastActivity(a));
    const shown = names.slice(0, MAX_RELEASE_ROWS);
    out.push(`<text class="section-title" x="8" y="${y + 14}">releases and their security flags</text>`);
    y += 24;
    for (const release of shown) {
      out.push(`<g class="release-row" data-release="${esc(release)}">`);
      out.push(`<text class="row-label release-name" x="8" y="${y + 12}">${esc(release)}</text>`);
      for (const s of running.get(release) || []) {
        const x0 = Math.max(x(s.from), LEFT);
        const x1 = Math.max(Math.min(x(s.to ?? to), LEFT + width), x0 + 1);
        out.push(`<rect class="ran" x="${x0}" y="${y + 6}" width="${x1 - x0}" height="4"` +
          ` fill="${colorOf(release)}" data-tip="${tip("segment", s)}"/>`);
      }
      const flags = (byRelease.get(release) || []).sort(
        (a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]);
      flags.forEach((f, lane) => {
        const x0 = Math.max(x(f.from), LEFT);
        const x1 = Math.max(Math.min(x(f.to ?? to), LEFT + width), x0 + 3);
        const yy = y + 1 + Math.min(lane, 2) * 2;
        const label = `${f.count} ${f.severity}: ${f.ids.slice(0, 3).join(", ")}${f.count > 3 ? " …" : ""}`;
        const text = (x1 - x0) > label.length * 6 + 6 ?
          `<text class="flag-label" x="${x0 + 3}" y="${yy + 11}">${esc(label)}</text>` : "";
        out.push(`<rect class="flag-span sev-${f.severity}${f.to === null ? " open" : ""}"` +
          ` data-release="${esc(release)}" data-severity="${f.severity}" data-count="${f.count}"` +
          ` data-flags="${esc(f.ids.join(" "))}" x="${x0}" y="${yy}" width="${x1 - x0}" height="14"` +
          ` data-tip="${tip("flags", f)}"/>${text}`);
      });
      out.push("</g>");
      y += 20;
    }
    if (names.length > shown.length) {
      out.push(`<text class="muted-text" x="8" y="${y + 12}">${names.length - shown.length}` +
        " more releases not shown</text>");
      y += 18;
    }
    return y;
  }

  function render() {
    const t0 = performance.now();
    tips = [];
    const t = data.timeline;
    const container = document.getElementById("chart");
    const total = Math.max(container.clientWidth || 1100, 900);
    const width = total - LEFT - RIGHT;
    const [from, to] = viewRange(t);
    const x = (ms) => LEFT + ((ms - from) / (to - from)) * width;
    const out = [];
    let y = AXIS_H;
    const envs = Object.entries(t.environments);
    for (const [name, env] of envs) y = drawEnvironment(out, name, env, x, y, width, from, to);
    y = drawReleases(out, t, x, y + 6, width, from, to);
    const height = y + 10;
    const t1 = performance.now();
    const axis = [`<g class="axis">`];
    for (const [tick, label] of ticks(from, to, width)) {
      const tx = x(tick);
      axis.push(`<line class="grid" x1="${tx}" x2="${tx}" y1="${AXIS_H - 6}" y2="${height}"/>` +
        `<text class="tick" x="${tx}" y="${AXIS_H - 12}">${esc(label)}</text>`);
    }
    axis.push(`<text class="tick utc" x="8" y="${AXIS_H - 12}">UTC</text></g>`);
    container.innerHTML = `<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="${total}"` +
      ` height="${height}" viewBox="0 0 ${total} ${height}">${axis.join("")}${out.join("")}</svg>`;
    const t2 = performance.now();
    document.body.dataset.drawMs = (t1 - t0).toFixed(1);
    document.body.dataset.insertMs = (t2 - t1).toFixed(1);
    document.getElementById("range-label").textContent =
      `${relsec.formatTime(from)} – ${relsec.formatTime(to)} UTC, ${t.events} events`;
    for (const b of document.querySelectorAll("[data-range]")) {
      b.classList.toggle("active", b.dataset.range === range);
    }
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    document.body.dataset.range = range;
  }

  function renderNow() {
    const cards = [];
    for (const [name, env] of Object.entries(data.environments)) {
      const run = env.running;
      const state = !run ? "unknown" : run.clear ? "clear" : "conflict";
      const notes = [];
      if (run && run.flagged) notes.push("has active security flags");
      if (run && run.rolled_back_from_recently) notes.push("was rolled back from during an incident in the last 7 days");
      const incidents = env.open_incidents.map((i) =>
        `<li class="incident">${esc(i.incident_id)} (${esc(i.severity)}, ${esc(i.status)})` +
        `${i.title ? ": " + esc(i.title) : ""} since ${relsec.formatIso(i.since)}</li>`).join("");
      const rec = env.recommendation;
      const recommended = rec && rec.release ? `<strong class="rec-release">${esc(rec.release)}</strong>` :
        '<strong class="rec-none">none qualifies — coordinate a roll-forward fix</strong>';
      cards.push(`<div class="card ${state}" id="now-${esc(name)}" data-environment="${esc(name)}">` +
        `<h3>${esc(name)}</h3>` +
        `<p>running <strong class="running-release">${esc(run ? run.release : "—")}</strong>` +
        `${run && run.since ? " since " + relsec.formatIso(run.since) : ""}` +
        `${notes.length ? ` <span class="warn-note">(${esc(notes.join("; "))})</span>` : ""}</p>` +
        `<p>safe release to move to: ${recommended}</p>` +
        `${rec ? `<p class="muted">${esc(rec.text)}</p>` : ""}` +
        `${incidents ? `<ul class="open-incidents">${incidents}</ul>` : '<p class="muted">no open incident</p>'}` +
        "</div>");
    }
    document.getElementById("now").innerHTML = cards.join("");
  }

  const ALERT_ROWS = 100;
  let allAlertRows = false;

  function renderAlerts() {
    const shown = allAlertRows ? data.alerts : data.alerts.slice(0, ALERT_ROWS);
    const rows = shown.map((a) => {
      const rec = a.recommendation;
      const advice = rec ? (rec.release ? esc(rec.release) : "coordinate a roll-forward") : "—";
      return `<tr class="alert-row sev-${esc(a.severity)}" data-rule="${esc(a.rule)}">` +
        `<td><span class="badge sev-${esc(a.severity)}">${esc(a.severity)}</span></td>` +
        `<td>${esc(a.rule)}${a.count > 1 ? ` <span class="count">×${a.count}</span>` : ""}</td>` +
        `<td>${esc(a.environment)}</td><td>${esc(a.release)}</td>` +
        `<td>${relsec.formatIso(a.occurred_at)}</td><td>${esc(a.summary)}</td><td>${advice}</td></tr>`;
    });
    const hidden = data.alerts.length - shown.length;
    if (hidden > 0) {
      rows.push(`<tr><td colspan="7"><button type="button" id="more-alerts">show ${hidden} more` +
        " alert groups</button></td></tr>");
    }
    document.querySelector("#alerts tbody").innerHTML = rows.join("");
    document.getElementById("no-alerts").hidden = rows.length > 0;
    const more = document.getElementById("more-alerts");
    if (more) more.addEventListener("click", () => { allAlertRows = true; renderAlerts(); });
  }

  function renderLegend() {
    document.getElementById("legend").innerHTML =
      '<span><svg width="12" height="12"><path class="deploy-marker deploy" d="M1,11 L11,11 L6,1 Z"/></svg> deploy</span>' +
      '<span><svg width="12" height="12"><path class="deploy-marker rollback" d="M1,1 L11,1 L6,11 Z"/></svg> rollback</span>' +
      '<span><svg width="12" height="12"><rect class="incident-span" width="12" height="10" y="1"/></svg> incident</span>' +
      '<span><svg width="14" height="14"><path class="alert-marker sev-critical" d="M7,0 L14,7 L7,14 L0,7 Z"/></svg> conflict alert</span>' +
      ["critical", "high", "medium", "low"].map((s) =>
        `<span><svg width="12" height="12"><rect class="flag-span sev-${s}" width="12" height="10" y="1"/></svg> ${s} flag</span>`).join("");
  }

  async function load() {
    const name = new URLSearchParams(location.search).get("name");
    if (!name) {
      relsec.showError(new Error("no service named (?name=SERVICE)"));
      return;
    }
    document.getElementById("service-name").textContent = name;
    document.title = `relsec — ${name}`;
    try {
      data = await relsec.getJson(`/v1/services/${encodeURIComponent(name)}/timeline`, load);
    } catch (err) {
      relsec.showError(err);
      return;
    }
    if (!data) return;
    relsec.showFreshness(data.freshness);
    render();  // first, while the page is small: it reads the chart's width
    renderNow();
    renderAlerts();
    renderLegend();
    document.body.dataset.totalMs = (performance.now() - started).toFixed(1);
    // Two frames later the browser has laid out and painted what was drawn.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      document.body.dataset.paintedMs = (performance.now() - started).toFixed(1);
      document.body.dataset.rendered = "1";
    }));
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => { range = button.dataset.range; render(); });
  }
  window.addEventListener("resize", () => { if (data) render(); });
  document.getElementById("chart").addEventListener("mousemove", showTip);
  document.getElementById("chart").addEventListener("mouseleave", () => {
    document.getElementById("tooltip").hidden = true;
  });
  load();
})();
