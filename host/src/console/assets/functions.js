// Functions: the list with each one's rate, error rate and latency, and one function's page
// with its settings, its last invocations (with the log lines they wrote) and an Invoke box.

import { api, el, table, link, ms, bytes, time, outcomeBadge, pretty, every, actionButton, status } from "./app.js";
import { tail, logLine } from "./logs.js";

const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);
const rate = (v) => (v ? v.toFixed(1) : "0");

function functionsTable(data) {
  return table(
    "Functions",
    ["Name", "World", "Routes", "Mode", "Calls/min", "Errors", "p50", "p99", "Peak memory"],
    data.functions,
    (f) => [
      link(`functions/${encodeURIComponent(f.name)}`, f.name),
      f.world,
      f.routes.join(" ") || "–",
      f.mode.kind,
      el("td", { class: "num" }, rate(f.stats.invocationsPerMinute)),
      el("td", { class: `num ${f.stats.errorRate > 0 ? "bad" : ""}` }, pct(f.stats.errorRate)),
      el("td", { class: "num" }, ms(f.stats.p50Ms)),
      el("td", { class: "num" }, ms(f.stats.p99Ms)),
      el("td", { class: "num" }, bytes(f.stats.peakMemoryBytes)),
    ],
    "No functions: add components to the app folder.",
  );
}

export async function functionsView() {
  const holder = el("div", {});
  const draw = async () => {
    const data = await api("functions");
    const failed = data.failedToLoad.length
      ? el("div", { class: "callout error", role: "alert" }, el("h3", {}, "Failed to load"),
          el("ul", {}, data.failedToLoad.map((f) => el("li", {}, el("strong", {}, f.name), ": ", f.error))))
      : null;
    holder.replaceChildren(functionsTable(data), failed ?? "");
  };
  await draw();
  const node = el("section", { "aria-labelledby": "fn-title" }, el("h2", { id: "fn-title" }, "Functions"), holder);
  return { node, stop: every(2000, draw) };
}

function settings(f) {
  const rows = [
    ["World", f.world],
    ["Component", f.source],
    ["Routes", f.routes.join(", ") || "–"],
    ["Instances", f.mode.kind === "reuse" ? `reuse (up to ${f.mode.maxUses} uses, ${f.mode.prewarm} prewarmed)` : "fresh per invocation"],
    ["Memory limit", bytes(f.limits.memoryBytes)],
    ["Timeout", ms(f.limits.timeoutMs)],
    ["Max concurrency", f.limits.maxConcurrency],
  ];
  for (const [kind, v] of Object.entries(f.bindings || {})) {
    rows.push([`Binding: ${kind}`, Array.isArray(v) ? v.join(", ") : typeof v === "object" ? Object.entries(v).map(([k, x]) => `${k}=${x}`).join(", ") : String(v)]);
  }
  return el("dl", { class: "settings" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function stats(s) {
  const tile = (label, value) => el("div", { class: "tile" }, el("span", {}, label), el("strong", {}, value));
  return el("div", { class: "tiles" },
    tile("Calls/min", rate(s.invocationsPerMinute)), tile("Error rate", pct(s.errorRate)),
    tile("p50", ms(s.p50Ms)), tile("p99", ms(s.p99Ms)), tile("Peak memory", bytes(s.peakMemoryBytes)),
    tile("Invocations", s.total.invocations));
}

function recent(list) {
  if (!list.length) return el("p", { class: "empty" }, "No invocations yet.");
  return el("ol", { class: "invocations" }, list.map((inv) => {
    const lines = tail.forInvocation(inv.invocation);
    return el("li", {},
      el("details", {},
        el("summary", {},
          outcomeBadge(inv.outcome), " #", inv.invocation, " · ", time(inv.endedMs), " · ", ms(inv.durationUs / 1000),
          inv.status ? ` · HTTP ${inv.status}` : "", inv.cold ? " · cold" : "",
          inv.traceId ? el("span", { class: "ids" }, ` trace ${inv.traceId}`) : ""),
        el("dl", { class: "settings" },
          el("dt", {}, "CPU"), el("dd", {}, ms(inv.cpuUs / 1000)),
          el("dt", {}, "Peak memory"), el("dd", {}, bytes(inv.peakMemory)),
          inv.error ? [el("dt", {}, "Error"), el("dd", { class: "error" }, inv.error)] : null,
          inv.traceId ? [el("dt", {}, "Trace id"), el("dd", {}, el("code", {}, inv.traceId))] : null),
        lines.length ? el("ol", { class: "logs" }, lines.map(logLine)) : el("p", { class: "empty" }, "No log lines (the tail keeps those since the console opened)."),
      ));
  }));
}

function invokeBox(f) {
  const input = el("textarea", { id: "invoke-event", rows: 8, spellcheck: "false" }, JSON.stringify(f.sampleEvent, null, 2));
  const out = el("pre", { id: "invoke-result", class: "result", "aria-live": "polite" });
  const run = actionButton("Invoke", async () => {
    out.className = "result";
    out.textContent = "…";
    try {
      const r = await api(`functions/${encodeURIComponent(f.name)}/invoke`, { method: "POST", body: input.value });
      out.className = `result ${r.ok ? "ok" : "failed"}`;
      out.textContent = pretty(r.result);
    } catch (e) {
      out.className = "result failed";
      out.textContent = e.message;
    }
  }, { id: "invoke-run" });
  return el("section", { "aria-labelledby": "invoke-title", class: "panel" },
    el("h3", { id: "invoke-title" }, "Invoke"),
    el("label", { for: "invoke-event" }, `Event (${f.world} world; this is its sample)`), input,
    el("div", { class: "actions" }, run), out);
}

export async function functionView([, name]) {
  let f = await api(`functions/${encodeURIComponent(name)}`);
  const live = el("div", {}, stats(f.stats), el("h3", {}, "Last invocations"), recent(f.recent));
  const draw = async () => {
    f = await api(`functions/${encodeURIComponent(name)}`);
    // Keep open details open across refreshes.
    const open = [...live.querySelectorAll("details[open] summary")].map((s) => s.textContent);
    live.replaceChildren(stats(f.stats), el("h3", {}, "Last invocations"), recent(f.recent));
    for (const s of live.querySelectorAll("details summary")) if (open.includes(s.textContent)) s.parentElement.open = true;
  };
  const node = el("section", { "aria-labelledby": "f-title" },
    el("p", {}, link("functions", "← Functions")),
    el("h2", { id: "f-title" }, name),
    el("div", { class: "columns" }, el("div", {}, settings(f), invokeBox(f)), live));
  status("");
  return { node, stop: every(2000, draw) };
}
