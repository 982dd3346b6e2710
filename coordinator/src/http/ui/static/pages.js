// The list pages: runs (filtered, refreshed without reload), a workspace's state (versions,
// rollback, lock), agents and the audit log. Each page function fills `main` and answers a
// function that stops its timers.
import { age, api, badge, el, may, post, runLink, table, when, wsLink } from "./lib.js";
import { compareForm } from "./statediff.js";

const REFRESH_MS = 3000;
const filters = { workspace: "", state: "", tag: "" };

const STATES = [
  "", "pending", "queued", "planning", "planned", "awaiting_approval", "approved", "applying",
  "applied", "planned_no_changes", "failed", "cancelled", "rejected", "interrupted", "expired",
];

function runsQuery() {
  const q = new URLSearchParams({ limit: "100" });
  for (const k of ["workspace", "state", "tag"]) if (filters[k]) q.set(k, filters[k]);
  return `/api/v1/runs?${q}`;
}

function runRow(r) {
  const tags = Object.entries(r.tags).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`));
  return [runLink(r.id), badge(r.state), wsLink(r.workspace), r.submitted_by, r.commit || "-",
    tags, el("span", { title: when(r.created_unix_ms) }, age(r.created_unix_ms))];
}

function filterForm(reload) {
  const input = (name, label) =>
    el("label", {}, label, el("input", {
      name, value: filters[name], oninput: (e) => { filters[name] = e.target.value.trim(); },
    }));
  const select = el("select", { name: "state", onchange: (e) => { filters.state = e.target.value; reload(); } },
    STATES.map((s) => el("option", { value: s, selected: s === filters.state }, s || "any state")));
  return el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); reload(); } },
    input("workspace", "workspace"), el("label", {}, "state", select), input("tag", "tag k=v"),
    el("button", { type: "submit" }, "Filter"));
}

// Runs, newest first, with filters; refreshed every few seconds.
export async function runsPage(main) {
  const body = el("div", { id: "runs" });
  const status = el("p", { class: "muted" });
  const reload = async () => {
    try {
      const page = await api(runsQuery());
      const rows = page.runs.map(runRow);
      body.replaceChildren(rows.length ? table(
        ["run", "state", "workspace", "who", "commit", "tags", "age"], rows, { class: "runs" },
      ) : el("p", {}, "no runs"));
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      status.textContent = e.message;
    }
  };
  main.append(el("h1", {}, "Runs"), filterForm(reload), status, body);
  await reload();
  const t = setInterval(reload, REFRESH_MS);
  return () => clearInterval(t);
}

function rollbackForm(ws, current, reload, msg) {
  const reason = el("input", { name: "reason", placeholder: "why (recorded)", required: true });
  const version = el("input", { name: "to_version", type: "number", min: 1, required: true });
  const submit = async (e) => {
    e.preventDefault();
    try {
      const v = await post(`/api/v1/workspaces/${encodeURIComponent(ws)}/state/rollback`,
        { to_version: Number(version.value), reason: reason.value });
      await reload();
      msg.textContent = `rolled back: version ${v.version} is current`;
    } catch (err) {
      msg.textContent = err.message;
    }
  };
  version.value = current > 1 ? String(current - 1) : "";
  return el("form", { class: "rollback", onsubmit: submit },
    el("label", {}, "roll back to version", version), el("label", {}, "reason", reason),
    el("button", { type: "submit" }, "Roll back"));
}

function versionRows(versions) {
  return versions.map((v) => [
    String(v.version), String(v.serial), v.run_id ? runLink(v.run_id) : "-", v.actor || "-",
    when(v.created_unix_ms), el("code", { title: v.sha256 }, v.sha256.slice(0, 12)),
  ]);
}

// A workspace's drift status and TTL (refreshed), and a drift check for operators.
function driftSection(ws, msg) {
  const box = el("div", { id: "drift" });
  const reload = async () => {
    const w = (await api("/api/v1/workspaces")).find((x) => x.name === ws);
    if (!w) {
      box.replaceChildren(el("p", {}, "no run yet"));
      return;
    }
    const since = w.drift === "drifted" ? `since ${when(w.drifted_since_unix_ms)}` : w.last_check_error;
    box.replaceChildren(table(
      ["drift", "", "last checked", "check", "remediation", "TTL", "expires"],
      [[badge(w.drift), since || "-", w.last_checked_unix_ms ? when(w.last_checked_unix_ms) : "never",
        w.last_check_run ? runLink(w.last_check_run) : "-",
        w.remediation_run ? runLink(w.remediation_run) : "-",
        w.ttl_ms ? `${Math.round(w.ttl_ms / 1000)} s after each apply` : "-",
        w.expires_unix_ms ? when(w.expires_unix_ms) : "-"]],
      { class: "drift" },
    ));
  };
  const check = async () => {
    try {
      const r = await post(`/api/v1/workspaces/${encodeURIComponent(ws)}/drift-checks`, {});
      msg.textContent = `drift check ${r.id} queued`;
      await reload();
    } catch (err) {
      msg.textContent = err.message;
    }
  };
  const button = may("submit", ws)
    ? el("button", { type: "button", onclick: check }, "Check for drift") : "";
  return { node: el("div", {}, box, button), reload };
}

// A workspace's state: the lock and its holder, versions with who and which run wrote them,
// two versions compared, its audit trail, and rollback for admins; its drift status and TTL.
export async function workspacePage(main, ws) {
  const body = el("div");
  const msg = el("p", { role: "status" });
  const reload = async () => {
    const s = await api(`/api/v1/workspaces/${encodeURIComponent(ws)}/state`);
    const lock = s.lock_owner
      ? el("p", { class: "locked" }, `locked by ${s.lock_owner}`, el("pre", {}, s.lock_info))
      : el("p", { class: "unlocked" }, "not locked");
    const current = s.versions.length ? s.versions[0].version : 0;
    body.replaceChildren(
      el("h2", {}, "Lock"), lock,
      el("h2", {}, "State versions"),
      s.versions.length ? table(["version", "serial", "run", "by", "when", "sha256"],
        versionRows(s.versions), { class: "versions" }) : el("p", {}, "no state yet"),
      may("rollback", ws) && current ? rollbackForm(ws, current, reload, msg) : "",
      s.versions.length > 1 ? el("div", {}, el("h2", {}, "Compare versions"), compareForm(ws, s.versions)) : "",
      el("h2", {}, "History"),
      table(["version", "action", "by", "reason", "when"], s.events.map((e) => [
        String(e.version), e.action, e.actor, e.reason || "-", when(e.unix_ms)])),
    );
  };
  const drift = driftSection(ws, msg);
  main.append(el("h1", {}, "Workspace ", el("code", {}, ws)), msg,
    el("h2", {}, "Drift and TTL"), drift.node, body);
  await Promise.all([reload(), drift.reload()]);
  const t = setInterval(() => drift.reload().catch(() => {}), REFRESH_MS);
  return () => clearInterval(t);
}

// Agents: state, pools, capacity, running tasks, GPUs, last heartbeat.
export async function agentsPage(main) {
  const body = el("div");
  const reload = async () => {
    const agents = await api("/api/v1/agents");
    body.replaceChildren(table(
      ["name", "state", "pools", "running / capacity", "GPUs", "last heartbeat"],
      agents.map((a) => [a.name, badge(a.state), a.pools.join(", "), `${a.running} / ${a.capacity}`,
        a.labels.gpu_count ? `${a.labels.gpu_count} × ${a.labels.gpu_model || "?"}` : "-",
        el("span", { title: when(a.last_seen_unix_ms) }, age(a.last_seen_unix_ms))]),
      { class: "agents" },
    ));
  };
  main.append(el("h1", {}, "Agents"), body);
  await reload();
  const t = setInterval(() => reload().catch(() => {}), REFRESH_MS);
  return () => clearInterval(t);
}

// The chain's verification: entries checked and the head, or the first bad entry and why.
async function verification() {
  try {
    const v = await api("/api/v1/audit/verify");
    return v.ok
      ? el("p", { class: "verified", id: "audit-verify" },
        `chain verified: ${v.checked} entries, head #${v.head_seq} ${v.head_sha256.slice(0, 16)}…`)
      : el("p", { class: "error", id: "audit-verify", role: "alert" },
        `chain broken at entry #${v.bad_seq}: ${v.reason} (${v.checked} entries verified before it)`);
  } catch (e) {
    return el("p", { class: "error", id: "audit-verify", role: "alert" }, e.message);
  }
}

// The audit log (admin), filtered by workspace, run and kind.
export async function auditPage(main) {
  const f = { workspace: "", run_id: "", kind: "" };
  const body = el("div");
  const reload = async () => {
    const q = new URLSearchParams({ limit: "500" });
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    try {
      const entries = await api(`/api/v1/audit?${q}`);
      body.replaceChildren(table(["seq", "when", "kind", "actor", "workspace", "run", "detail"],
        entries.reverse().map((e) => [String(e.seq), when(e.unix_ms), e.kind, e.actor,
          e.workspace ? wsLink(e.workspace) : "-", e.run_id ? runLink(e.run_id) : "-",
          el("code", {}, JSON.stringify(e.detail))]), { class: "audit" }));
    } catch (e) {
      body.replaceChildren(el("p", { class: "error", role: "alert" }, e.message));
    }
  };
  const input = (k) => el("label", {}, k, el("input", { name: k, oninput: (e) => { f[k] = e.target.value.trim(); } }));
  main.append(el("h1", {}, "Audit log"), await verification(),
    el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); reload(); } },
      input("workspace"), input("run_id"), input("kind"), el("button", { type: "submit" }, "Filter")),
    body);
  await reload();
}
