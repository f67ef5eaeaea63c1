// The operations console: plain JavaScript, no build step, no other host. Text is always set
// with textContent (never parsed as HTML), and every POST carries the page's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="console-csrf"]').content;
const main = document.getElementById("main");
let view = null; // what the live stream refreshes

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method === "POST") {
    opts.headers["X-Console-CSRF"] = csrf;
    if (opts.body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { data = { error: r.statusText }; }
  return { ok: r.ok, status: r.status, data };
}

function when(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

function show(...nodes) {
  main.replaceChildren(...nodes.flat());
}

// A folding JSON tree.
function tree(value, name, open) {
  const label = name === undefined ? [] : [el("span", { class: "key" }, JSON.stringify(name)), ": "];
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const brackets = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
    if (entries.length === 0) return el("div", { class: "leaf" }, ...label, brackets.join(""));
    const d = el("details", { open: open ? true : null },
      el("summary", {}, ...label, brackets[0], el("span", { class: "muted" }, ` ${entries.length} `), brackets[1]));
    for (const [k, v] of entries) d.append(tree(v, Array.isArray(value) ? undefined : k, false));
    return d;
  }
  const cls = typeof value === "string" ? "str" : "num";
  return el("div", { class: "leaf" }, ...label, el("span", { class: cls }, JSON.stringify(value)));
}

function jsonTree(value) {
  return el("div", { class: "tree" }, tree(value, undefined, true));
}

// ---- Overview

async function overview() {
  view = overview;
  const { ok, data } = await api("/console/api/overview");
  if (!ok) return show(el("p", { class: "error" }, data.error));
  const c = data.counters || {};
  const cards = el("div", { class: "cards", id: "counters" });
  const card = (k, n) => cards.append(el("div", { class: "card" }, el("div", { class: "n" }, n), el("div", { class: "k" }, k)));
  for (const [k, n] of Object.entries(c.requests || {})) card(`requests ${k}`, n);
  card("outbox pending", data.outbox ? data.outbox.pending : "?");
  card("dead letters", data.outbox ? data.outbox.dead : "?");
  card("Ultra refusals", c.sink_refusals || 0);
  for (const [k, n] of Object.entries(c.deliveries || {})) card(`deliveries ${k}`, n);
  const recent = data.recent || { minutes: 15, counters: {} };
  const rc = recent.counters || {};
  const recentCards = el("div", { class: "cards", id: "recent-counters" });
  const rcard = (k, n) => recentCards.append(el("div", { class: "card" }, el("div", { class: "n" }, n), el("div", { class: "k" }, k)));
  for (const [k, n] of Object.entries(rc.requests || {})) rcard(`requests ${k}`, n);
  rcard("dead letters", (rc.deliveries || {}).dead || 0);
  rcard("Ultra refusals", rc.sink_refusals || 0);
  for (const [k, n] of Object.entries(rc.deliveries || {})) rcard(`deliveries ${k}`, n);
  const flows = el("table", { id: "flows" },
    el("tr", {}, ["flow", "role", "listen", "subscriber", "actions", "signatures"].map(h => el("th", {}, h))),
    data.set.flows.map(f => el("tr", {},
      el("td", {}, f.name), el("td", {}, f.role), el("td", { class: "mono" }, f.listen + f.base_path),
      el("td", {}, f.subscriber_id), el("td", {}, f.actions.join(", ")),
      el("td", {}, f.verify_signatures ? "verified" : "not checked"))));
  const reload = el("div", { id: "reload" });
  const r = data.last_reload;
  if (r) {
    reload.append(el("p", {}, `Last reload ${r.at} (${r.trigger}): `,
      el("span", { class: r.outcome === "rejected" ? "bad" : "ok", id: "reload-outcome" }, r.outcome)));
    for (const d of r.diagnostics || []) reload.append(diagnostic(d));
  } else {
    reload.append(el("p", { class: "muted" }, "No reload since start."));
  }
  const button = el("button", { class: "primary", id: "reload-button", onclick: async () => {
    button.disabled = true;
    await api("/console/api/reload", { method: "POST" });
    overview();
  } }, "Reload flows");
  show(el("h2", {}, "Overview"), el("h3", {}, "Since start"), cards,
    el("h3", {}, `Last ${recent.minutes} minutes (this process)`), recentCards,
    el("h3", {}, "Serving set"),
    el("p", {}, "version ", el("code", { id: "set-hash" }, data.set.hash), ` loaded ${data.set.loaded_at}`),
    flows, el("h3", {}, "Reload"), reload, button);
}

function diagnostic(d) {
  const where = `${d.file}${d.line ? ":" + d.line : ""}${d.col ? ":" + d.col : ""}`;
  return el("div", { class: "diagnostic" }, `${where}: ${d.message}${d.yaml_path ? " (at " + d.yaml_path + ")" : ""}${d.hint ? " — " + d.hint : ""}`);
}

// ---- Transactions

const filters = { transaction_id: "", order_id: "", subscriber: "", action: "", outcome: "", from: "", to: "" };

async function transactions() {
  view = transactions;
  const form = el("form", { class: "filters", id: "filters", onsubmit: (e) => {
    e.preventDefault();
    for (const k of Object.keys(filters)) filters[k] = form.elements[k].value;
    transactions();
  } });
  const field = (name, label, type) => el("label", {}, label,
    el("input", { name, type: type || "text", value: filters[name] }));
  form.append(field("transaction_id", "transaction id"), field("order_id", "order id (Beckn or ERP)"),
    field("subscriber", "subscriber"), field("action", "action"),
    el("label", {}, "outcome", el("select", { name: "outcome" },
      ["", "done", "running", "pending", "dead", "nack"].map(o => el("option", { value: o, selected: o === filters.outcome }, o || "any")))),
    field("from", "from", "datetime-local"), field("to", "to", "datetime-local"),
    el("button", { type: "submit" }, "Filter"));
  const q = new URLSearchParams(filters).toString();
  const { ok, data } = await api(`/console/api/transactions?${q}`);
  if (!ok) return show(el("h2", {}, "Transactions"), form, el("p", { class: "error" }, data.error));
  const table = el("table", { id: "transactions" },
    el("tr", {}, ["updated", "flow", "transaction", "role", "subscriber", "order", "last action", "messages", "outcome"].map(h => el("th", {}, h))),
    data.transactions.map(t => el("tr", { class: "link", "data-tx": t.transaction_id, "data-flow": t.flow,
      onclick: () => { location.hash = `#tx/${encodeURIComponent(t.flow)}/${encodeURIComponent(t.transaction_id)}`; } },
      el("td", {}, when(t.updated_at)), el("td", {}, t.flow), el("td", { class: "mono" }, t.transaction_id),
      el("td", {}, t.role), el("td", {}, t.counterpart || ""), el("td", {}, t.order_id || ""),
      el("td", {}, t.last_action || ""), el("td", {}, t.messages),
      el("td", {}, el("span", { class: `badge ${t.outcome === "dead" || t.outcome === "nack" ? "bad" : t.outcome === "done" ? "ok" : "warn"}` },
        t.outcome === "nack" && t.nack_code ? `nack ${t.nack_code}` : t.outcome)))));
  show(el("h2", {}, "Transactions"), form, table,
    data.transactions.length ? null : el("p", { class: "muted" }, "No transaction matches."));
}

// ---- One transaction's timeline

async function timeline(flow, tx) {
  view = () => timeline(flow, tx);
  const { ok, data } = await api(`/console/api/transactions/${encodeURIComponent(flow)}/${encodeURIComponent(tx)}`);
  if (!ok) return show(el("p", { class: "error" }, data.error));
  const list = el("div", { id: "timeline" });
  for (const e of data.entries) {
    const head = el("div", { class: "head" },
      el("span", { class: "muted mono" }, when(e.at)),
      el("strong", {}, e.kind === "received" ? "⇤ received" : e.kind === "sent" ? "⇥ sent" : e.kind === "sink_update" ? "→ order sink" : e.kind === "calls" ? "⇥ relayed" : "queued"),
      e.action ? el("code", { class: "action" }, e.action) : null,
      e.message_id ? el("span", { class: "muted mono" }, e.message_id) : null,
      e.ack ? el("span", { class: `badge ${String(e.ack).startsWith("ACK") ? "ok" : "bad"}`, "data-ack": e.ack }, e.ack + (e.code ? " " + e.code : "")) : null,
      e.took_ms !== undefined && e.took_ms !== null ? el("span", { class: "muted" }, `answered in ${e.took_ms} ms`) : null,
      e.order_id ? el("span", {}, `order ${e.order_id} → ${e.state}`) : null);
    const entry = el("div", { class: `entry ${e.kind}`, "data-action": e.action || e.state || "" }, head);
    if (e.signature) entry.append(el("div", { class: "muted" }, "signature: " + e.signature));
    if (e.trace_id) entry.append(el("div", { class: "muted" }, "trace ", el("code", { class: "trace-id" }, e.trace_id)));
    if (e.calls && e.calls.length) {
      entry.append(el("table", { class: "calls" }, e.calls.map(c => c.kind ? el("tr", {},
        el("td", {}, c.kind), el("td", {}, ""), el("td", { class: "mono" }, c.path),
        el("td", { class: c.failure ? "bad" : "ok" }, c.failure || "ok"),
        el("td", { class: "muted" }, `+${c.at_ms} ms, took ${c.took_ms} ms`)) : el("tr", {},
        el("td", {}, c.step), el("td", {}, c.backend), el("td", { class: "mono" }, `${c.method} ${c.path}`),
        el("td", { class: c.failure ? "bad" : "ok" }, c.status !== null ? String(c.status) : c.failure),
        el("td", { class: "muted" }, `+${c.at_ms} ms, took ${c.took_ms} ms`)))));
    }
    if (e.nacked) {
      entry.append(el("div", { class: "bad nack" }, `refused (HTTP ${e.status}): ${e.error}`, e.path ? ` (at ${e.path})` : "",
        e.from ? ` from ${e.from}` : ""));
      if (e.body_cut) entry.append(el("div", { class: "muted" }, `payload cut short: ${e.body_bytes} bytes received`));
    }
    if (e.filed_as) entry.append(el("div", {}, `filed as ${e.filed_as} from ${e.from}`));
    if (e.recipient) entry.append(el("div", {}, `to ${e.recipient} at `, el("code", {}, e.url)));
    for (const d of e.deliveries || []) {
      entry.append(el("div", { class: "delivery" },
        `delivery #${d.id} (${d.kind}) to `, el("code", {}, d.url), `: `,
        el("span", { class: d.state === "delivered" ? "ok" : d.state === "dead" ? "bad" : "warn" }, d.state),
        `, ${d.attempts} attempt(s)`,
        d.took_ms !== null ? `, ${d.took_ms} ms after queueing` : "",
        d.last_error ? el("div", { class: "bad" }, "last answer: " + d.last_error) : null));
    }
    if (e.answer && e.answer !== null) entry.append(el("div", {}, "answer:", jsonTree(e.answer)));
    if (e.body !== undefined) {
      const d = el("details", {}, el("summary", {}, "payload (personal data masked)"), jsonTree(e.body));
      entry.append(d);
    }
    list.append(entry);
  }
  show(el("p", {}, el("a", { href: "#transactions" }, "← transactions")),
    el("h2", {}, "Transaction ", el("code", {}, tx), ` (${flow})`), list);
}

// ---- Outbox and dead letters

async function outbox() {
  view = outbox;
  const { ok, data } = await api("/console/api/outbox");
  if (!ok) return show(el("p", { class: "error" }, data.error));
  const pending = el("table", { id: "pending" },
    el("tr", {}, ["#", "flow", "kind", "action", "transaction", "attempts", "next attempt", "last error"].map(h => el("th", {}, h))),
    data.pending.map(p => el("tr", {}, el("td", {}, p.id), el("td", {}, p.flow), el("td", {}, p.kind),
      el("td", {}, p.action), el("td", { class: "mono" }, p.transaction_id), el("td", {}, p.attempts),
      el("td", {}, when(p.next_attempt_at)), el("td", { class: "bad" }, p.last_error || ""))));
  const dead = el("table", { id: "dead" },
    el("tr", {}, ["#", "flow", "kind", "action", "transaction", "url", "attempts", "last error", ""].map(h => el("th", {}, h))),
    data.dead_letters.map(d => {
      const cell = el("td", {});
      const ask = (what, path) => {
        const yes = el("button", { class: "danger", id: `confirm-${what}-${d.id}`, onclick: async () => {
          const r = await api(path, { method: "POST" });
          if (!r.ok) cell.append(el("div", { class: "error" }, r.data.error));
          outbox();
        } }, `Yes, ${what} #${d.id}`);
        const no = el("button", { onclick: () => outbox() }, "Cancel");
        cell.replaceChildren(el("span", {}, `${what} #${d.id}? `), yes, " ", no);
      };
      cell.append(
        el("button", { id: `retry-${d.id}`, onclick: () => ask("retry", `/console/api/outbox/${d.id}/retry`) }, "Retry"), " ",
        el("button", { class: "danger", id: `drop-${d.id}`, onclick: () => ask("drop", `/console/api/outbox/${d.id}/drop`) }, "Drop"));
      return el("tr", { "data-id": d.id }, el("td", {}, d.id), el("td", {}, d.flow), el("td", {}, d.kind),
        el("td", {}, d.action), el("td", { class: "mono" }, d.transaction_id), el("td", { class: "mono" }, d.url),
        el("td", {}, d.attempts), el("td", { class: "bad" }, d.last_error || ""), cell);
    }));
  show(el("h2", {}, "Outbox"),
    el("p", {}, `${data.counts.pending} pending, ${data.counts.dead} dead`),
    el("h3", {}, "Pending"), pending, el("h3", {}, "Dead letters"), dead);
}

// ---- Mapping playground

const play = { flow: "", action: "", request: "", fixtures: "{}", transaction: "", path: "", result: null };
let playTimer = null;

async function playground() {
  view = null; // typing must not be interrupted by live refreshes
  const { ok, data } = await api("/console/api/playground/files");
  if (!ok) return show(el("p", { class: "error" }, data.error));
  if (!play.flow && data.flows.length) { play.flow = data.flows[0].name; play.action = data.flows[0].actions[0]; }
  if (!play.request) play.request = JSON.stringify({ context: {}, message: {} }, null, 2);
  const actionsOf = (name) => (data.flows.find(f => f.name === name) || { actions: [] }).actions;
  const flowSel = el("select", { id: "play-flow", onchange: () => {
    play.flow = flowSel.value; play.action = actionsOf(play.flow)[0] || ""; playground();
  } }, data.flows.map(f => el("option", { value: f.name, selected: f.name === play.flow }, f.name)));
  const actionSel = el("select", { id: "play-action", onchange: () => { play.action = actionSel.value; schedule(); } },
    actionsOf(play.flow).map(a => el("option", { value: a, selected: a === play.action }, a)));
  const fileSel = el("select", { id: "play-file" }, el("option", { value: "" }, "(a test file)"),
    data.files.map(f => el("option", { value: f, selected: f === play.path }, f)));
  const openBtn = el("button", { id: "play-open", onclick: async () => {
    if (!fileSel.value) return;
    const r = await api(`/console/api/playground/open?path=${encodeURIComponent(fileSel.value)}`);
    if (!r.ok) { out.replaceChildren(el("div", { class: "error" }, r.data.error)); return; }
    play.path = fileSel.value; play.flow = r.data.flow; play.action = r.data.action;
    play.request = JSON.stringify(r.data.request, null, 2);
    play.fixtures = JSON.stringify(r.data.fixtures || {}, null, 2);
    play.transaction = r.data.transaction ? JSON.stringify(r.data.transaction, null, 2) : "";
    playground();
  } }, "Open");
  const area = (id, key) => el("textarea", { id, spellcheck: "false", oninput: (e) => { play[key] = e.target.value; schedule(); } }, play[key]);
  const savePath = el("input", { id: "play-save-path", value: play.path || "new-case.yaml", size: 30 });
  const saveNote = el("span", { id: "play-save-note" });
  const saveBtn = el("button", { id: "play-save", onclick: async () => {
    const c = caseOf(saveNote);
    if (!c) return;
    c.path = savePath.value;
    const r = await api("/console/api/playground/save", { method: "POST", body: c });
    saveNote.textContent = r.ok ? `saved ${r.data.saved}` : r.data.error;
    saveNote.className = r.ok ? "ok" : "bad";
  } }, "Save as mapping test");
  const out = el("div", { id: "play-out" });
  show(el("h2", {}, "Mapping playground"),
    el("div", { class: "row" }, "flow ", flowSel, " action ", actionSel, " ", fileSel, openBtn),
    el("div", { class: "play" },
      el("div", {},
        el("h3", {}, "Request"), area("play-request", "request"),
        el("h3", {}, "Backend fixtures (step name → answer)"), area("play-fixtures", "fixtures"),
        el("h3", {}, "Transaction memory (optional)"), area("play-transaction", "transaction"),
        el("div", { class: "row" }, savePath, saveBtn, saveNote)),
      el("div", {}, el("h3", {}, "Rendered"), out)));
  schedule(0);
}

function caseOf(problem) {
  try {
    return {
      flow: play.flow, action: play.action,
      request: JSON.parse(play.request),
      fixtures: play.fixtures.trim() ? JSON.parse(play.fixtures) : null,
      transaction: play.transaction.trim() ? JSON.parse(play.transaction) : null,
    };
  } catch (e) {
    problem.replaceChildren(el("div", { class: "error" }, "not JSON yet: " + e.message));
    return null;
  }
}

function schedule(ms) {
  clearTimeout(playTimer);
  playTimer = setTimeout(runPlay, ms === undefined ? 350 : ms);
}

async function runPlay() {
  const out = document.getElementById("play-out");
  if (!out) return;
  const c = caseOf(out);
  if (!c) return;
  const r = await api("/console/api/playground/render", { method: "POST", body: c });
  if (!r.ok) { out.replaceChildren(el("div", { class: "error" }, r.data.error)); return; }
  const d = r.data;
  const parts = [];
  if (d.error) parts.push(el("div", { class: "error", id: "play-error" }, d.error));
  if (d.missing_fixtures.length) parts.push(el("div", { class: "warn" }, "no fixture for: " + d.missing_fixtures.join(", ")));
  const vlist = (title, vs) => vs.length ? el("div", { class: "violations" }, el("strong", {}, title),
    vs.map(v => el("div", { class: "diagnostic" }, `${v.path || "body"}: ${v.message}`))) : null;
  parts.push(vlist("The request would be NACKed:", d.request_violations));
  parts.push(vlist("The callback breaks the rules:", d.callback_violations));
  if (!d.request_violations.length && !d.callback_violations.length && !d.error) parts.push(el("div", { class: "ok" }, "valid"));
  parts.push(el("div", { class: "muted" }, d.reply ? "reply: " + d.reply : ""));
  parts.push(el("table", { id: "play-calls" }, d.calls.map(c => el("tr", {}, el("td", {}, c.step), el("td", {}, `${c.method} ${c.path}`), el("td", {}, c.status)))));
  parts.push(jsonTree(d.callback));
  parts.push(el("h3", {}, "Which line wrote each value"));
  parts.push(el("table", { id: "play-written" },
    el("tr", {}, ["path", "value", "written at"].map(h => el("th", {}, h))),
    d.written.map(w => el("tr", { "data-path": w.path }, el("td", { class: "mono" }, w.path),
      el("td", { class: "mono value" }, JSON.stringify(w.value)), el("td", { class: "mono line" }, w.line || "")))));
  out.replaceChildren(...parts.filter(Boolean));
}

// ---- Routing and live updates

function route() {
  const h = location.hash || "#overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", h.startsWith(a.getAttribute("href")));
  if (h.startsWith("#tx/")) {
    const [, flow, tx] = h.split("/");
    return timeline(decodeURIComponent(flow), decodeURIComponent(tx));
  }
  if (h === "#transactions") return transactions();
  if (h === "#outbox") return outbox();
  if (h === "#playground") return playground();
  return overview();
}

window.addEventListener("hashchange", route);
route();

let refreshTimer = null;
const events = new EventSource("/console/api/events");
events.addEventListener("change", () => {
  document.getElementById("live").classList.add("on");
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (view) view(); }, 200);
});
events.addEventListener("error", () => document.getElementById("live").classList.remove("on"));
