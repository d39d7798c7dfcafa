// Workflows: the definitions, one workflow's graph with its executions (filtered by status) and
// a form to start one, and one execution drawn as its state machine, coloured by outcome, with
// each state's input, output, error, attempts and timings on click; live while it runs.

import { api, el, table, link, actionButton, status, every, pretty, time, ms, outcomeBadge } from "./app.js";
import { drawGraph, outcomes } from "./graph.js";

const STATUSES = ["", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];

export async function workflowsView() {
  const list = (await api("workflows")).workflows;
  const node = el("section", { "aria-labelledby": "wf-title" },
    el("h2", { id: "wf-title" }, "Workflows"),
    table("Workflows", ["Workflow", "Starts at", "States"], list,
      (w) => [link(`workflows/${encodeURIComponent(w.name)}`, w.name), w.startAt, w.states],
      "No workflows: add [workflows.NAME] to wasmfn.toml."));
  return { node };
}

function executionsTable(list) {
  return table("Executions", ["Execution", "Status", "Started", "Duration", "Steps", "Error"], list,
    (x) => [
      link(`executions/${encodeURIComponent(x.id)}`, x.id),
      outcomeBadge(x.status.toLowerCase()),
      time(x.startedAt),
      x.endedAt ? ms(x.endedAt - x.startedAt) : "running",
      el("td", { class: "num" }, x.steps),
      x.error ? el("span", { class: "error" }, x.error) : "",
    ], "No executions with this status.");
}

function startForm(name) {
  const input = el("textarea", { id: "start-input", rows: 6, spellcheck: "false" }, "{}");
  const execName = el("input", { id: "start-name", placeholder: "optional; makes the start idempotent" });
  const go = actionButton("Start execution", async () => {
    const q = execName.value.trim() ? `?name=${encodeURIComponent(execName.value.trim())}` : "";
    const r = await api(`workflows/${encodeURIComponent(name)}/executions${q}`, { method: "POST", body: input.value });
    location.hash = `#/executions/${encodeURIComponent(r.executionId)}`;
  }, { id: "start-run" });
  return el("section", { class: "panel", "aria-labelledby": "start-title" },
    el("h3", { id: "start-title" }, "Start an execution"),
    el("label", { for: "start-input" }, "Input (JSON)"), input,
    el("label", { for: "start-name" }, "Name"), execName,
    el("div", { class: "actions" }, go));
}

export async function workflowView([, name]) {
  const def = await api(`workflows/${encodeURIComponent(name)}`);
  const filter = el("select", { id: "status-filter" }, STATUSES.map((s) => el("option", { value: s }, s || "all")));
  const holder = el("div", {});
  const draw = async () => {
    const q = filter.value ? `?status=${filter.value}` : "";
    holder.replaceChildren(executionsTable((await api(`workflows/${encodeURIComponent(name)}/executions${q}`)).executions));
  };
  filter.addEventListener("change", () => draw().catch((e) => status(e.message, true)));
  await draw();
  const node = el("section", { "aria-labelledby": "w-title" },
    el("p", {}, link("workflows", "← Workflows")),
    el("h2", { id: "w-title" }, name),
    def.comment ? el("p", {}, def.comment) : null,
    el("div", { class: "columns" },
      el("div", { class: "graph-box" }, drawGraph(def.graph)),
      el("div", {},
        el("div", { class: "filters" }, el("label", { for: "status-filter" }, "Status"), filter),
        holder, startForm(name))));
  return { node, stop: every(2000, draw) };
}

/// The history of the branch `path` ([ParallelState, laneIndex, ...]) of an execution.
function branchHistory(detail, path) {
  let d = detail;
  for (let i = 0; i < path.length && d; i += 2) {
    const steps = d.history.filter((s) => s.state === path[i]);
    const seq = steps.length ? steps[steps.length - 1].seq : null;
    d = seq === null ? null : d.branches?.[seq]?.[path[i + 1]];
  }
  return d ? d.history : [];
}

function stepDetails(name, steps) {
  if (!steps.length) return [el("h3", {}, name), el("p", { class: "empty" }, "Not visited by this execution.")];
  return [el("h3", {}, name), ...steps.map((s) => el("article", { class: "step" },
    el("p", {}, outcomeBadge(s.error ? "failed" : s.endedAt ? "succeeded" : "running"),
      ` ${s.kind}, step ${s.seq}, attempt ${s.attempt}, ${time(s.startedAt)}`, s.endedAt ? `, took ${ms(s.endedAt - s.startedAt)}` : ""),
    s.error ? el("p", { class: "error" }, `${s.error}: ${s.cause ?? ""}`) : null,
    el("h4", {}, "Input"), el("pre", {}, pretty(s.input)),
    s.output !== null && s.output !== undefined ? [el("h4", {}, "Output"), el("pre", {}, pretty(s.output))] : null))];
}

export async function executionView([, id]) {
  let detail = await api(`executions/${encodeURIComponent(id)}`);
  const def = await api(`workflows/${encodeURIComponent(detail.execution.workflow)}`);
  const graphBox = el("div", { class: "graph-box", id: "execution-graph" });
  const side = el("aside", { class: "panel", id: "step-details", "aria-live": "polite" }, el("p", { class: "empty" }, "Pick a state to see its input, output and error."));
  const summary = el("div", {});
  const historyBox = el("div", {});
  let picked = null;
  const pick = (name, path) => {
    picked = [name, path];
    const steps = branchHistory(detail, path).filter((s) => s.state === name);
    side.replaceChildren(...stepDetails(name, steps));
  };
  const paint = (name, path) => outcomes(branchHistory(detail, path)).get(name) ?? null;
  const render = () => {
    const x = detail.execution;
    summary.replaceChildren(el("p", {}, outcomeBadge(x.status.toLowerCase()),
      ` started ${time(x.startedAt)}`, x.endedAt ? `, ended ${time(x.endedAt)} (${ms(x.endedAt - x.startedAt)})` : ", running…",
      x.error ? el("span", { class: "error" }, ` — ${x.error}: ${x.cause ?? ""}`) : ""));
    graphBox.replaceChildren(drawGraph(def.graph, paint, pick));
    historyBox.replaceChildren(table("History", ["Step", "State", "Kind", "Attempt", "Outcome", "Took"], detail.history,
      (s) => [s.seq, s.state, s.kind, s.attempt, outcomeBadge(s.error ? "failed" : s.endedAt ? "ok" : "running"), s.endedAt ? ms(s.endedAt - s.startedAt) : "…"]));
    if (picked) pick(...picked);
  };
  render();
  const stop = every(1000, async () => {
    if (detail.execution.status !== "RUNNING") return;
    detail = await api(`executions/${encodeURIComponent(id)}`);
    render();
  });
  const node = el("section", { "aria-labelledby": "x-title" },
    el("p", {}, link(`workflows/${encodeURIComponent(detail.execution.workflow)}`, `← ${detail.execution.workflow}`)),
    el("h2", { id: "x-title" }, id), summary,
    el("div", { class: "columns" }, graphBox, side),
    el("details", {}, el("summary", {}, "Input and output"),
      el("h4", {}, "Input"), el("pre", {}, pretty(detail.execution.input)),
      el("h4", {}, "Output"), el("pre", {}, pretty(detail.execution.output))),
    el("h3", {}, "History"), historyBox);
  status("");
  return { node, stop };
}
