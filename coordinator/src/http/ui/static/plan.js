// A saved plan as `tofu show` words it, as DOM: changes made outside of OpenTofu (drift), one
// block per resource change (symbol, address, what happens, attribute by attribute, nested
// maps and blocks within, what forces a replacement), output changes and the summary. Sensitive
// values arrive masked from the server ("(sensitive)") and are shown as "(sensitive value)";
// values unknown until apply as "(known after apply)".
import { el } from "./lib.js";

const ACTIONS = {
  create: ["+", "will be created", "create"],
  delete: ["-", "will be destroyed", "delete"],
  update: ["~", "will be updated in-place", "update"],
  "delete,create": ["-/+", "must be replaced", "replace"],
  "create,delete": ["+/-", "must be replaced", "replace"],
  read: ["<=", "will be read during apply", "read"],
  forget: [".", "will be removed from the state but will not be destroyed", "delete"],
};

// The symbol, words and class of a change's actions (no-op: null).
export function actionOf(change) {
  return ACTIONS[(change.actions || []).join(",")] || null;
}

// A value as the CLI prints it.
export function valueText(v, unknown) {
  if (unknown === true) return "(known after apply)";
  if (v === "(sensitive)") return "(sensitive value)";
  if (v === undefined || v === null) return "null";
  return JSON.stringify(v);
}

function keysOf(...sides) {
  const keys = new Set();
  for (const s of sides) if (s && typeof s === "object") Object.keys(s).forEach((k) => keys.add(k));
  return [...keys].sort();
}

const none = (v) => v === undefined || v === null;
// A map, an object or a list of such: rendered attribute by attribute, not as one value.
const nested = (v) =>
  v !== null && typeof v === "object" && (!Array.isArray(v) || v.some((x) => x && typeof x === "object"));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Walks one level of a change: [symbol, text, class, depth] lines; `replace` holds the
// JSON of every attribute path that forces replacement.
function walk(sym, before, after, unknown, path, replace, depth, lines) {
  const [b0, a0, u0] = [before || {}, after || {}, unknown || {}];
  let hidden = 0;
  for (const k of keysOf(before, after, unknown)) {
    const [b, a, u] = [b0[k], a0[k], u0[k]];
    const here = [...path, Array.isArray(after || before) ? Number(k) : k];
    const forces = replace.has(JSON.stringify(here)) ? " # forces replacement" : "";
    const label = Array.isArray(after || before) ? "" : `${k} = `;
    const open = (s, c, v) => {
      lines.push([s, `${label}${Array.isArray(v) ? "[" : "{"}${forces}`, c, depth]);
      return Array.isArray(v) ? "]" : "}";
    };
    const close = (end) => lines.push([" ", end, "", depth]);
    if (sym === "-" || (none(a) && u !== true && sym !== "+")) {
      if (none(b)) continue;
      if (nested(b)) {
        const end = open("-", "delete", b);
        walk("-", b, null, null, here, replace, depth + 1, lines);
        close(end);
      } else lines.push(["-", `${label}${valueText(b)}${sym === "-" ? "" : " -> null"}${forces}`, "delete", depth]);
    } else if (none(b) || sym === "+") {
      if (nested(a) && u !== true) {
        const end = open("+", "create", a);
        walk("+", null, a, u, here, replace, depth + 1, lines);
        close(end);
      } else lines.push(["+", `${label}${valueText(a, u)}${forces}`, "create", depth]);
    } else if (a === "(sensitive)" && b === "(sensitive)") {
      // Masked on the server on both sides: shown as `tofu show` shows a sensitive change.
      lines.push(["~", `${label}(sensitive value)${forces}`, "update", depth]);
    } else if (nested(a) && nested(b) && u !== true && Array.isArray(a) === Array.isArray(b)) {
      if (same(a, b) && !(u && typeof u === "object" && JSON.stringify(u).includes("true"))) {
        hidden += 1;
        continue;
      }
      const end = open("~", "update", a);
      walk("~", b, a, u, here, replace, depth + 1, lines);
      close(end);
    } else if (!same(b, a) || u === true) {
      lines.push(["~", `${label}${valueText(b)} -> ${valueText(a, u)}${forces}`, "update", depth]);
    } else hidden += 1;
  }
  if (hidden > 0 && sym === "~") {
    const what = Array.isArray(after) ? "element" : "attribute";
    lines.push([" ", `# (${hidden} unchanged ${what}${hidden === 1 ? "" : "s"} hidden)`, "hidden", depth]);
  }
  return lines;
}

// The attribute lines of one change, nested maps, objects and blocks attribute by attribute:
// [symbol, text, class, depth].
export function attributeLines(sym, change) {
  const replace = new Set((change.replace_paths || []).map((p) => JSON.stringify(p)));
  return walk(sym, change.before, change.after, change.after_unknown, [], replace, 0, []);
}

function resourceBlock(rc, drift) {
  const act = actionOf(rc.change || {});
  if (!act) return null;
  const [sym, planned, cls] = act;
  const words = drift ? (sym === "-" ? "has been deleted" : "has changed") : planned;
  const lines = attributeLines(sym, rc.change);
  return el("div", { class: `change ${cls}`, "data-address": rc.address, "data-action": cls },
    el("div", { class: "change-head" }, `# ${rc.address} ${words}`),
    el("pre", {},
      el("span", { class: cls }, `${sym} resource "${rc.type}" "${rc.name}" {\n`),
      lines.map(([s, text, c, depth]) =>
        el("span", { class: `attr ${c}` }, `${"    ".repeat(depth + 1)}${s} ${text}\n`)),
      "  }"));
}

// The plan of GET /api/v1/runs/{id}/plan.
export function renderPlan(plan) {
  const changes = plan.changes || {};
  const blocks = (changes.resource_changes || []).map((rc) => resourceBlock(rc, false)).filter(Boolean);
  const drift = (changes.resource_drift || []).map((rc) => resourceBlock(rc, true)).filter(Boolean);
  const outputs = Object.entries(changes.output_changes || {})
    .filter(([, c]) => actionOf(c))
    .map(([name, c]) => el("span", { class: `attr ${actionOf(c)[2]}` },
      `  ${actionOf(c)[0]} ${name} = ${valueText(c.after, c.after_unknown)}\n`));
  const s = plan.summary;
  return el("div", { class: "plan" },
    drift.length ? el("div", { class: "drift" },
      el("h3", {}, "Note: Objects have changed outside of OpenTofu"),
      el("p", {}, "OpenTofu detected the following changes made outside of OpenTofu since the last apply:"),
      drift) : null,
    blocks.length ? blocks : el("p", {}, "No changes. Your infrastructure matches the configuration."),
    outputs.length ? [el("h3", {}, "Changes to Outputs"), el("pre", {}, outputs)] : null,
    el("p", { class: "summary" }, `Plan: ${s.add} to add, ${s.change} to change, ${s.destroy} to destroy.`));
}
