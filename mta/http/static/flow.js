// The flow page: subscribes to this server's event stream (and each peer server's, merged by
// time), draws the diagram, and drives the six steps: the form composes and formats (steps 1
// and 2) and submits (3), the servers relay and store (4), "fetch as Bob" retrieves (5) and
// shows the rendered message (6). A past message is replayed from the servers' held events.

import { basic, call, el, setToken, subscribe } from "./api.js";
import { Diagram, LANES } from "./diagram.js";
import { getLang, setLang, translate, word } from "./ui-text.js";

const $ = id => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { config: null, servers: [], pending: [], flushing: false, stops: [],
                seen: {}, waiting: [],  // per stream: the newest seq drawn; who waits for one
                drawn: { events: 0, ms: 0 } };  // events drawn and the time it took (tests)
let diagram;

const domainOf = address => address.trim().toLowerCase().split("@").pop();

// The base URL of the server that serves ``domain`` ("" is this one).
function serverFor(domain) {
  const found = state.servers.find(s => s.domains.includes(domain));
  return found ? found.url : "";
}

async function loadConfig() {
  const config = await call("/pages/config");
  state.servers = [{ url: "", domains: config.domains, stream: true }];
  const peers = [...config.peers, ...params.getAll("peer").map(url => ({ url }))];
  for (const peer of peers) {
    const url = peer.url.replace(/\/+$/, "");
    if (state.servers.some(s => s.url === url)) continue;
    let domains = peer.domains;
    if (!domains) {
      try { domains = (await call("/pages/config", { base: url })).domains; }
      catch (e) { message(`${url}: ${e.message}`, true); domains = []; }
    }
    state.servers.push({ url, domains, stream: !config.shared_bus });
  }
  return config;
}

function message(text, bad = false) {
  const node = $("message");
  node.textContent = text;
  node.className = bad ? "error" : "";
}

// -- the diagram's lanes ------------------------------------------------------------------------

function drawLanes() {
  const from = state.config.lab?.sender?.address ? domainOf(state.config.lab.sender.address)
    : state.servers[0].domains[0] || "";
  const to = state.config.lab?.recipient?.address ? domainOf(state.config.lab.recipient.address)
    : state.servers.find(s => s.url)?.domains[0] || "";
  $("lanes").replaceChildren(...LANES.map(lane =>
    el("div", { text: word(`lane.${lane}`, { from, to }) })));
  const svg = $("lifelines");
  svg.replaceChildren();
  LANES.forEach((_, i) => {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
    const x = `${((i + 0.5) * 100) / LANES.length}%`;
    for (const [k, v] of Object.entries({ x1: x, x2: x, y1: "0", y2: "100%" })) line.setAttribute(k, v);
    svg.append(line);
  });
}

// -- events: merged from every stream by time, drawn in batches -------------------------------------
// With several streams an event may arrive a little after a later one from another server:
// each batch waits MERGE_MS and is sorted by time, so the diagram shows them in the order
// they happened. With one stream the bus order is already right: one animation frame.
const MERGE_MS = 150;
// The fetch's own POP3 session reaches the page through a stream a moment after the fetch
// returns (a stream writes its events in batches, and several streams merge for MERGE_MS):
// step 6 waits until that stream has drawn the event the fetch's answer names, at most this.
const CATCH_UP_MS = 2000;

function receive(stream, kind, data) {
  let event;
  try { event = JSON.parse(data); } catch { return; }
  if (!event || !event.kind) return;
  state.pending.push({ stream, event });
  if (!state.flushing) {
    state.flushing = true;
    if (state.servers.filter(s => s.stream).length > 1) setTimeout(flush, MERGE_MS);
    else requestAnimationFrame(flush);
  }
}

function flush() {
  const started = performance.now();
  state.flushing = false;
  const batch = state.pending.sort((a, b) => a.event.time - b.event.time
                                             || a.event.seq - b.event.seq);
  state.pending = [];
  for (const { stream, event } of batch) {
    diagram.feed(event);
    state.seen[stream] = Math.max(state.seen[stream] || 0, event.seq);
  }
  state.drawn.events += batch.length;
  state.drawn.ms += performance.now() - started;
  state.waiting = state.waiting.filter(w => !w.check());
}

// Resolves once the stream carrying ``url``'s events has drawn event ``seq`` (or after
// CATCH_UP_MS: a stream that is down must not hold the page).
function drawnUpTo(url, seq) {
  const stream = state.servers.some(s => s.url === url && s.stream) ? url : "";
  return new Promise(resolve => {
    const waiter = { check: () => (state.seen[stream] || 0) >= seq && (resolve(), true) };
    if (waiter.check()) return;
    state.waiting.push(waiter);
    setTimeout(() => { state.waiting = state.waiting.filter(w => w !== waiter); resolve(); },
               CATCH_UP_MS);
  });
}

function connect() {
  for (const stop of state.stops) stop();
  state.stops = [];
  const status = $("status");
  const open = new Set();
  for (const server of state.servers.filter(s => s.stream)) {
    state.stops.push(subscribe(`${server.url}/api/v1/events`,
                               (kind, data) => receive(server.url, kind, data), {
      onState: s => {
        if (s === "open") open.add(server.url); else open.delete(server.url);
        const live = open.size === state.servers.filter(x => x.stream).length;
        status.dataset.state = live ? "live" : "off";
        status.textContent = word(live ? "status.live" : "status.off");
      },
    }));
  }
}

// -- language -------------------------------------------------------------------------------------

async function useLang(lang) {
  setLang(lang);
  const texts = await call(`/texts?lang=${encodeURIComponent(lang)}`);
  diagram.setTexts(texts.texts);
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.setAttribute("aria-pressed", String(b.dataset.lang === getLang()));
  }
  translate();
  drawLanes();
  $("status").textContent = word($("status").dataset.state === "live" ? "status.live" : "status.off");
}

// -- the six steps from the page ------------------------------------------------------------------

async function send(e) {
  e.preventDefault();
  const from = $("from").value.trim(), to = $("to").value.trim();
  const auth = basic(from, $("password").value);
  const base = serverFor(domainOf(from));
  const fields = { to, subject: $("subject").value, body: $("body").value };
  $("send-button").disabled = true;
  message(word("status.sending"));
  try {
    if ($("fault").checked) {  // the next hop's MX answers its next transaction with a 451
      await call("/faults/mx", { method: "POST", base: serverFor(domainOf(to)),
                                 body: { reply: state.config.fault_reply, count: 1 } });
    }
    diagram.step(1);
    diagram.note(0, "note.compose", { from, to, subject: fields.subject },
                 Object.entries(fields).map(([k, v]) => ({ direction: "", line: `${k}: ${v}` })));
    const formatted = await call("/pages/format", { method: "POST", base, auth, body: fields });
    diagram.step(2);
    diagram.note(0, "note.format", { mid: formatted.message_id },
                 formatted.text.split("\n").map(line => ({ direction: "", line })));
    $("replay-id").value = formatted.message_id;
    const sent = await call("/pages/send", { method: "POST", base, auth,
                                             body: { raw: formatted.raw } });
    message(word("status.sent", { reply: sent.reply }));
  } catch (err) {
    message(err.message, true);
  } finally {
    $("send-button").disabled = false;
  }
}

async function fetchAsBob(e) {
  e.preventDefault();
  const address = $("bob").value.trim();
  const auth = basic(address, $("bob-password").value);
  $("fetch-button").disabled = true;
  try {
    const base = serverFor(domainOf(address));
    const result = await call("/pages/fetch", { method: "POST", base,
                                                auth, body: { keep: $("keep").checked } });
    message(result.messages.length ? word("status.fetched", { n: result.messages.length })
      : word("status.nothing"));
    if (result.messages.length) await drawnUpTo(base, result.seq);
    for (const m of result.messages) {
      diagram.step(6);
      const node = diagram.note(6, "note.rendered", { subject: m.subject, from: m.from },
                                m.rendered.split("\n").map(line => ({ direction: "", line })),
                                "rendered");
      diagram.select(node);
    }
  } catch (err) {
    message(err.message, true);
  } finally {
    $("fetch-button").disabled = false;
  }
}

// A past message from the held events of every server, drawn again at a readable pace.
async function replay(e) {
  e.preventDefault();
  const id = $("replay-id").value.trim();
  const lists = await Promise.all(state.servers.filter(s => s.stream).map(s =>
    call(`/pages/replay?message_id=${encodeURIComponent(id)}`, { base: s.url })
      .then(r => r.events).catch(err => { message(err.message, true); return []; })));
  const events = lists.flat().sort((a, b) => a.time - b.time || a.seq - b.seq);
  if (!events.length) { message(`${id}: 0`, true); return; }
  diagram.clear();
  const pace = Number(params.get("pace") ?? 60);
  for (const event of events) {
    diagram.feed(event);
    if (pace) await new Promise(r => setTimeout(r, pace));
  }
}

async function main() {
  diagram = new Diagram($("rows"), $("details"));
  window.labmailFlow = { diagram, drawn: state.drawn };  // for the browser tests and the curious
  state.config = await loadConfig();
  const lab = state.config.lab;
  if (lab) {  // LAB ONLY: the demo's lab passwords, shown to the class on purpose
    $("from").value = lab.sender.address; $("password").value = lab.sender.password;
    $("to").value = lab.recipient.address;
    $("bob").value = lab.recipient.address; $("bob-password").value = lab.recipient.password;
    $("subject").value = state.config.subject || "";
    $("body").value = state.config.body || "";
  }
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => useLang(b.dataset.lang));
  }
  $("send").addEventListener("submit", send);
  $("fetch").addEventListener("submit", fetchAsBob);
  $("replay").addEventListener("submit", replay);
  $("clear").addEventListener("click", () => diagram.clear());
  await useLang(params.get("lang") || state.config.lang || "en");
  connect();
  document.body.dataset.ready = "true";
}

main().catch(err => {
  message(err.message, true);
  if (err.status === 401) {  // a listener with a token: ask for it, then start again
    $("token-form").hidden = false;
    $("token-form").addEventListener("submit", e => {
      e.preventDefault();
      setToken($("token").value);
      location.reload();
    });
  }
});
