// A saved plan as `tofu show` words it, as DOM: one block per resource change (symbol,
// address, what happens, attribute by attribute), output changes and the summary. Sensitive
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

// The attribute lines of one change: [symbol, text, class].
export function attributeLines(sym, change) {
  const before = change.before || {};
  const after = change.after || {};
  const unknown = change.after_unknown || {};
  const lines = [];
  const none = (v) => v === undefined || v === null;
  for (const k of keysOf(change.before, change.after, change.after_unknown)) {
    const [b, a, u] = [before[k], after[k], unknown[k]];
    const now = valueText(a, u);
    if (sym === "-") {
      if (!none(b)) lines.push(["-", `${k} = ${valueText(b)}`, "delete"]);
    } else if (none(a) && u !== true) {
      if (!none(b) && sym !== "+") lines.push(["-", `${k} = ${valueText(b)} -> null`, "delete"]);
    } else if (none(b) || sym === "+") {
      lines.push(["+", `${k} = ${now}`, "create"]);
    } else if (a === "(sensitive)" && b === "(sensitive)") {
      // Masked on the server on both sides: shown as `tofu show` shows a sensitive change.
      lines.push(["~", `${k} = (sensitive value)`, "update"]);
    } else if (JSON.stringify(b) !== JSON.stringify(a) || u === true) {
      lines.push(["~", `${k} = ${valueText(b)} -> ${now}`, "update"]);
    }
  }
  return lines;
}

function resourceBlock(rc) {
  const act = actionOf(rc.change || {});
  if (!act) return null;
  const [sym, words, cls] = act;
  const lines = attributeLines(sym, rc.change);
  return el("div", { class: `change ${cls}`, "data-address": rc.address, "data-action": cls },
    el("div", { class: "change-head" }, `# ${rc.address} ${words}`),
    el("pre", {},
      el("span", { class: cls }, `${sym} resource "${rc.type}" "${rc.name}" {\n`),
      lines.map(([s, text, c]) => el("span", { class: `attr ${c}` }, `    ${s} ${text}\n`)),
      "  }"));
}

// The plan of GET /api/v1/runs/{id}/plan.
export function renderPlan(plan) {
  const changes = plan.changes || {};
  const blocks = (changes.resource_changes || []).map(resourceBlock).filter(Boolean);
  const outputs = Object.entries(changes.output_changes || {})
    .filter(([, c]) => actionOf(c))
    .map(([name, c]) => el("span", { class: `attr ${actionOf(c)[2]}` },
      `  ${actionOf(c)[0]} ${name} = ${valueText(c.after, c.after_unknown)}\n`));
  const s = plan.summary;
  return el("div", { class: "plan" },
    blocks.length ? blocks : el("p", {}, "No changes. Your infrastructure matches the configuration."),
    outputs.length ? [el("h3", {}, "Changes to Outputs"), el("pre", {}, outputs)] : null,
    el("p", { class: "summary" }, `Plan: ${s.add} to add, ${s.change} to change, ${s.destroy} to destroy.`));
}
