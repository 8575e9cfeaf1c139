// sipdispatch web console: follows the proxy through Server-Sent Events and acts
// through POST /console/action. No framework, no build step.
"use strict";

const STATE_NAMES = { A: "active", T: "trying", I: "inactive", D: "disabled" };
const PROBE_NAMES = { P: "probing", X: "not probing", N: "never pinged" };
const SVG = "http://www.w3.org/2000/svg";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const csrf = meta("csrf-token");
const writable = meta("console-mode") === "read-write";
let shownKeys = "";
let lastEvents = "";
let windowText = "60 s";
const HISTORY = 120;  // latency points charted (the server keeps as many)
const charts = new Map();  // row key -> latency points

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showMessage(text, ok) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = "message " + (ok ? "ok" : "error");
  box.hidden = false;
}

function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function act(body, question) {
  if (question && !(await confirmAction(question))) return;
  let reply;
  try {
    const response = await fetch("/console/action", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    reply = await response.json();
  } catch (error) {
    showMessage(`${body.action} failed: ${error}`, false);
    return;
  }
  if (reply.ok) showMessage(reply.message, !reply.failed);
  else showMessage(reply.error, false);
}

function stateBadge(flags) {
  const span = el("span", { class: `badge s-${flags[0]}`, text: flags });
  const label = `${STATE_NAMES[flags[0]] || flags[0]}, ${PROBE_NAMES[flags[1]] || flags[1]}`;
  span.title = label;
  span.setAttribute("aria-label", `${flags}: ${label}`);
  return span;
}

function sparkline(history) {
  const width = 90, height = 24;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const values = history.filter((v) => v !== null);
  const title = document.createElementNS(SVG, "title");
  title.textContent = values.length
    ? `latency estimate over the last ${history.length} s: ` +
      `${Math.min(...values)}–${Math.max(...values)} ms`
    : "no latency sample yet";
  svg.append(title);
  if (!values.length) return svg;
  const top = Math.max(...values, 1);
  const step = width / Math.max(history.length - 1, 1);
  let points = [];
  const flush = () => {
    if (points.length) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", points.join(" "));
      svg.append(line);
    }
    points = [];
  };
  history.forEach((value, i) => {
    if (value === null) { flush(); return; }
    const y = height - 2 - (value / top) * (height - 4);
    points.push(`${(i * step).toFixed(1)},${y.toFixed(1)}`);
  });
  if (points.length === 1) points.push(points[0]);
  flush();
  return svg;
}

function rowKey(setId, uri) { return `${setId} ${uri}`; }

function buildTables(sets) {
  const box = document.getElementById("sets");
  box.replaceChildren();
  if (!sets.length) {
    box.append(el("p", { class: "note", text: "No destination sets are loaded." }));
    return;
  }
  for (const set of sets) {
    const headings = ["State", "Destination", "Priority", "Weight", "Attrs", "Description",
      "Latency", "In progress", "Calls/s", `Last ${windowText}`, "Set-up p50/p90"];
    const hints = { "In progress": "awaiting a final response",
      [`Last ${windowText}`]: "answered / rejected / timed out",
      "Set-up p50/p90": "INVITE to final response" };
    if (writable) headings.push("Actions");
    const head = el("tr", {}, ...headings.map((h) => el("th", { scope: "col", text: h })));
    for (const th of head.children) {
      const hint = hints[th.textContent];
      if (hint) th.append(el("span", { class: "hint", text: hint }));
    }
    const body = el("tbody");
    for (const dest of set.dests) {
      const tr = el("tr", { "data-key": rowKey(set.id, dest.uri) });
      tr.dataset.set = set.id;
      tr.dataset.uri = dest.uri;
      for (const name of ["state", "uri", "priority", "weight", "attrs", "description",
        "latency", "in_progress", "cps", "recent", "setup"]) {
        const numeric = ["priority", "weight", "in_progress", "cps", "recent", "setup"]
          .includes(name);
        tr.append(el("td", { class: `${name}${numeric ? " num" : ""}` }));
      }
      if (writable) {
        const probe = el("button", { type: "button", class: "probe", text: "Probe" });
        probe.addEventListener("click", () => act({ action: "probe", set: set.id, uri: dest.uri }));
        probe.setAttribute("aria-label", `Probe ${dest.uri} now`);
        const drain = el("button", { type: "button", class: "drain", text: "Drain" });
        drain.addEventListener("click", () => act(
          { action: "drain", set: set.id, uri: dest.uri },
          `Drain ${dest.uri} in set ${set.id}? It gets no new calls (DX) until enabled.`));
        const enable = el("button", { type: "button", class: "enable", text: "Enable" });
        enable.addEventListener("click", () => act(
          { action: "enable", set: set.id, uri: dest.uri },
          `Enable ${dest.uri} in set ${set.id} (AP)?`));
        const remove = el("button", { type: "button", class: "remove", text: "Remove" });
        remove.addEventListener("click", () => act(
          { action: "remove", set: set.id, uri: dest.uri },
          `Remove ${dest.uri} from set ${set.id}? It is deleted from the store, then the ` +
          "list is reloaded."));
        drain.setAttribute("aria-label", `Drain ${dest.uri}`);
        enable.setAttribute("aria-label", `Enable ${dest.uri}`);
        remove.setAttribute("aria-label", `Remove ${dest.uri}`);
        tr.append(el("td", { class: "actions" }, probe, drain, enable, remove));
      }
      body.append(tr);
    }
    const table = el("table", { id: `set-${set.id}`, "aria-label": `Set ${set.id}` },
      el("thead", {}, head), body);
    box.append(el("h3", { text: `Set ${set.id}` }), table);
  }
}

function fill(sets) {
  for (const set of sets) {
    for (const dest of set.dests) {
      const tr = document.querySelector(`tr[data-key="${CSS.escape(rowKey(set.id, dest.uri))}"]`);
      if (!tr) continue;
      tr.dataset.flags = dest.flags;
      const cell = (name) => tr.querySelector(`td.${name}`);
      if (cell("state").textContent !== dest.flags) cell("state").replaceChildren(stateBadge(dest.flags));
      cell("uri").textContent = dest.uri;
      cell("uri").title = dest.address;
      cell("priority").textContent = dest.priority;
      cell("weight").textContent = dest.weight;
      cell("attrs").textContent = dest.attrs;
      cell("description").textContent = dest.description;
      const lat = dest.latency;
      const text = lat.samples ? `${lat.est} ms` : "–";
      const label = el("span", { text });
      label.title = `average ${lat.avg} ms, max ${lat.max} ms, ${lat.timeouts} timeouts`;
      const key = rowKey(set.id, dest.uri);
      let history = dest.history;
      if (!history) {
        // Only the points since the last snapshot: added to what the page has.
        history = (charts.get(key) || []).concat(dest.tail || []).slice(-HISTORY);
      }
      charts.set(key, history);
      cell("latency").replaceChildren(el("div", { class: "lat" }, label, sparkline(history)));
      cell("in_progress").textContent = dest.in_progress;
      cell("cps").textContent = dest.cps.toFixed(1);
      const r = dest.recent;
      cell("recent").replaceChildren(el("span", { class: "answered", text: r.answered }), " / ",
        el("span", { class: "rejected", text: r.rejected }), " / ",
        el("span", { class: "timeout", text: r.timeout }));
      cell("recent").title = `over the last ${windowText}: ${r.answered} answered, ` +
        `${r.rejected} rejected, ${r.timeout} timed out`;
      cell("setup").textContent = r.setup ? `${r.setup.p50} / ${r.setup.p90} ms` : "–";
      cell("setup").title = r.setup
        ? `INVITE to final response, median and 90th percentile of the last ${r.setup.n} ` +
          `answered or rejected calls (${windowText})`
        : `no call answered or rejected over the last ${windowText}`;
      const drain = tr.querySelector("button.drain");
      if (drain) drain.disabled = dest.flags[0] === "D";
    }
  }
}

function showEvents(events) {
  const key = JSON.stringify(events);
  if (key === lastEvents) return;
  lastEvents = key;
  const list = document.getElementById("events");
  list.replaceChildren();
  if (!events.length) list.append(el("li", { class: "note", text: "No state change yet." }));
  for (const e of events) {
    const when = new Date(e.at * 1000);
    list.append(el("li", {},
      el("time", { datetime: when.toISOString(), text: when.toTimeString().slice(0, 8) }),
      `set ${e.set} ${e.uri}: `, stateBadge(e.old), " → ", stateBadge(e.new),
      ` ${e.reason} `, el("span", { class: "origin", text: `(${e.origin})` })));
  }
}

function showCluster(cluster, now) {
  const box = document.getElementById("cluster");
  box.hidden = !cluster;
  if (!cluster) return;
  const via = cluster.sentinel_master ? ` (Sentinel master ${cluster.sentinel_master})` : "";
  document.getElementById("cluster-up").textContent = cluster.up
    ? `connected to Redis at ${cluster.redis}${via}`
    : `Redis unreachable (last at ${cluster.redis || "none"}${via}): this node runs alone`;
  const body = document.querySelector("#cluster tbody");
  body.replaceChildren(...cluster.nodes.map((n) => {
    const probes = n.probes.length
      ? el("ul", { class: "probes" }, ...n.probes.map((uri) => el("li", { text: uri })))
      : el("span", { class: "note", text: "none" });
    return el("tr", { "data-node": n.id, class: n.self ? "self" : "" },
      el("td", { class: "node", text: n.id }),
      el("td", { class: "address", text: n.address }),
      el("td", { class: "seen num", text: `${Math.max(0, now - n.last_seen).toFixed(0)} s ago` }),
      el("td", { class: "is-self", text: n.self ? "this node" : "" }),
      el("td", { class: "node-probes" }, probes));
  }));
}

function render(snapshot) {
  windowText = `${snapshot.window} s`;
  const keys = snapshot.sets.map((s) => s.dests.map((d) => rowKey(s.id, d.uri)).join("|")).join("/");
  if (keys !== shownKeys) {
    // The list changed (reload, add, remove): rebuild; otherwise update in place so
    // that focus and an open dialog stay where they are.
    const focused = document.activeElement;
    const focusKey = focused && focused.closest("tr") ? focused.closest("tr").dataset.key : null;
    const focusClass = focused ? focused.className : null;
    buildTables(snapshot.sets);
    shownKeys = keys;
    if (focusKey) {
      const again = document.querySelector(
        `tr[data-key="${CSS.escape(focusKey)}"] button.${CSS.escape(focusClass)}`);
      if (again) again.focus();
    }
  }
  fill(snapshot.sets);
  showEvents(snapshot.events);
  showCluster(snapshot.cluster, snapshot.time);
  document.body.dataset.updated = snapshot.time;
}

// -- failed calls, their ladders and the captures ------------------------------------------

let shownCalls = "";
let shownCaptures = "";
let ladderCall = null;

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function clock(seconds) {
  return new Date(seconds * 1000).toTimeString().slice(0, 8);
}

async function refreshCalls() {
  let calls;
  try { calls = await getJson("/console/calls"); } catch (error) { return; }
  const key = JSON.stringify(calls);
  if (key === shownCalls) return;
  shownCalls = key;
  const body = document.querySelector("#calls tbody");
  if (!calls.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "note",
      text: "No failed call yet." })));
    return;
  }
  body.replaceChildren(...calls.map((c) => {
    const show = el("button", { type: "button", class: "show-ladder", text: c.call_id,
      title: `the ${c.messages} messages of this call as a ladder` });
    show.addEventListener("click", () => showLadder(c.call_id));
    const tried = c.attempts.map((a) =>
      `${a.destination} ${a.timeout ? "timeout" : a.status || "-"}`).join(", ");
    return el("tr", { "data-call": c.call_id },
      el("td", { class: "num", text: clock(c.at) }),
      el("td", { class: "call-id" }, show),
      el("td", { class: "uri", text: c.ruri }),
      el("td", { class: "outcome", text: c.outcome }),
      el("td", { class: "num status", text: String(c.status) }),
      el("td", { class: "tried", text: tried }));
  }));
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function drawLadder(call) {
  const parties = [];
  for (const m of call.messages) {
    for (const where of [m.src, m.dst]) if (!parties.includes(where)) parties.push(where);
  }
  const column = 230, row = 30, top = 48;
  const width = Math.max(parties.length, 2) * column;
  const height = top + call.messages.length * row + 20;
  const svg = svgEl("svg", { class: "ladder-svg", width, height,
    viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `ladder of call ${call.call_id}` });
  const x = (where) => parties.indexOf(where) * column + column / 2;
  const first = call.messages[0];
  const role = (where) => {
    if (first && where === first.src) return "caller";
    if (first && where === first.dst) return "sipdispatch";
    const tried = call.attempts.find((a) => a.destination.includes(where));
    return tried ? tried.destination : "";
  };
  for (const where of parties) {
    const label = svgEl("text", { x: x(where), y: 14, "text-anchor": "middle", class: "party" });
    label.textContent = where;
    const sub = svgEl("text", { x: x(where), y: 28, "text-anchor": "middle", class: "role" });
    sub.textContent = role(where);
    svg.append(label, sub, svgEl("line", { x1: x(where), y1: 34, x2: x(where), y2: height,
      class: "lifeline" }));
  }
  const t0 = call.messages.length ? call.messages[0].at : 0;
  call.messages.forEach((m, index) => {
    const y = top + index * row + 14;
    const x1 = x(m.src), x2 = x(m.dst);
    const group = svgEl("g", { class: "msg", tabindex: "0", "data-index": String(index) });
    const failed = /^SIP\/2\.0 [3-6]/.test(m.first);
    group.append(svgEl("line", { x1, y1: y, x2, y2: y, class: failed ? "arrow failed" : "arrow" }));
    const dir = x2 > x1 ? -1 : 1;
    group.append(svgEl("polygon", { class: failed ? "head failed" : "head",
      points: `${x2},${y} ${x2 + dir * 8},${y - 4} ${x2 + dir * 8},${y + 4}` }));
    const label = svgEl("text", { x: (x1 + x2) / 2, y: y - 5, "text-anchor": "middle" });
    const what = m.first.startsWith("SIP/2.0 ") ? m.first.slice(8) : m.first.split(" ")[0];
    label.textContent = `${what} (+${Math.round((m.at - t0) * 1000)} ms, ${m.transport})`;
    const title = svgEl("title", {});
    title.textContent = `${m.first}\n${m.src} → ${m.dst}`;
    group.append(label, title);
    const pick = () => {
      document.getElementById("ladder-message").textContent = m.text;
      for (const g of svg.querySelectorAll("g.msg")) g.classList.remove("picked");
      group.classList.add("picked");
    };
    group.addEventListener("click", pick);
    group.addEventListener("keydown", (event) => { if (event.key === "Enter") pick(); });
    svg.append(group);
  });
  return svg;
}

async function showLadder(callId) {
  const box = document.getElementById("ladder");
  let call;
  try {
    call = await getJson(`/console/ladder?call_id=${encodeURIComponent(callId)}`);
  } catch (error) {
    showMessage(String(error.message || error), false);
    return;
  }
  ladderCall = callId;
  box.hidden = false;
  document.getElementById("ladder-title").textContent =
    `${call.call_id}: ${call.outcome} ${call.status} (${call.messages.length} messages)`;
  document.getElementById("ladder-drawing").replaceChildren(drawLadder(call));
  document.getElementById("ladder-message").textContent =
    call.messages.length ? "Choose a message to read it whole." : "No message was kept.";
}

function fileSize(bytes) {
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

async function refreshCaptures() {
  let captures;
  try { captures = await getJson("/console/captures"); } catch (error) { return; }
  const key = JSON.stringify(captures);
  if (key === shownCaptures) return;
  shownCaptures = key;
  const body = document.querySelector("#captures tbody");
  if (!captures.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "note",
      text: "No capture yet." })));
    return;
  }
  body.replaceChildren(...captures.map((c) => {
    const link = el("a", { href: `/console/capture/${encodeURIComponent(c.NAME)}.pcap`,
      download: `${c.NAME}.pcap`, text: `${c.NAME}.pcap` });
    const state = el("td", { class: "state", text: c.STATE });
    if (c.STATE === "running" && writable) {
      const stop = el("button", { type: "button", class: "write", text: "Stop" });
      stop.addEventListener("click", () => act({ action: "capture_stop", name: c.NAME })
        .then(refreshCaptures));
      state.append(" ", stop);
    }
    return el("tr", { "data-capture": c.NAME },
      el("td", { text: c.NAME }),
      el("td", { text: c.FILTER || "" }),
      state,
      el("td", { class: "num", text: fileSize(c.BYTES) }),
      el("td", {}, link));
  }));
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/console/events");
  source.addEventListener("snapshot", (event) => {
    status.textContent = "live";
    status.className = "connection online";
    render(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    status.textContent = "disconnected, retrying…";
    status.className = "connection offline";
  });
}

function start() {
  document.body.classList.toggle("read-only", !writable);
  document.body.classList.toggle("no-login", meta("console-login") !== "yes");
  document.getElementById("mode-note").hidden = writable;
  document.getElementById("reload").addEventListener("click", () => act(
    { action: "reload" },
    "Reload the destination list from the store? Destinations added here are dropped."));
  document.getElementById("add").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = {
      action: "add",
      set: Number(form.get("set")),
      uri: String(form.get("uri")).trim(),
      flags: Number(form.get("flags") || 0),
      priority: Number(form.get("priority") || 0),
      attrs: String(form.get("attrs") || ""),
      description: String(form.get("description") || ""),
    };
    act(body, `Add ${body.uri} to set ${body.set}? It is written to the store, then the ` +
      "list is reloaded.");
  });
  document.getElementById("logout").addEventListener("submit", async (event) => {
    event.preventDefault();
    await fetch("/console/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
    window.location.assign("/console/login");
  });
  document.getElementById("capture").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const seconds = String(form.get("seconds") || "").trim();
    act({ action: "capture_start", filter: String(form.get("filter") || "all").trim(),
      seconds: seconds ? Number(seconds) : null }).then(refreshCaptures);
  });
  document.getElementById("capture-stop").addEventListener("click", () =>
    act({ action: "capture_stop", name: "all" }).then(refreshCaptures));
  connect();
  refreshCalls();
  refreshCaptures();
  setInterval(refreshCalls, 3000);
  setInterval(refreshCaptures, 3000);
}

start();
