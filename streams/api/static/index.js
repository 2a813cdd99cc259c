/* The index: services with active conflicts first, then the others. */
"use strict";

(() => {
  const esc = relsec.escapeHtml;

  function badges(bySeverity) {
    const order = ["critical", "high", "medium", "low", "info"];
    return order.filter((s) => bySeverity[s])
      .map((s) => `<span class="badge sev-${s}">${bySeverity[s]} ${s}</span>`).join(" ");
  }

  function row(s, count) {
    const link = `/ui/service?name=${encodeURIComponent(s.service)}`;
    return `<tr data-service="${esc(s.service)}"><td><a href="${esc(link)}">${esc(s.service)}</a>` +
      `</td><td class="num">${count}</td><td>${badges(s.by_severity)}</td></tr>`;
  }

  async function load() {
    let body;
    try {
      body = await relsec.getJson("/v1/services", load);
    } catch (err) {
      relsec.showError(err);
      return;
    }
    if (!body) return;
    relsec.showFreshness(body.freshness);
    const conflicts = body.services.filter((s) => s.conflicts > 0);
    const quiet = body.services.filter((s) => s.conflicts === 0);
    document.querySelector("#conflicts tbody").innerHTML =
      conflicts.map((s) => row(s, s.conflicts)).join("");
    document.querySelector("#quiet tbody").innerHTML =
      quiet.map((s) => row(s, s.active_alerts)).join("");
    document.getElementById("no-conflicts").hidden = conflicts.length > 0;
    document.body.dataset.rendered = "1";
  }

  load();
})();
