// A run: what it is, Approve / Reject / Cancel for those whose role allows it (the server
// refuses anyone else anyway), the timeline of transitions, the plan as a diff, the plan
// policies' verdicts, the log as it streams (EventSource on the SSE endpoint, resuming by
// itself), and the outputs.
import { age, api, badge, el, ended, may, post, table, when, wsLink } from "./lib.js";
import { renderPlan } from "./plan.js";

const REFRESH_MS = 2000;

function summary(run) {
  const tags = Object.entries(run.tags).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`));
  return el("dl", { class: "facts" },
    el("dt", {}, "state"), el("dd", { id: "run-state" }, badge(run.state)),
    el("dt", {}, "workspace"), el("dd", {}, wsLink(run.workspace)),
    el("dt", {}, "kind"), el("dd", {}, run.kind),
    el("dt", {}, "submitted by"), el("dd", {}, run.submitted_by),
    el("dt", {}, "commit"), el("dd", {}, run.commit || "-"),
    el("dt", {}, "tags"), el("dd", {}, tags.length ? tags : "-"),
    el("dt", {}, "created"), el("dd", { title: when(run.created_unix_ms) }, age(run.created_unix_ms)),
    run.error ? [el("dt", {}, "error"), el("dd", { class: "error" }, run.error)] : null);
}

function actions(run, refresh) {
  const reason = el("input", { name: "reason", placeholder: "reason (recorded)" });
  const msg = el("span", { role: "status" });
  const act = (what) => async () => {
    try {
      await post(`/api/v1/runs/${encodeURIComponent(run.id)}/${what}`, { reason: reason.value });
      msg.textContent = `${what}: done`;
      await refresh();
    } catch (e) {
      msg.textContent = e.message;
    }
  };
  const waiting = run.state === "awaiting_approval";
  const buttons = [
    waiting && may("approve", run.workspace) ? el("button", { onclick: act("approve"), class: "approve" }, "Approve") : null,
    waiting && may("reject", run.workspace) ? el("button", { onclick: act("reject"), class: "reject" }, "Reject") : null,
    !ended(run) && may("cancel", run.workspace) ? el("button", { onclick: act("cancel"), class: "cancel" }, "Cancel") : null,
  ].filter(Boolean);
  return buttons.length ? el("div", { class: "actions" }, reason, buttons, msg) : el("div");
}

function timeline(run) {
  return table(["when", "from", "to", "by", "reason"], run.transitions.map((t) => [
    when(t.unix_ms), t.from || "-", badge(t.to), t.actor || "-", t.reason || "-"]), { class: "timeline" });
}

// The plan policies' verdicts, each with its reasons (text only, never markup).
function policies(run) {
  const verdicts = run.policy_verdicts || [];
  if (!verdicts.length) return el("p", { class: "muted" }, "no plan policy applies");
  const reasons = (v) => [
    ...v.deny.map((m) => `deny: ${m}`), ...v.warn.map((m) => `warn: ${m}`),
    ...(v.error ? [`error: ${v.error}`] : []),
  ].map((r) => el("div", {}, r));
  return table(["policy", "version", "outcome", "reasons", "time"], verdicts.map((v) => [
    v.policy, `v${v.version}`, v.outcome, reasons(v), `${(v.duration_us / 1000).toFixed(1)} ms`]),
  { class: "policies" });
}

function outputs(run) {
  const entries = Object.entries(run.outputs || {});
  if (!entries.length) return el("p", { class: "muted" }, "no outputs");
  return table(["name", "value"], entries.map(([k, o]) => [k,
    el("code", {}, o.sensitive ? "(sensitive value)" : JSON.stringify(o.value))]), { class: "outputs" });
}

// A log line as the CLI words it: tofu's `-json` lines by their message (and a diagnostic's
// detail), anything else as it is.
export function logText(line) {
  if (!line.startsWith("{")) return line;
  try {
    const j = JSON.parse(line);
    if (typeof j["@message"] !== "string") return line;
    const detail = j.diagnostic && j.diagnostic.detail;
    return detail ? `${j["@message"]}\n    ${detail.replaceAll("\n", "\n    ")}` : j["@message"];
  } catch {
    return line;
  }
}

// The log: one line per `log` event, a heading where phase or attempt changes.
function streamLog(id, pre, onEnd) {
  let last = "";
  const es = new EventSource(`/api/v1/runs/${encodeURIComponent(id)}/logs/stream`);
  es.addEventListener("log", (e) => {
    const l = JSON.parse(e.data);
    // Follow the end only when the reader is there already (not while they scroll back).
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const head = `${l.phase} (attempt ${l.attempt})`;
    if (head !== last) pre.append(el("span", { class: "log-phase" }, `── ${head}\n`));
    last = head;
    pre.append(el("span", { class: `log-${l.stream}` }, `${logText(l.line)}\n`));
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  es.addEventListener("end", () => {
    es.close();
    onEnd();
  });
  return es;
}

// The run page; refreshes the run until it ends.
export async function runPage(main, id) {
  const parts = {
    summary: el("div"), actions: el("div"), timeline: el("div"), plan: el("div", { id: "plan" }),
    outputs: el("div", { id: "outputs" }), policies: el("div", { id: "policies" }),
  };
  const log = el("pre", { id: "log", class: "log" });
  let planShown = false;
  const refresh = async () => {
    const run = await api(`/api/v1/runs/${encodeURIComponent(id)}`);
    parts.summary.replaceChildren(summary(run));
    parts.actions.replaceChildren(actions(run, refresh));
    parts.timeline.replaceChildren(timeline(run));
    parts.outputs.replaceChildren(outputs(run));
    parts.policies.replaceChildren(policies(run));
    if (!planShown && run.plan_digest) {
      planShown = true;
      parts.plan.replaceChildren(renderPlan(await api(`/api/v1/runs/${encodeURIComponent(id)}/plan`)));
    } else if (!planShown) {
      parts.plan.replaceChildren(el("p", { class: "muted" }, "no plan yet"));
    }
    return run;
  };
  main.append(el("h1", {}, "Run ", el("code", {}, id)), parts.summary, parts.actions,
    el("h2", {}, "Plan"), parts.plan, el("h2", {}, "Policies"), parts.policies, el("h2", {}, "Log"), log,
    el("h2", {}, "Outputs"), parts.outputs, el("h2", {}, "Timeline"), parts.timeline);
  await refresh();
  const es = streamLog(id, log, () => refresh().catch(() => {}));
  const t = setInterval(async () => {
    const run = await refresh().catch(() => null);
    if (run && ended(run)) clearInterval(t);
  }, REFRESH_MS);
  return () => {
    clearInterval(t);
    es.close();
  };
}
