// The console's shell: the admin token, calls to the host API, the hash router and the
// small DOM helpers every view uses. Views live in their own modules and render into <main>.
//
// Every text that comes from the host (function names, log lines, message bodies) is set as
// text, never parsed as HTML: guests are written by other teams.

import { functionsView, functionView } from "./functions.js";
import { logsView, tail } from "./logs.js";
import { queuesView, queueView, streamsView } from "./queues.js";
import { schedulesView, eventsView } from "./triggers.js";
import { workflowsView, workflowView, executionView } from "./workflows.js";

const TOKEN_KEY = "wasmfn-admin-token";

/// The token: from `#token=...[&/VIEW]` (the URL `wasmfn serve` prints) once, then this tab's
/// storage.
function takeToken() {
  const m = location.hash.match(/^#token=([^&]+)(?:&\/?(.*))?$/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    // Out of the address bar and the history, so it is not shared with a screenshot.
    history.replaceState(null, "", `${location.pathname}#/${m[2] || "functions"}`);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

let token = takeToken();

/// An error from the host API, with the host's own explanation as its message.
export class ApiError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
  }
}

/// Whether this tab holds a token (the log tail waits for one).
export const hasToken = () => Boolean(token);

/// Headers for a host API request.
export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token}`, ...extra };
}

/// Call `/_wasmfn/PATH`; the parsed JSON, or an ApiError with the host's text.
export async function api(path, { method = "GET", body } = {}) {
  if (!token) {
    await signIn();
  }
  const init = { method, headers: authHeaders(), cache: "no-store" };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(`/_wasmfn/${path}`, init);
  const text = await r.text();
  if (r.status === 401) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    await signIn(text);
    return api(path, { method, body });
  }
  if (!r.ok) {
    throw new ApiError(r.status, text.trim());
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

let signingIn = null;

/// Ask for the token (once, however many requests wait for it).
function signIn(reason) {
  if (signingIn) return signingIn;
  const dialog = document.getElementById("login");
  const form = document.getElementById("login-form");
  const input = document.getElementById("login-token");
  document.getElementById("login-error").textContent = reason && token !== undefined ? reason : "";
  signingIn = new Promise((resolve) => {
    form.onsubmit = (e) => {
      e.preventDefault();
      token = input.value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      dialog.close();
      signingIn = null;
      resolve();
    };
  });
  if (!dialog.open) dialog.showModal();
  input.focus();
  return signingIn;
}

/// Ask before doing something that moves or changes data.
export function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.onclose = () => resolve(dialog.returnValue === "ok");
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

/// `el("td", {class: "num"}, "text", child)`: an element with attributes, text and children.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/// A table with a caption, a header row and one row per item (cells from `row(item)`).
export function table(caption, headers, items, row, empty = "None.") {
  if (!items.length) return el("p", { class: "empty" }, empty);
  return el(
    "div",
    { class: "scroll" },
    el(
      "table",
      {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, items.map((i) => el("tr", {}, row(i).map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))))),
    ),
  );
}

/// A link to a console route.
export const link = (route, text) => el("a", { href: `#/${route}` }, text);

/// Milliseconds as the shortest readable duration.
export function ms(v) {
  if (v === null || v === undefined) return "–";
  // Whole milliseconds apart (timestamps): under a millisecond, not instant.
  if (v === 0) return "<1 ms";
  if (v < 1) return `${(v * 1000).toFixed(0)} µs`;
  if (v < 1000) return `${v.toFixed(v < 10 ? 2 : 0)} ms`;
  return `${(v / 1000).toFixed(2)} s`;
}

export function bytes(v) {
  if (!v) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const time = (msSinceEpoch) => (msSinceEpoch ? new Date(msSinceEpoch).toLocaleTimeString() : "–");

export const outcomeBadge = (outcome) => el("span", { class: `badge ${outcome}` }, outcome);

/// Pretty JSON when `text` is JSON, else the text.
export function pretty(text) {
  if (text === null || text === undefined) return "";
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

/// A one-line status message (errors in red), announced to screen readers.
export function status(text, isError = false) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

/// A button that runs `action`, disabled while it runs, reporting failures in the status line.
export function actionButton(label, action, attrs = {}) {
  const b = el("button", { type: "button", ...attrs }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await action(); } catch (e) { status(e.message, true); } finally { b.disabled = false; }
  });
  return b;
}

const routes = [
  [/^functions$/, functionsView],
  [/^functions\/([^/]+)$/, functionView],
  [/^logs$/, logsView],
  [/^queues$/, queuesView],
  [/^queues\/([^/]+)$/, queueView],
  [/^streams$/, streamsView],
  [/^schedules$/, schedulesView],
  [/^events$/, eventsView],
  [/^workflows$/, workflowsView],
  [/^workflows\/([^/]+)$/, workflowView],
  [/^executions\/([^/]+)$/, executionView],
];

let current = null;

/// Show the view the hash names; a view returns `{node, refresh?, stop?}`.
async function route() {
  const path = location.hash.replace(/^#\/?/, "") || "functions";
  const view = document.getElementById("view");
  current?.stop?.();
  current = null;
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", path.split("/")[0].startsWith(a.dataset.view.replace(/s$/, "")));
  }
  const found = routes.map(([re, make]) => [path.match(re), make]).find(([m]) => m);
  if (!found) {
    view.replaceChildren(el("h2", {}, "Not found"), el("p", {}, `No view called ${path}.`));
    return;
  }
  const [m, make] = found;
  const args = m.map((s) => decodeURIComponent(s ?? ""));
  try {
    const mine = await make(args);
    // A later navigation won the race: drop this one.
    if (location.hash.replace(/^#\/?/, "") !== path && location.hash) { mine.stop?.(); return; }
    current = mine;
    view.replaceChildren(mine.node);
    status("");
  } catch (e) {
    view.replaceChildren(el("h2", {}, "Could not load this view"), el("p", { class: "error" }, e.message));
  }
}

/// Re-render a view's content every `ms` while it is shown; returns the stop function.
export function every(ms, fn) {
  let stopped = false;
  let timer;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { status(e.message, true); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}

window.addEventListener("hashchange", route);
route();
// One log tail for the page's life, so the Logs view and each function's log lines have the
// lines from before they were opened.
tail.start();
