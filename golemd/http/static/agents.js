// The agents page: counts by status, one page of agents, both kept live
// from /api/live/agents. The filters and the page live in the query string.
import { agentHref, badge, clearError, el, fmtInt, live, showError, syncRows, when } from "./common.js";

const STATUSES = ["Running", "Idle", "Suspended", "Interrupted", "Retrying", "Failed"];
const PAGE = 50;

const query = new URLSearchParams(location.search);
const filters = {};
for (const name of ["type", "status", "env", "limit"]) if (query.get(name)) filters[name] = query.get(name);
const after = query.get("after");

/** This page's URL with `changes` (a null value drops that parameter). */
function pageUrl(changes) {
  const q = new URLSearchParams({ ...filters, ...changes });
  for (const [k, v] of Object.entries(changes)) if (v === null || v === "") q.delete(k);
  const text = q.toString();
  return text ? "/?" + text : "/";
}

function count(label, n, status) {
  const chosen = (filters.status || "").toLowerCase() === status.toLowerCase();
  return el("a", { href: pageUrl({ status: status || null, after: null }), class: chosen ? "chosen" : null,
    "data-status": label },
  el("span", { class: "n", text: fmtInt(n) }), el("span", { class: "label", text: label }));
}

function renderCounts(status) {
  const by = status.agents_by_status || {};
  document.getElementById("counts").replaceChildren(
    count("All agents", status.agents, ""), ...STATUSES.map((s) => count(s, by[s] || 0, s)));
}

function current(a) {
  const inv = a.current_invocation;
  if (!inv) return el("span", { class: "muted", text: "—" });
  const w = a.waiting_for;
  const waits = !w ? null : w.promise ? "a promise" : w.agent ? "a call" : "a sleep";
  return el("span", {}, inv.method, " ", el("span", { class: "muted mono", text: inv.idempotency_key }),
    waits ? el("span", { class: "muted", text: ` · waits for ${waits}` }) : null);
}

function row(a) {
  return el("tr", {},
    el("td", { class: "id" }, el("a", { href: agentHref(a.agent_id), text: a.agent_id })),
    el("td", { text: a.type }),
    el("td", { text: a.env }),
    el("td", {}, badge(a.status)),
    el("td", { class: "num pending", text: fmtInt(a.pending_invocation_count) }),
    el("td", { class: "current" }, current(a)),
    el("td", { class: "num" }, when(a.last_active_at)));
}

function pager(link, target) {
  if (target === null) {
    link.removeAttribute("href");
    link.className = "disabled";
    link.setAttribute("aria-disabled", "true");
  } else {
    link.href = target;
    link.className = "";
    link.removeAttribute("aria-disabled");
  }
}

function show(view) {
  if (view.error) {
    showError(`${view.error.code}: ${view.error.message}`);
    return;
  }
  clearError();
  renderCounts(view.status);
  const agents = view.list.agents;
  syncRows(document.querySelector("#agents tbody"), agents, (a) => a.agent_id, row);
  document.getElementById("empty").hidden = agents.length > 0;
  pager(document.getElementById("next"), view.list.next ? pageUrl({ after: view.list.next }) : null);
  pager(document.getElementById("prev"), view.prev === null || view.prev === undefined ? null
    : pageUrl({ after: view.prev || null }));
  document.getElementById("range").textContent =
    `${fmtInt(agents.length)} on this page · ${fmtInt(view.status.agents)} agents in all`;
}

const stream = new URLSearchParams({ ...filters, limit: filters.limit || PAGE });
if (after) stream.set("after", after);
live("/api/live/agents?" + stream, { view: show });
