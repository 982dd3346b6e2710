// Two state versions compared resource by resource, worded like a plan: resources added,
// removed and changed, attribute by attribute. Attributes the state marks sensitive
// (`sensitive_attributes`) are shown as "(sensitive value)".
import { api, el } from "./lib.js";
import { attributeLines } from "./plan.js";

// Top-level attribute names a `sensitive_attributes` list names (any path format).
function sensitiveNames(paths) {
  const names = new Set();
  for (const p of paths || []) {
    const first = Array.isArray(p) ? p[0] : p;
    if (first && typeof first === "object" && typeof first.value === "string") names.add(first.value);
    else if (typeof first === "string") names.add(first);
  }
  return names;
}

// address -> attributes (sensitive ones masked) of every resource instance in a state file.
export function instances(state) {
  const out = new Map();
  for (const r of (state && state.resources) || []) {
    const base = `${r.module ? `${r.module}.` : ""}${r.mode === "data" ? "data." : ""}${r.type}.${r.name}`;
    for (const i of r.instances || []) {
      const key = i.index_key === undefined ? "" : `[${JSON.stringify(i.index_key)}]`;
      const hidden = sensitiveNames(i.sensitive_attributes);
      const attrs = {};
      for (const [k, v] of Object.entries(i.attributes || {})) attrs[k] = hidden.has(k) ? "(sensitive)" : v;
      out.set(base + key, attrs);
    }
  }
  return out;
}

// The blocks of what changed from state `a` to state `b`.
export function diffStates(a, b) {
  const [before, after] = [instances(a), instances(b)];
  const addresses = [...new Set([...before.keys(), ...after.keys()])].sort();
  const blocks = [];
  for (const addr of addresses) {
    const [x, y] = [before.get(addr), after.get(addr)];
    const [sym, words, cls] = !x ? ["+", "was added", "create"] : !y ? ["-", "was removed", "delete"]
      : ["~", "changed", "update"];
    const lines = attributeLines(sym, { before: x || null, after: y || null });
    // Nothing but "unchanged, hidden" lines: the resource did not change.
    if (sym === "~" && !lines.some(([s]) => s !== " ")) continue;
    blocks.push(el("div", { class: `change ${cls}`, "data-address": addr },
      el("div", { class: "change-head" }, `# ${addr} ${words}`),
      el("pre", {}, lines.map(([s, text, c, depth]) =>
        el("span", { class: `attr ${c}` }, `${"    ".repeat(depth)}  ${s} ${text}\n`)))));
  }
  return blocks.length ? blocks : [el("p", {}, "the two versions hold the same resources")];
}

// A form choosing two versions; the diff appears below it.
export function compareForm(ws, versions) {
  const pick = (name, chosen) => el("select", { name },
    versions.map((v) => el("option", { value: v.version, selected: v.version === chosen }, `version ${v.version}`)));
  const [from, to] = [pick("from", versions[Math.min(1, versions.length - 1)].version), pick("to", versions[0].version)];
  const out = el("div", { id: "state-diff" });
  const content = (n) => api(`/api/v1/workspaces/${encodeURIComponent(ws)}/state/versions/${n}/content`);
  const submit = async (e) => {
    e.preventDefault();
    try {
      const [a, b] = await Promise.all([content(from.value), content(to.value)]);
      out.replaceChildren(el("h3", {}, `version ${from.value} → version ${to.value}`), ...diffStates(a, b));
    } catch (err) {
      out.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
    }
  };
  return el("div", {}, el("form", { class: "filters", onsubmit: submit },
    el("label", {}, "from", from), el("label", {}, "to", to), el("button", { type: "submit" }, "Compare")), out);
}
