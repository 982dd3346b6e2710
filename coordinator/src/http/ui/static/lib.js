// What every page uses: building DOM nodes (text only, never HTML from data), calling the
// JSON API with the session cookie, the caller's roles, and times.

// An element: attributes (on* handlers as functions), then children (strings become text).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// The API's answer to `path` as JSON; a 401 sends the browser to the login page, any other
// error throws with the problem's detail.
export async function api(path, opts = {}) {
  const res = await fetch(path, {
    credentials: "same-origin",
    ...opts,
    headers: { Accept: "application/json", ...(opts.headers || {}) },
  });
  if (res.status === 401) {
    window.location.assign("/ui/login");
    throw new Error("not logged in");
  }
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error((body && body.detail) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// A JSON POST to the API.
export function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
}

// The caller (GET /api/v1/me), loaded once by app.js.
export const session = { me: null };

// Whether a workspace glob (`*` one segment, `**` any number) matches `ws`.
export function globMatches(glob, ws) {
  const re = glob
    .split("**")
    .map((part) =>
      part
        .split("*")
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
        .join("[^/]*"),
    )
    .join(".*");
  return new RegExp(`^${re}$`).test(ws);
}

// Which roles permit what the buttons do; the server decides anyway.
const ROLES = {
  approve: ["approver", "admin"],
  reject: ["approver", "admin"],
  cancel: ["operator", "admin"],
  submit: ["operator", "admin"],
  rollback: ["admin"],
  audit: ["admin"],
};

// Whether the caller's grants allow `action` on `workspace` (any workspace when absent).
export function may(action, workspace) {
  const me = session.me;
  if (!me) return false;
  if (me.open) return true;
  return me.grants.some(
    (g) =>
      ROLES[action].includes(g.role) &&
      (workspace === undefined || globMatches(g.workspaces, workspace)),
  );
}

// "3m ago" for a time in ms since the epoch.
export function age(ms) {
  if (!ms) return "-";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// A time as UTC text.
export function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "-";
}

// A run state as a coloured badge.
export function badge(state) {
  return el("span", { class: `badge state-${state}`, "data-state": state }, state);
}

// Links to a run and to a workspace page.
export function runLink(id) {
  return el("a", { href: `#/runs/${encodeURIComponent(id)}` }, id);
}
export function wsLink(ws) {
  return el("a", { href: `#/workspaces/${encodeURIComponent(ws)}` }, ws);
}

// A table with a header row and one row per item.
export function table(headers, rows, attrs = {}) {
  return el(
    "table",
    attrs,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))),
  );
}

// States after which a run no longer changes.
export const FINAL = new Set([
  "applied",
  "planned_no_changes",
  "failed",
  "cancelled",
  "rejected",
  "interrupted",
  "expired",
]);

// Whether a run has ended (a plan-only run ends planned).
export function ended(run) {
  return FINAL.has(run.state) || (run.state === "planned" && run.kind === "plan_only");
}
