// What the dashboard's pages share: the API, building the DOM, badges, times
// and the live stream. Agent IDs, keys, arguments and output are user data:
// they only ever become text nodes and attribute values, never markup.

let csrf = null;

export class ApiError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

async function csrfToken() {
  if (csrf === null) {
    const r = await fetch("/api/session", { cache: "no-store" });
    if (!r.ok) throw new ApiError("UNAUTHORIZED", "not logged in: run golemctl dashboard for a new link");
    csrf = (await r.json()).csrf;
  }
  return csrf;
}

/** Run the wire op `op` (POST /api/OP); its reply, or an ApiError with the op's code. */
export async function api(op, fields = {}) {
  let r;
  try {
    r = await fetch("/api/" + encodeURIComponent(op), {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": await csrfToken() },
      body: JSON.stringify(fields),
    });
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError("UNREACHABLE", "golemd did not answer (" + e.message + ")");
  }
  let doc = null;
  try {
    doc = await r.json();
  } catch {
    // not JSON: said below with the HTTP status
  }
  if (doc && doc.ok) return doc.reply;
  if (r.status === 403) csrf = null; // a new session's token next time
  if (doc && doc.error) throw new ApiError(doc.error.code, doc.error.message);
  throw new ApiError("HTTP_" + r.status, r.statusText || "unexpected answer");
}

/** An element: props are attributes, but `class`, `text` and `on<event>`; children are nodes or text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

export function badge(text) {
  return el("span", { class: "badge " + String(text).toLowerCase().replace(/[^a-z-]/g, ""), text });
}

export function agentHref(agentId) {
  return "/agent?id=" + encodeURIComponent(agentId);
}

const number = new Intl.NumberFormat("en-US");
export const fmtInt = (n) => number.format(n);

/** A value as golemctl's JSON shows it, cut when long. */
export function literal(value, max = 400) {
  const text = value === undefined ? "" : JSON.stringify(value);
  return text.length > max ? text.slice(0, max) + "…" : text;
}

function relative(ts) {
  const s = Date.now() / 1000 - ts;
  const a = Math.abs(s);
  const span = a < 1 ? null : a < 60 ? `${Math.floor(a)} s` : a < 3600 ? `${Math.floor(a / 60)} min`
    : a < 86400 ? `${Math.floor(a / 3600)} h` : `${Math.floor(a / 86400)} d`;
  if (span === null) return "now";
  return s >= 0 ? `${span} ago` : `in ${span}`;
}

/** A <time> that says how long ago (or how soon), kept current; the full time on hover. */
export function when(ts) {
  if (ts === null || ts === undefined) return el("span", { class: "muted", text: "—" });
  const d = new Date(ts * 1000);
  return el("time", { datetime: d.toISOString(), title: d.toLocaleString(), "data-ts": ts }, relative(ts));
}

export function clock(ts) {
  const d = new Date(ts * 1000);
  return el("time", { datetime: d.toISOString(), title: d.toLocaleString() },
    d.toLocaleTimeString([], { hour12: false }));
}

setInterval(() => {
  for (const t of document.querySelectorAll("time[data-ts]")) t.textContent = relative(Number(t.dataset.ts));
}, 5000);

export function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text;
  box.hidden = false;
}

export function clearError() {
  document.getElementById("error").hidden = true;
}

/**
 * Make tbody's rows those of `items`, in order. A row whose item did not
 * change is kept as it is, so what is typed into it survives the updates.
 */
export function syncRows(tbody, items, keyOf, render) {
  const old = new Map();
  for (const tr of tbody.rows) old.set(tr.dataset.key, tr);
  let prev = null;
  for (const item of items) {
    const key = String(keyOf(item));
    const sig = JSON.stringify(item);
    let tr = old.get(key);
    old.delete(key);
    if (!tr || tr.dataset.sig !== sig) {
      const fresh = render(item);
      fresh.dataset.key = key;
      fresh.dataset.sig = sig;
      if (tr) tr.replaceWith(fresh);
      tr = fresh;
    }
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

/** Follow a live view (golemd.http.live): handlers.view, handlers.output. */
export function live(url, handlers) {
  const conn = document.getElementById("conn");
  const state = (text, cls) => {
    conn.textContent = text;
    conn.className = "conn " + cls;
  };
  state("connecting…", "");
  const source = new EventSource(url);
  source.addEventListener("open", () => state("live", "live"));
  source.addEventListener("view", (e) => handlers.view(JSON.parse(e.data)));
  if (handlers.output) source.addEventListener("output", (e) => handlers.output(JSON.parse(e.data)));
  source.addEventListener("end", () => {
    source.close();
    state("golemd stopped", "down");
    showError("golemd stopped. Once it runs again, log in anew: run golemctl dashboard.");
  });
  const loggedOut = (why) => {
    source.close();
    state("logged out", "down");
    showError(`Logged out: ${why}. Run golemctl dashboard for a new link.`);
  };
  source.addEventListener("logout", () => loggedOut("the session ended or expired"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      loggedOut("the session expired or golemd restarted"); // a refused stream: no session
    } else {
      state("reconnecting…", "down");
    }
  });
  return source;
}

const logout = document.getElementById("logout");
if (logout) {
  logout.addEventListener("click", async () => {
    try {
      await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": await csrfToken() } });
    } finally {
      location.href = "/"; // the login page now: it says how to log in again
    }
  });
}
