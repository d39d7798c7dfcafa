// Schedules (expression in words, next firings, last runs; run now) and the event bus (rules
// with their patterns and targets, a pattern tester that publishes nothing, topics and the
// recent deliveries).

import { api, el, table, link, actionButton, status, every, outcomeBadge, ms } from "./app.js";

const when = (rfc3339) => (rfc3339 ? new Date(rfc3339).toLocaleString() : "–");

async function notDeclared(path, key) {
  try {
    return (await api(path))[key];
  } catch (e) {
    if (e.status === 404) return { missing: e.message };
    throw e;
  }
}

function schedule(s) {
  return el("section", { class: "panel", "aria-label": `schedule ${s.name}` },
    el("h3", {}, s.name, " → ", link(`functions/${encodeURIComponent(s.function)}`, s.function)),
    el("p", {}, el("code", {}, s.expression), " — ", s.description, s.overlap ? ` (overlap: ${s.overlap})` : ""),
    el("div", { class: "actions" }, actionButton("Run now", async () => {
      await api(`schedules/${encodeURIComponent(s.name)}/trigger`, { method: "POST" });
      status(`${s.name} ran`);
    })),
    el("div", { class: "columns" },
      el("div", {}, el("h4", {}, "Next firings"), el("ol", {}, s.upcoming.map((t) => el("li", {}, when(t))))),
      el("div", {}, el("h4", {}, "Last runs"),
        table(`Last runs of ${s.name}`, ["Scheduled", "Trigger", "Outcome", "Duration", "Error"], [...s.lastRuns].reverse(),
          (r) => [when(r.scheduled), r.trigger, outcomeBadge(r.outcome), ms(r.durationMs), r.error ?? ""], "Not run yet."))));
}

export async function schedulesView() {
  const holder = el("div", {});
  const draw = async () => {
    const list = await notDeclared("schedules", "schedules");
    holder.replaceChildren(...(list.missing ? [el("p", { class: "empty" }, list.missing)] : list.map(schedule)));
  };
  await draw();
  return {
    node: el("section", { "aria-labelledby": "sc-title" }, el("h2", { id: "sc-title" }, "Schedules"), holder),
    stop: every(3000, draw),
  };
}

const SAMPLE = { source: "shop.orders", type: "OrderPlaced", detail: { orderId: "o-1", total: 150 } };

function tester() {
  const input = el("textarea", { id: "rule-test-event", rows: 7, spellcheck: "false" }, JSON.stringify(SAMPLE, null, 2));
  const out = el("ul", { id: "rule-test-result", class: "matches", "aria-live": "polite" });
  const run = actionButton("Test against every rule", async () => {
    const r = await api("rules/test", { method: "POST", body: input.value });
    out.replaceChildren(...r.rules.map((x) => el("li", { class: x.matches ? "match" : "nomatch", "data-rule": x.name },
      el("strong", {}, x.name), x.matches ? ` matches → ${x.targets.join(", ")}` : " does not match")));
    if (!r.rules.length) out.replaceChildren(el("li", {}, "No rules are declared."));
  }, { id: "rule-test-run" });
  return el("section", { class: "panel", "aria-labelledby": "tester-title" },
    el("h3", { id: "tester-title" }, "Pattern tester"),
    el("label", { for: "rule-test-event" }, "Event ({source, type, detail}); nothing is published"), input,
    el("div", { class: "actions" }, run), out);
}

export async function eventsView() {
  const rules = await notDeclared("rules", "rules");
  const topics = await notDeclared("topics", "topics");
  const deliveries = el("div", {});
  const draw = async () => {
    const list = (await api("events/deliveries")).deliveries;
    deliveries.replaceChildren(table("Recent deliveries", ["Time", "Kind", "Subject", "Rules", "Targets"], [...list].reverse(),
      (d) => [new Date(d.timeMs).toLocaleTimeString(), d.kind, d.subject, d.rules.join(", ") || "none", d.targets.join(", ") || "–"],
      "Nothing published yet."));
  };
  await draw();
  const rulesTable = rules.missing ? el("p", { class: "empty" }, rules.missing)
    : table("Rules", ["Rule", "Pattern", "Input path", "Targets"], rules,
      (r) => [r.name, el("code", {}, JSON.stringify(r.pattern)), r.inputPath ?? "–", r.targets.join(", ")], "No rules.");
  const topicsTable = topics.missing ? null
    : table("Topics", ["Topic", "Subscriptions"], topics,
      (t) => [t.name, t.subscriptions.map((s) => s.queue + (s.filtered ? " (filtered)" : "")).join(", ")], "No topics.");
  const node = el("section", { "aria-labelledby": "ev-title" },
    el("h2", { id: "ev-title" }, "Event bus and topics"),
    el("div", { class: "columns" }, el("div", {}, rulesTable, topicsTable), tester()),
    el("h3", {}, "Recent deliveries"), deliveries);
  return { node, stop: every(2000, draw) };
}
