// The live log tail: one fetch of the host's server-sent event stream (`GET /_wasmfn/logs`)
// for the page's life, read as a stream because EventSource cannot send the token. It
// reconnects after a drop and resumes after the last line it saw (`since`), so nothing is
// missed or shown twice. The Logs view and each function's recent invocations read its buffer.
// It asks the host for a sample (`rate`): a host logging thousands of lines a second would
// otherwise spend its cores sending them, and the page parsing them, for nobody to read;
// the host counts what it leaves out, and `wasmfn logs` has every line.

import { authHeaders, el, hasToken, status } from "./app.js";

const KEEP = 2000;
/// Lines a second the page asks for (and as many warnings and errors besides): more than anyone
/// reads, few enough that drawing them costs the browser little.
export const RATE = 50;

class LogTail {
  constructor() {
    this.lines = [];
    this.last = 0;
    this.listeners = new Set();
    this.connected = false;
    // Lines the host left out of the sample, and lines lost because the page read too slowly.
    this.skipped = 0;
    this.missed = 0;
  }

  start() {
    if (this.started) return;
    this.started = true;
    this.loop();
  }

  async loop() {
    for (;;) {
      try {
        await this.read();
      } catch {
        // Dropped (host restarting, network): try again shortly.
      }
      this.setConnected(false);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async read() {
    if (!hasToken()) return;
    const headers = authHeaders({ Accept: "text/event-stream" });
    const r = await fetch(`/_wasmfn/logs?since=${this.last}&rate=${RATE}`, { headers, cache: "no-store" });
    if (!r.ok || !r.body) return;
    this.setConnected(true);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // A chunk holds many events when the host is busy: split it once.
      const frames = (pending + value).split("\n\n");
      pending = frames.pop();
      let counted = false;
      for (const frame of frames) {
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data) continue;
        if (frame.includes("event: log")) this.push(JSON.parse(data));
        else if (frame.includes("event: sampled")) { this.skipped += JSON.parse(data).skipped; counted = true; }
        else if (frame.includes("event: gap")) { this.missed += JSON.parse(data).missed; counted = true; }
      }
      // The counts change with nearly every chunk of a sampled tail: redrawn once a second,
      // not per chunk (each redraw costs the page a layout).
      if (counted) this.notifySoon();
    }
  }

  notifySoon() {
    this.noteTimer ||= setTimeout(() => {
      this.noteTimer = 0;
      this.notify();
    }, 1000);
  }

  push(record) {
    if (record.seq <= this.last) return;
    this.last = record.seq;
    this.lines.push(record);
    // Trimmed in steps, not one line at a time (which would shift the whole buffer per line).
    if (this.lines.length > 2 * KEEP) this.lines = this.lines.slice(-KEEP);
    for (const l of this.listeners) l(record);
  }

  setConnected(on) {
    this.connected = on;
    this.notify();
  }

  /// Tell the listeners the tail's state changed (connected, lines left out), not its lines.
  notify() {
    for (const l of this.listeners) l(null);
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /// The lines one invocation logged.
  forInvocation(id) {
    return this.lines.filter((r) => r.fields && r.fields.invocation === id);
  }
}

export const tail = new LogTail();

// One formatter for every line: `toLocaleTimeString` builds a new one per call.
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/// One log record as a list item: time, level, function, message, then the ids.
export function logLine(r) {
  const f = r.fields || {};
  const ids = [];
  if (f.invocation !== undefined) ids.push(`inv ${f.invocation}`);
  if (f.trace_id) ids.push(`trace ${f.trace_id}`);
  if (f.execution) ids.push(`exec ${f.execution}`);
  return el(
    "li",
    { class: `log ${r.level.toLowerCase()}` },
    el("time", { datetime: new Date(r.time_ms).toISOString() }, clock.format(r.time_ms)),
    el("span", { class: "level" }, r.level),
    el("span", { class: "fn" }, r.function || r.target),
    el("span", { class: "msg" }, r.message),
    ids.length ? el("span", { class: "ids" }, ids.join(" · ")) : null,
  );
}

/// The shortest times between two draws of the Logs view, in milliseconds: of new lines (so a
/// line shows within a second of being logged: this, plus the host's 100 ms sample and the
/// network), and of the tail's state alone (connected, lines left out). Each draw is a frame
/// (style, layout, paint, composite) that costs a headless Chromium 10-20 ms of CPU whatever it
/// changes, so a busy host costs the page two frames a second, not one per chunk.
const LINES_EVERY = 500;
const STATE_EVERY = 1000;

const LEVELS = { ERROR: 1, WARN: 2, INFO: 3, DEBUG: 4, TRACE: 5 };

export async function logsView() {
  const fnFilter = el("input", { id: "log-function", type: "search", placeholder: "all functions", list: "log-functions" });
  const levelFilter = el(
    "select",
    { id: "log-level" },
    el("option", { value: "INFO" }, "info and above"),
    el("option", { value: "WARN" }, "warnings and errors"),
    el("option", { value: "ERROR" }, "errors"),
  );
  const follow = el("input", { id: "log-follow", type: "checkbox", checked: true });
  const state = el("span", { class: "tail-state" });
  const list = el("ol", { class: "logs", id: "log-lines", role: "log" });
  const names = el("datalist", { id: "log-functions" });

  const shown = (r) => {
    const fn = fnFilter.value.trim();
    return (!fn || r.function === fn) && LEVELS[r.level] <= LEVELS[levelFilter.value];
  };
  const sampling = el("p", { id: "log-sampling", class: "notice", role: "status", hidden: true });
  // Only what changed is written: an unchanged text or class still invalidates the layout.
  const set = (node, key, value) => { if (node[key] !== value) node[key] = value; };
  const drawState = () => {
    set(state, "textContent", tail.connected ? "live" : "reconnecting…");
    set(state, "className", `tail-state ${tail.connected ? "on" : "off"}`);
    const notes = [];
    if (tail.skipped) {
      notes.push(`Sampled: ${tail.skipped.toLocaleString()} lines not shown (the host logs more than ${RATE} a second; ` +
        "warnings and errors are sampled apart). `wasmfn logs --follow` prints every line.");
    }
    if (tail.missed) notes.push(`${tail.missed.toLocaleString()} lines lost: this page read more slowly than the host logged.`);
    set(sampling, "textContent", notes.join(" "));
    set(sampling, "hidden", !notes.length);
  };
  const suggest = () => {
    const fns = [...new Set(tail.lines.map((r) => r.function).filter(Boolean))].sort();
    names.replaceChildren(...fns.map((f) => el("option", { value: f })));
  };
  const redraw = () => {
    list.replaceChildren(...tail.lines.filter(shown).slice(-500).map(logLine));
    suggest();
    drawState();
    if (follow.checked) list.scrollTop = list.scrollHeight;
  };
  fnFilter.addEventListener("input", redraw);
  fnFilter.addEventListener("focus", suggest);
  levelFilter.addEventListener("change", redraw);
  // New lines and the tail's state are drawn together, in one frame: lines at most every
  // LINES_EVERY ms (at once after a quiet spell), at most the last 200 each time, and a change
  // of state alone at most every STATE_EVERY ms, or with the next lines.
  let pending = [];
  let timer = 0;
  let due = Infinity;
  let linesAt = -1e9;
  let drawnAt = -1e9;
  const schedule = (withLines) => {
    const at = withLines ? linesAt + LINES_EVERY : drawnAt + STATE_EVERY;
    if (timer && due <= at) return;
    clearTimeout(timer);
    due = at;
    timer = setTimeout(flush, Math.max(0, at - performance.now()));
  };
  const flush = () => {
    timer = 0;
    due = Infinity;
    drawnAt = performance.now();
    if (pending.length) linesAt = drawnAt;
    const lines = pending.slice(-200);
    pending = [];
    list.append(...lines.map(logLine));
    // Trimmed in steps of 250 rows: removing rows above shifts every row below.
    if (list.childElementCount > 750) {
      const range = document.createRange();
      range.setStartBefore(list.firstElementChild);
      range.setEndBefore(list.children[list.childElementCount - 500]);
      range.deleteContents();
    }
    drawState();
    if (follow.checked) list.scrollTop = list.scrollHeight;
  };
  const unsubscribe = tail.subscribe((r) => {
    if (r === null) return schedule(false);
    if (!shown(r)) return;
    pending.push(r);
    if (pending.length > 400) pending = pending.slice(-200);
    schedule(true);
  });
  redraw();
  if (!tail.started) status("log tail not started", true);

  const node = el(
    "section",
    { "aria-labelledby": "logs-title" },
    el("h2", { id: "logs-title" }, "Live logs ", state),
    el(
      "div",
      { class: "filters" },
      el("label", { for: "log-function" }, "Function"), fnFilter, names,
      el("label", { for: "log-level" }, "Level"), levelFilter,
      el("label", {}, follow, " follow"),
    ),
    sampling,
    list,
  );
  return { node, stop: () => { unsubscribe(); clearTimeout(timer); } };
}
