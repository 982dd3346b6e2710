// The web UI's entry: loads the caller, then shows the page the address's hash names
// (#/runs, #/runs/ID, #/workspaces/WS, #/workflows, #/workflows/ID, #/agents, #/audit), stopping the previous page's
// timers and streams first.
import { api, el, session } from "./lib.js";
import { agentsPage, auditPage, runsPage, workspacePage } from "./pages.js";
import { runPage } from "./run.js";
import { workflowPage, workflowsPage } from "./workflows.js";

const ROUTES = [
  [/^#\/runs\/([^/]+)$/, runPage],
  [/^#\/workspaces\/(.+)$/, workspacePage],
  [/^#\/workflows\/([^/]+)$/, workflowPage],
  [/^#\/workflows$/, workflowsPage],
  [/^#\/agents$/, agentsPage],
  [/^#\/audit$/, auditPage],
  [/^(?:#\/?(?:runs)?)?$/, runsPage],
];

let stop = null;

async function route() {
  if (stop) stop();
  stop = null;
  const main = document.getElementById("page");
  main.replaceChildren();
  const hash = window.location.hash;
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    const args = m.slice(1);
    try {
      stop = (await page(main, ...args.map(decodeURIComponent))) || null;
    } catch (e) {
      main.append(el("p", { class: "error", role: "alert" }, e.message));
    }
    return;
  }
  main.append(el("p", { class: "error" }, "no such page"));
}

async function start() {
  session.me = await api("/api/v1/me");
  const me = session.me;
  document.getElementById("who").textContent = me.open
    ? "open coordinator"
    : `${me.name} (${me.grants.map((g) => `${g.role} on ${g.workspaces}`).join(", ")})`;
  document.getElementById("nav-audit").hidden = !me.open && !me.grants.some((g) => g.role === "admin");
  window.addEventListener("hashchange", route);
  await route();
}

start();
