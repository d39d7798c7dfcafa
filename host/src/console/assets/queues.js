// Queues (depth, in flight, oldest age, dead letters; browse a queue's or a dead-letter
// queue's messages, and redrive
// it, after a confirmation) and streams (lag, checkpoint, parked records; re-deliver one).

import { api, el, table, link, confirmAction, actionButton, status, every, pretty } from "./app.js";

const age = (s) => (s === null || s === undefined ? "–" : s < 60 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);

function queuesTable(list) {
  const byName = new Map(list.map((q) => [q.name, q]));
  return table(
    "Queues",
    ["Queue", "Function", "Waiting", "In flight", "Oldest", "Dead letters"],
    list.filter((q) => q.function !== null || !list.some((o) => o.deadLetterQueue === q.name)),
    (q) => {
      const dlq = q.deadLetterQueue ? byName.get(q.deadLetterQueue) : null;
      return [
        link(`queues/${encodeURIComponent(q.name)}`, q.name),
        q.function ?? "–",
        el("td", { class: "num" }, q.waiting),
        el("td", { class: "num" }, q.inFlight),
        el("td", { class: "num" }, age(q.oldestAgeSeconds)),
        dlq
          ? el("td", { class: `num ${dlq.waiting ? "bad" : ""}` }, link(`queues/${encodeURIComponent(dlq.name)}`, `${dlq.waiting} in ${dlq.name}`))
          : "–",
      ];
    },
    "No queues: add [queues.NAME] to wasmfn.toml.",
  );
}

export async function queuesView() {
  const holder = el("div", {});
  const draw = async () => holder.replaceChildren(queuesTable((await api("queues")).queues));
  await draw();
  return {
    node: el("section", { "aria-labelledby": "q-title" }, el("h2", { id: "q-title" }, "Queues"), holder),
    stop: every(2000, draw),
  };
}

function message(m) {
  const attrs = (m.attributes || []).map(([k, v]) => `${k}=${v}`).join(", ");
  return el("li", { class: "message" },
    el("details", {},
      el("summary", {}, el("code", {}, `#${m.id}`), " ", el("span", { class: "preview" }, (m.body || "").slice(0, 120))),
      el("dl", { class: "settings" },
        el("dt", {}, "Attempts"), el("dd", {}, m.receive_count ?? m.receiveCount ?? "–"),
        el("dt", {}, "Last error"), el("dd", { class: "error" }, m.last_error ?? m.lastError ?? "–"),
        el("dt", {}, "Attributes"), el("dd", {}, attrs || "–")),
      el("pre", {}, pretty(m.body))));
}

export async function queueView([, name]) {
  const all = (await api("queues")).queues;
  const q = all.find((x) => x.name === name);
  if (!q) throw new Error(`no queue called ${name}`);
  const source = all.find((x) => x.deadLetterQueue === name);
  const holder = el("div", {});
  // The first drawing uses the listing just read; refreshes read it again.
  let listed = all;
  const draw = async () => {
    const fresh = (listed ?? (await api("queues")).queues).find((x) => x.name === name) ?? q;
    listed = null;
    const parts = [el("p", {}, `${fresh.waiting} waiting, ${fresh.inFlight} in flight, oldest ${age(fresh.oldestAgeSeconds)}.`)];
    if (source) {
      const messages = (await api(`queues/${encodeURIComponent(name)}/messages?limit=100`)).messages;
      parts.push(
        el("p", {}, `Dead-letter queue of `, link(`queues/${encodeURIComponent(source.name)}`, source.name), "."),
        el("div", { class: "actions" },
          actionButton(`Redrive to ${source.name}`, async () => {
            if (!(await confirmAction(`Move all ${messages.length} message(s) of ${name} back to ${source.name}, where ${source.function} will receive them again?`))) return;
            const r = await api(`queues/${encodeURIComponent(name)}/redrive`, { method: "POST" });
            status(`moved ${r.moved} message(s) to ${r.to}`);
            await draw();
          }, { id: "redrive", disabled: messages.length === 0 })),
        messages.length
          ? el("ol", { class: "messages", id: "dead-letters" }, messages.map(message))
          : el("p", { class: "empty", id: "dead-letters" }, "No dead letters."),
      );
    } else {
      if (q.deadLetterQueue) {
        parts.push(el("p", {}, "Messages that fail too often go to ", link(`queues/${encodeURIComponent(q.deadLetterQueue)}`, q.deadLetterQueue), "."));
      }
      // The messages waiting (and in flight), oldest first: what a consumer will get next.
      const messages = (await api(`queues/${encodeURIComponent(name)}/messages?limit=100`)).messages;
      parts.push(
        el("h3", {}, `Messages (${messages.length === 100 ? "the first 100" : messages.length})`),
        messages.length
          ? el("ol", { class: "messages", id: "queue-messages" }, messages.map(message))
          : el("p", { class: "empty", id: "queue-messages" }, "No messages waiting."),
      );
    }
    holder.replaceChildren(...parts);
  };
  await draw();
  return {
    node: el("section", { "aria-labelledby": "qq-title" }, el("p", {}, link("queues", "← Queues")), el("h2", { id: "qq-title" }, name), holder),
    stop: every(3000, draw),
  };
}

async function parkedList(stream) {
  const parked = (await api(`streams/${encodeURIComponent(stream.name)}/parked`)).parked;
  if (!parked.length) return el("p", { class: "empty" }, "No parked records.");
  return el("ol", { class: "messages" }, parked.map((p) => el("li", { class: "message" },
    el("details", {},
      el("summary", {}, el("code", {}, `seq ${p.sequence}`), ` key ${p.key}: `, el("span", { class: "error" }, p.reason)),
      el("pre", {}, pretty(p.event))),
    actionButton("Re-deliver", async () => {
      if (!(await confirmAction(`Deliver record ${p.sequence} (key ${p.key}) of ${stream.name} to ${stream.function} again?`))) return;
      const r = await api(`streams/${encodeURIComponent(stream.name)}/parked/${encodeURIComponent(p.sequence)}/redeliver`, { method: "POST" });
      status(`re-appended as sequence ${r.sequence}`);
    }))));
}

export async function streamsView() {
  const holder = el("div", {});
  const draw = async () => {
    let list;
    try {
      list = (await api("streams")).streams;
    } catch (e) {
      if (e.status === 404) return holder.replaceChildren(el("p", { class: "empty" }, e.message));
      throw e;
    }
    const sections = await Promise.all(list.map(async (s) => el("section", { class: "panel" },
      el("h3", {}, s.name, " → ", link(`functions/${encodeURIComponent(s.function)}`, s.function)),
      el("p", {}, `${s.undelivered} undelivered (oldest ${age(s.oldestAgeSeconds)}), ${s.parked} parked, checkpoint ${s.checkpoint ?? "–"}, batches of ${s.batchSize}.`),
      await parkedList(s))));
    holder.replaceChildren(...(sections.length ? sections : [el("p", { class: "empty" }, "No streams.")]));
  };
  await draw();
  return {
    node: el("section", { "aria-labelledby": "s-title" }, el("h2", { id: "s-title" }, "Streams"), holder),
    stop: every(3000, draw),
  };
}
