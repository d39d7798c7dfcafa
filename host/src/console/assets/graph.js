// A workflow definition drawn as its state machine, in SVG: states in rows by their distance
// from StartAt (reading order within a row), next/default/choice edges solid, catch edges
// dashed, Parallel states as boxes holding their branches side by side. Each state is coloured
// by what an execution's history says happened to it.

const NS = "http://www.w3.org/2000/svg";
const W = 176, H = 46, GAP_X = 28, GAP_Y = 50, PAD = 14, HEAD = 46;

function svg(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

/// Sizes and positions for a graph and (recursively) its Parallel branches.
function layout(graph) {
  const byName = new Map(graph.states.map((s) => [s.name, s]));
  const level = new Map();
  const queue = [graph.startAt];
  level.set(graph.startAt, 0);
  while (queue.length) {
    const name = queue.shift();
    for (const e of byName.get(name)?.edges ?? []) {
      if (!level.has(e.to) && byName.has(e.to)) { level.set(e.to, level.get(name) + 1); queue.push(e.to); }
    }
  }
  let deepest = Math.max(0, ...level.values());
  for (const s of graph.states) if (!level.has(s.name)) level.set(s.name, ++deepest);
  const sized = graph.states.map((s) => {
    if (s.kind === "Parallel" && s.branches?.length) {
      const lanes = s.branches.map(layout);
      const w = lanes.reduce((a, l) => a + l.width, 0) + GAP_X * (lanes.length - 1) + 2 * PAD;
      const h = Math.max(...lanes.map((l) => l.height)) + HEAD + PAD;
      return { state: s, lanes, w: Math.max(w, W), h };
    }
    return { state: s, w: W, h: H };
  });
  const rows = [];
  for (const n of sized) (rows[level.get(n.state.name)] ??= []).push(n);
  const width = Math.max(W, ...rows.filter(Boolean).map((r) => r.reduce((a, n) => a + n.w, 0) + GAP_X * (r.length - 1)));
  let y = 0;
  const place = new Map();
  for (const row of rows.filter(Boolean)) {
    const rowW = row.reduce((a, n) => a + n.w, 0) + GAP_X * (row.length - 1);
    let x = (width - rowW) / 2;
    const rowH = Math.max(...row.map((n) => n.h));
    for (const n of row) {
      place.set(n.state.name, { ...n, x, y });
      x += n.w + GAP_X;
    }
    y += rowH + GAP_Y;
  }
  return { graph, place, width, height: y - GAP_Y };
}

function edgePath(a, b) {
  const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y;
  if (y2 > y1) {
    const m = (y1 + y2) / 2;
    return [`M${x1},${y1} C${x1},${m} ${x2},${m} ${x2},${y2}`, (x1 + x2) / 2, m];
  }
  // Back or sideways edge: around the right-hand side.
  const xs = Math.max(a.x + a.w, b.x + b.w) + 24;
  return [`M${a.x + a.w},${a.y + a.h / 2} C${xs},${a.y + a.h / 2} ${xs},${b.y + b.h / 2} ${b.x + b.w},${b.y + b.h / 2}`, xs, (a.y + b.y + b.h) / 2];
}

/// Draw `lay` at (ox, oy) into `group`; `outcome(name, branchIndex path)` colours states.
function draw(group, lay, ox, oy, paint, onPick, path) {
  for (const [, a] of lay.place) {
    for (const e of a.state.edges) {
      const b = lay.place.get(e.to);
      if (!b) continue;
      const [d, lx, ly] = edgePath({ ...a, x: a.x + ox, y: a.y + oy }, { ...b, x: b.x + ox, y: b.y + oy });
      group.append(svg("path", { d, class: `edge ${e.kind}`, "marker-end": "url(#arrow)" }));
      if (e.label) group.append(svg("text", { x: lx + 4, y: ly - 3, class: "edge-label" }, e.label.length > 28 ? e.label.slice(0, 27) + "…" : e.label));
    }
  }
  for (const [name, n] of lay.place) {
    const x = n.x + ox, y = n.y + oy;
    const outcome = paint(name, path);
    const g = svg("g", {
      class: `state ${n.state.kind.toLowerCase()} ${outcome ?? "unvisited"}`,
      "data-state": name, "data-outcome": outcome ?? "unvisited", tabindex: 0, role: "button",
      "aria-label": `${name} (${n.state.kind}): ${outcome ?? "not visited"}`,
    });
    g.append(svg("rect", { x, y, width: n.w, height: n.h, rx: 8 }));
    g.append(svg("text", { x: x + 10, y: y + 19, class: "name" }, name));
    g.append(svg("text", { x: x + 10, y: y + 36, class: "kind" }, n.state.resource ? `${n.state.kind} · ${n.state.resource}` : n.state.kind));
    const pick = () => onPick(name, path);
    g.addEventListener("click", pick);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
    group.append(g);
    if (n.lanes) {
      let lx = x + PAD;
      n.lanes.forEach((lane, i) => {
        draw(group, lane, lx, y + HEAD, paint, onPick, [...path, name, i]);
        lx += lane.width + GAP_X;
      });
    }
  }
}

/// An SVG of `graph` with states coloured by `paint(name, path)`; `onPick(name, path)` on click.
export function drawGraph(graph, paint = () => null, onPick = () => {}) {
  const lay = layout(graph);
  const margin = 40;
  const root = svg("svg", {
    class: "graph", role: "group", "aria-label": "state machine",
    viewBox: `0 0 ${lay.width + margin * 2} ${lay.height + margin}`, width: lay.width + margin * 2,
  });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  root.append(defs);
  const g = svg("g");
  draw(g, lay, margin, margin / 2, paint, onPick, []);
  root.append(g);
  return root;
}

/// What happened to each state in `history`: `failed`, `succeeded`, `running`, or
/// `compensated` for states run after a failure was caught (the saga's undo steps).
export function outcomes(history) {
  const out = new Map();
  let caught = false;
  let prev = null;
  for (const step of [...history].sort((a, b) => a.seq - b.seq)) {
    if (prev?.error && prev.state !== step.state) caught = true;
    let o;
    if (step.endedAt === null || step.endedAt === undefined) o = "running";
    else if (step.error) o = "failed";
    else o = caught && step.kind !== "Succeed" ? "compensated" : "succeeded";
    out.set(step.state, o);
    prev = step;
  }
  return out;
}
