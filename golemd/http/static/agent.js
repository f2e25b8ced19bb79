// One agent's page: its status, queue, promises, output and oplog, kept live
// from /api/live/agent; its buttons run the wire ops through /api/OP.
import { api, badge, clearError, clock, el, fmtInt, literal, live, showError, syncRows, when } from "./common.js";

const agentId = document.getElementById("main").dataset.agent;
const MAX_LINES = 500;
let deletedHere = false;

async function act(op, fields, button) {
  clearError();
  if (button) button.disabled = true;
  try {
    return await api(op, fields);
  } catch (e) {
    showError(e.message);
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

for (const button of document.querySelectorAll("#actions button")) {
  button.addEventListener("click", async () => {
    const op = button.dataset.op;
    if (op === "delete" && !confirm(`Delete ${agentId}?\n\nIts queue, saved state and stored outcomes `
      + "are removed, and a running invocation is stopped. This cannot be undone.")) return;
    const reply = await act(op, { agent: agentId }, button);
    if (reply && op === "delete") {
      deletedHere = true;
      gone(true);
    }
  });
}

function gone(yes) {
  document.getElementById("gone").hidden = !yes;
  document.getElementById("details").hidden = yes;
  document.getElementById("actions").hidden = yes;
  if (yes) {
    document.getElementById("status").replaceChildren();
    document.getElementById("gone-text").textContent = deletedHere ? `Deleted ${agentId}.`
      : "No such agent: it was deleted, or was never invoked.";
  }
}

function waitingFor(w) {
  if (!w) return null;
  if (w.promise) return `promise ${w.promise}`;
  if (w.agent) return `a call to ${w.agent} (${w.idempotency_key})`;
  if (w.until) return `a sleep until ${new Date(w.until * 1000).toLocaleString()}`;
  return literal(w);
}

function renderFacts(a) {
  const inv = a.current_invocation;
  const facts = [
    ["Type", a.type], ["Environment", a.env],
    ["Current invocation", inv ? `${inv.method} (${inv.idempotency_key})` : "—"],
    ["Waiting for", waitingFor(a.waiting_for) || "—"],
    ["Constructor arguments", literal(a.args)], ["Process", a.pid === null ? "—" : `pid ${a.pid}`],
    ["Created", when(a.created_at)], ["Last active", when(a.last_active_at)],
    ["Completed", fmtInt(a.completed_count)], ["Failed", fmtInt(a.failed_count)],
    ["Retries", fmtInt(a.retry_count)],
    ["Memory", a.memory_rss_bytes === null ? "—" : `${(a.memory_rss_bytes / 1048576).toFixed(1)} MiB`],
    ["CPU", a.cpu_seconds === null ? "—" : `${a.cpu_seconds.toFixed(2)} s`],
    ["Last error", a.last_error || "—"],
  ];
  document.getElementById("facts").replaceChildren(...facts.flatMap(([name, value]) =>
    [el("dt", { text: name }), el("dd", { "data-fact": name }, value)]));
  const interrupted = a.status === "Interrupted";
  document.querySelector('[data-op="interrupt"]').hidden = interrupted;
  document.querySelector('[data-op="resume"]').hidden = !interrupted;
}

function queueRow(inv) {
  const cancel = el("button", { type: "button", class: "small", text: "Cancel" });
  cancel.addEventListener("click", () => act("cancel", { agent: agentId, idempotency_key: inv.idempotency_key }, cancel));
  return el("tr", {},
    el("td", { class: "key", text: inv.idempotency_key }),
    el("td", { text: inv.method }),
    el("td", { class: "content", text: literal(inv.args) }),
    el("td", {}, badge(inv.status)),
    el("td", { class: "num" }, when(inv.created_at)),
    el("td", { class: "num" }, when(inv.schedule_at)),
    el("td", { class: "num" }, cancel));
}

function completeForm(p) {
  const input = el("input", { name: "value", placeholder: 'JSON, e.g. "yes"', "aria-label": "value (JSON)",
    spellcheck: "false" });
  const button = el("button", { type: "submit", class: "small", text: "Complete" });
  return el("form", { class: "complete", onsubmit: async (e) => {
    e.preventDefault();
    let value;
    try {
      value = JSON.parse(input.value);
    } catch {
      showError(`Not a JSON value: ${input.value || "(empty)"}. Try null, 42, "text" or {"ok": true}.`);
      return;
    }
    await act("promise_complete", { promise_id: p.promise_id, value }, button);
  } }, input, button);
}

function promiseRow(p) {
  return el("tr", {},
    el("td", { class: "key", text: p.promise_id }),
    el("td", { class: "key", text: p.idempotency_key }),
    el("td", { class: "num" }, when(p.created_at)),
    el("td", {}, p.completed ? badge("completed") : el("span", { class: "badge pending-promise", text: "pending" })),
    el("td", { class: "content" }, p.completed ? literal(p.value) : completeForm(p)));
}

function content(e) {
  const parts = [];
  if (e.detail) parts.push(e.detail);
  if (e.args !== undefined) parts.push(`args ${literal(e.args)}`);
  if ("result" in e) parts.push(`→ ${literal(e.result)}`);
  if (e.error) parts.push(`error ${e.error.code}: ${e.error.message}`);
  if (e.effect && !e.detail) parts.push(`effect ${literal(e.effect)}`);
  if (e.effect && e.effect.error) parts.push(`error ${e.effect.error.code || e.effect.error.type}: ${e.effect.error.message}`);
  if (e.schedule_at) parts.push(`scheduled for ${new Date(e.schedule_at * 1000).toLocaleString()}`);
  if (e.timeout) parts.push(`timeout ${e.timeout} s`);
  if (e.omitted) parts.push(`left out (too large): ${Object.keys(e.omitted).join(", ")}`);
  return parts.join(" · ");
}

function oplogRow(e) {
  return el("tr", {},
    el("td", { class: "num", text: e.index }),
    el("td", { class: "num" }, clock(e.ts)),
    el("td", { class: "mono", text: e.kind }),
    el("td", { class: "key" }, e.idempotency_key || "", e.method ? el("span", { class: "muted", text: ` ${e.method}` }) : null),
    el("td", { class: "content", text: content(e) }));
}

function show(view) {
  if (view.error) {
    showError(`${view.error.code}: ${view.error.message}`);
    return;
  }
  if (view.deleted) {
    gone(true);
    return;
  }
  deletedHere = false;
  gone(false);
  const a = view.agent;
  document.getElementById("status").replaceChildren(badge(a.status));
  renderFacts(a);
  const queue = view.invocations;
  syncRows(document.querySelector("#queue tbody"), queue, (i) => i.idempotency_key, queueRow);
  document.getElementById("queue-empty").hidden = queue.length > 0;
  const pending = queue.filter((i) => i.status !== "running").length;
  document.getElementById("queue-count").textContent = `${fmtInt(pending)} pending`;
  syncRows(document.querySelector("#promises tbody"), view.promises, (p) => p.promise_id, promiseRow);
  document.getElementById("promises-empty").hidden = view.promises.length > 0;
  syncRows(document.querySelector("#oplog tbody"), [...view.oplog].reverse(), (e) => `${e.index} ${e.kind} ${e.ts}`, oplogRow);
}

function output(entry) {
  const box = document.getElementById("output");
  const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.append(el("div", { class: "line " + (entry.stream === "stderr" ? "stderr" : "stdout") },
    el("span", { class: "ts" }, clock(entry.ts)), el("span", { class: "text", text: entry.line })));
  while (box.childElementCount > MAX_LINES) box.firstElementChild.remove();
  document.getElementById("output-empty").hidden = true;
  if (atEnd) box.scrollTop = box.scrollHeight;
}

live("/api/live/agent?agent=" + encodeURIComponent(agentId), { view: show, output });
