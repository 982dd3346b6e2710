// Workflow runs: the list, and one workflow run with its DAG drawn (a column per depth, an
// arrow from each target to what reads from it), each target's state and run, its rollouts'
// waves, and the buttons the caller's role allows (the server refuses the rest anyway).
import { age, api, badge, el, may, post, runLink, table, when, wsLink } from "./lib.js";

const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";

export function workflowLink(id) {
  return el("a", { href: `#/workflows/${encodeURIComponent(id)}` }, id);
}

// Workflow runs, newest first; refreshed every few seconds.
export async function workflowsPage(main) {
  const body = el("div", { id: "workflows" });
  const reload = async () => {
    const runs = await api("/api/v1/workflow-runs?limit=100");
    body.replaceChildren(runs.length ? table(
      ["workflow run", "file", "state", "done", "by", "age"],
      runs.map((w) => [workflowLink(w.id), w.file_name, badge(w.state),
        `${w.targets.filter((t) => t.state === "succeeded").length}/${w.targets.length}`,
        w.actor, el("span", { title: when(w.created_unix_ms) }, age(w.created_unix_ms))]),
      { class: "workflows" },
    ) : el("p", {}, "no workflow runs"));
  };
  main.append(el("h1", {}, "Workflow runs"), body);
  await reload();
  const t = setInterval(() => reload().catch(() => {}), REFRESH_MS);
  return () => clearInterval(t);
}

// Each target's depth: 0 for those that read from nothing, else one more than its deepest upstream.
function depths(targets) {
  const byKey = new Map(targets.map((t) => [t.key, t]));
  const memo = new Map();
  const depth = (k, seen = new Set()) => {
    if (memo.has(k)) return memo.get(k);
    if (seen.has(k)) return 0;
    seen.add(k);
    const t = byKey.get(k);
    const d = t && t.depends_on.length ? 1 + Math.max(...t.depends_on.map((u) => depth(u, seen))) : 0;
    memo.set(k, d);
    return d;
  };
  targets.forEach((t) => depth(t.key));
  return memo;
}

function targetBox(t) {
  return el("div", { class: "node", "data-key": t.key, "data-state": t.state },
    el("strong", {}, t.key), " ", badge(t.state),
    el("div", {}, wsLink(t.workspace)),
    el("div", { class: "muted" }, t.run_id ? runLink(t.run_id) : "not started",
      t.run_state ? ` (${t.run_state})` : "", t.wave ? ` · wave ${t.wave}` : ""),
    t.reason ? el("div", { class: "muted" }, t.reason) : "");
}

// The DAG: columns by depth, then arrows drawn once the boxes are laid out.
function dag(w) {
  const d = depths(w.targets);
  const columns = [];
  for (const t of w.targets) (columns[d.get(t.key)] ||= []).push(t);
  const grid = el("div", { class: "dag", id: "dag" }, columns.map((c) => el("div", { class: "dag-col" }, c.map(targetBox))));
  requestAnimationFrame(() => arrows(grid, w.targets));
  return grid;
}

function arrows(grid, targets) {
  const box = grid.getBoundingClientRect();
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "dag-edges");
  svg.setAttribute("width", box.width);
  svg.setAttribute("height", box.height);
  const at = (k) => grid.querySelector(`.node[data-key="${CSS.escape(k)}"]`)?.getBoundingClientRect();
  for (const t of targets) {
    for (const u of t.depends_on) {
      const a = at(u), b = at(t.key);
      if (!a || !b) continue;
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("x1", a.right - box.left);
      line.setAttribute("y1", a.top + a.height / 2 - box.top);
      line.setAttribute("x2", b.left - box.left);
      line.setAttribute("y2", b.top + b.height / 2 - box.top);
      svg.append(line);
    }
  }
  grid.prepend(svg);
}

function rollouts(w, act) {
  if (!w.rollouts.length) return "";
  const canAct = w.targets.every((t) => may("submit", t.workspace));
  return el("section", {}, el("h2", {}, "Rollouts"), table(
    ["stack", "state", "wave", "failures / budget", "why", ""],
    w.rollouts.map((r) => [r.stack, badge(r.state), `${r.wave} of ${r.waves}`,
      `${r.failures} / ${r.max_failures}`, r.reason || "-",
      canAct ? ["pause", "resume", "abort", "retry-failed"].map((a) =>
        el("button", { type: "button", onclick: () => act(`rollouts/${encodeURIComponent(r.stack)}/${a}`) }, a)) : ""]),
    { class: "rollouts" },
  ));
}

function actions(w, act) {
  const all = (action) => w.targets.every((t) => may(action, t.workspace));
  const out = [];
  if (w.state === "awaiting_approval" && all("approve")) out.push(el("button", { type: "button", onclick: () => act("approve") }, "Approve workflow"));
  if (!["succeeded", "failed", "cancelled"].includes(w.state) && all("cancel")) out.push(el("button", { type: "button", onclick: () => act("cancel") }, "Cancel workflow"));
  if (["failed", "cancelled"].includes(w.state) && all("submit")) out.push(el("button", { type: "button", onclick: () => act("retry") }, "Retry"));
  return el("p", { class: "actions" }, out);
}

// One workflow run: header, buttons, the DAG, rollouts; refreshed every few seconds.
export async function workflowPage(main, id) {
  const body = el("div");
  const msg = el("p", { class: "error", role: "alert" });
  const path = `/api/v1/workflow-runs/${encodeURIComponent(id)}`;
  let reload;
  const act = async (what) => {
    msg.textContent = "";
    try { await post(`${path}/${what}`); } catch (e) { msg.textContent = e.message; }
    await reload();
  };
  reload = async () => {
    const w = await api(path);
    body.replaceChildren(
      el("p", {}, badge(w.state), ` ${w.file_name} · approval ${w.approval} · by ${w.actor}`,
        w.destroy ? " · destroy" : "", el("span", { title: when(w.created_unix_ms) }, ` · ${age(w.created_unix_ms)}`)),
      w.reason ? el("p", { class: "muted", id: "workflow-reason" }, w.reason) : "",
      actions(w, act), dag(w), rollouts(w, act));
  };
  main.append(el("h1", {}, "Workflow run ", el("code", {}, id)), msg, body);
  await reload();
  const t = setInterval(() => reload().catch(() => {}), REFRESH_MS);
  return () => clearInterval(t);
}
