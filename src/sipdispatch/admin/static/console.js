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
  document.getElementById("cluster-up").textContent = cluster.up
    ? "connected to Redis" : "Redis unreachable: this node runs alone";
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
  connect();
}

start();
