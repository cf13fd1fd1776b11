// The sequence diagram of the flow page: one lane per actor, one row per SMTP/POP3 exchange
// (command arrow and reply arrow, labelled), notes for what a server decided or stored, and the
// six step markers. It only ever appends rows or updates one row in place, so an event costs
// the same whether the diagram holds 10 rows or 10,000 (no redraw of what is already drawn).

import { el, visible } from "./api.js";
import { format, word } from "./ui-text.js";

export const LANES = ["ua_from", "submission", "relay", "mx", "store", "pop3", "ua_to"];
const LANE = Object.fromEntries(LANES.map((name, i) => [name, i]));
// (client lane, server lane) of each listener's dialogues
const SIDES = { submission: [0, 1], relay: [2, 3], mx: [2, 3], pop3: [6, 5] };
const NOTE_LANE = { submission: 2, mx: 3, relay: 2, pop3: 5 };
// the hop a dialogue belongs to: the relay's and the MX's views of one conversation are one hop
const HOP = { submission: "submission", relay: "relay", mx: "relay", pop3: "pop3" };
const SVG = "http://www.w3.org/2000/svg";

const center = lane => ((lane + 0.5) * 100) / LANES.length;

function svgLine(cls, from, to, y) {
  const line = document.createElementNS(SVG, "line");
  line.setAttribute("class", cls);
  line.setAttribute("x1", `${center(from)}%`);
  line.setAttribute("x2", `${center(to)}%`);
  line.setAttribute("y1", y);
  line.setAttribute("y2", y);
  line.setAttribute("marker-end", "url(#arrowhead)");
  return line;
}

function place(node, a, b) {
  const left = Math.min(center(a), center(b)), right = Math.max(center(a), center(b));
  node.style.left = `${left}%`;
  node.style.width = `${right - left}%`;
}

// The short label of a protocol line: the command verb(s), or the reply code.
export function label(direction, line, listener) {
  const text = line.trim();
  if (direction === "S") {
    const m = text.match(/^(\d{3}|[+-]OK|-ERR|\+)/i);
    return m ? m[1].toUpperCase() : text.slice(0, 12);
  }
  const m = text.match(/^(MAIL FROM|RCPT TO)\s*:/i);
  if (m) return m[1].toUpperCase();
  // Labels sit between two lanes: short enough not to run into the arrowhead on a projector.
  if (text === ".") return listener === "pop3" ? "." : ". (end)";
  if (text.startsWith("<")) return text.slice(0, 28);  // the data, summed up: "<message, N octets>"
  const [verb, arg] = text.split(/\s+/);
  // POP3's message numbers (RETR 1, DELE 1) say which message; a login name is in the details
  return listener === "pop3" && arg && arg.length <= 4 ? `${verb} ${arg}` : verb.slice(0, 24);
}

const failedReply = line => /^[45]\d\d/.test(line.trim()) || /^-ERR/i.test(line.trim());
// An SMTP reply ends at its line with a space after the code (RFC 5321 4.2.1); a POP3 reply
// runs until the next command (a multi-line response ends with ".", RFC 1939 3).
const finalReply = (line, listener) => listener !== "pop3" && /^\d{3}(\s|$)/.test(line);

export class Diagram {
  constructor(rows, details, onChange = () => {}) {
    this.rowsNode = rows;
    this.details = details;
    this.onChange = onChange;
    this.texts = null;
    this.clear();
    rows.addEventListener("click", e => this.select(e.target.closest(".row")));
    rows.addEventListener("keydown", e => this.key(e));
  }

  clear() {
    this.rowsNode.replaceChildren();
    this.sessions = new Map();
    this.lastStep = 0;
    this.seen = new Set();
    this.selected = null;
    this.following = 0;
    this.details.replaceChildren(el("p", { class: "muted", "data-word": "details.none",
                                           text: word("details.none") }));
  }

  // -- events ---------------------------------------------------------------------------------

  feed(e) {
    const key = `${e.server}|${e.seq}|${e.time}|${e.kind}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.markStep(e);
    const handler = this[`on_${e.kind}`];
    if (handler) handler.call(this, e);
    this.onChange(e);
  }

  markStep(e) {
    const step = e.step || 0;
    if (!step) return;
    // a later step starts a marker; an earlier one only when a new session opens (a new message)
    if (step > this.lastStep || (step < this.lastStep && e.kind === "session_opened")) {
      this.step(step);
    }
  }

  session(e) {
    const key = `${e.server}|${e.session}`;
    let record = this.sessions.get(key);
    if (!record) {
      record = { key, listener: e.listener, server: e.server, peer: e.peer, lines: [],
                 open: null, mirror: null, closed: false, main: true };
      this.sessions.set(key, record);
      this.pair(record);
    }
    return record;
  }

  // The relay's client view and the MX's server view of one SMTP conversation: the first one
  // seen draws the arrows, the other is kept as the second view of the same exchanges.
  pair(record) {
    const other = { relay: "mx", mx: "relay" }[record.listener];
    if (!other) return;
    for (const candidate of this.sessions.values()) {
      if (candidate.listener === other && !candidate.closed && !candidate.mirror && candidate.main) {
        candidate.mirror = record;
        record.mirror = candidate;
        record.main = false;
        return;
      }
    }
  }

  on_session_opened(e) { this.session(e); }

  on_session_closed(e) {
    const record = this.session(e);
    record.closed = true;
    record.open = null;
  }

  on_line(e) {
    const record = this.session(e);
    const index = record.lines.push({ direction: e.direction, line: e.line }) - 1;
    if (!record.main) return;  // shown through the main view's rows
    const [client, server] = SIDES[e.listener] || [2, 3];
    if (e.direction === "C" || !record.open || record.open.done) {
      record.open = this.exchange(record, client, server, e, index);
    }
    const row = record.open;
    row.range[1] = index + 1;
    if (e.direction === "S") this.reply(row, e, client, server);
  }

  exchange(record, client, server, e, index) {
    const node = el("div", { class: "row exchange", tabindex: "0", role: "button",
                             "data-listener": e.listener, "data-hop": HOP[e.listener] });
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "arrows");
    svg.setAttribute("aria-hidden", "true");
    node.append(svg);
    const row = { node, svg, record, range: [index, index + 1], done: false, replied: false };
    node.row = row;
    if (e.direction === "C") {
      svg.append(svgLine("cmd", client, server, 22));
      const text = el("span", { class: "lbl cmd", text: `C: ${label("C", e.line, e.listener)}` });
      place(text, client, server);
      node.append(text);
    } else {
      node.classList.add("reply-only");
    }
    this.append(node);
    return row;
  }

  reply(row, e, client, server) {
    const final = finalReply(e.line, e.listener);
    if (!row.replied) {
      row.replied = true;
      const bad = failedReply(e.line);
      row.svg.append(svgLine(bad ? "reply bad" : "reply", server, client, row.node.classList
        .contains("reply-only") ? 26 : 58));
      const text = el("span", { class: `lbl reply${bad ? " bad" : ""}`,
                                text: `S: ${bad ? "✗ " : ""}${label("S", e.line, e.listener)}` });
      place(text, client, server);
      row.node.append(text);
      if (bad) row.node.classList.add("failed");
    }
    if (final) row.done = true;
  }

  // -- notes ----------------------------------------------------------------------------------

  // A note in ``lane``: the word ``key`` with ``values`` (said again in the other language when
  // the language changes); ``lines`` are what clicking it shows.
  note(lane, key, values, lines = [], cls = "") {
    const text = word(key, values);
    const node = el("div", { class: `row note ${cls}`, tabindex: "0", role: "button",
                             "data-lane": LANES[lane] });
    const box = el("div", { class: "box", text });
    const width = 100 / LANES.length;
    const left = Math.min(Math.max(center(lane) - 1.4 * width, 0), 100 - 2.8 * width);
    box.style.left = `${left}%`;
    box.style.width = `${2.8 * width}%`;
    node.append(el("span", { class: "pin", style: `left:${center(lane)}%`, "aria-hidden": "true" }),
                box);
    node.row = { node, key, values, detail: { title: text, lines } };
    this.append(node);
    return node;
  }

  eventLines(e) {
    const skip = new Set(["kind", "seq"]);
    return Object.entries(e).filter(([k, v]) => !skip.has(k) && v !== null && v !== "")
      .map(([k, v]) => ({ direction: "", line: `${k}: ${Array.isArray(v) ? v.join(", ") : v}` }));
  }

  on_accepted(e) {
    const rcpts = (e.outbound && e.outbound.length ? e.outbound : e.recipients || []).join(", ");
    const queued = e.listener === "submission" && (e.outbound || []).length;
    this.note(NOTE_LANE[e.listener] ?? 2, queued ? "note.queue" : "note.accepted",
              { id: e.queue_id, sender: e.sender, rcpts }, this.eventLines(e), "queue");
  }

  on_refused(e) {
    this.note(NOTE_LANE[e.listener] ?? 2, "note.refused", { reply: e.reply }, this.eventLines(e),
              "bad");
  }

  on_routed(e) {
    this.note(LANE.relay, e.error ? "note.noroute" : "note.route",
              { dest: e.destination, error: e.error, how: e.how, hops: (e.hops || []).join(", ") },
              this.eventLines(e), e.error ? "bad route" : "route");
  }

  on_attempt(e) {
    const at = e.next_attempt ? new Date(e.next_attempt * 1000).toLocaleTimeString() : "";
    const key = { delivered: "note.delivered", deferred: "note.deferred" }[e.outcome] || "note.failed";
    this.note(LANE.relay, key, { n: e.attempts, reply: e.reply, at }, this.eventLines(e),
              e.outcome === "delivered" ? "attempt good" : "attempt bad");
  }

  on_stored(e) {
    this.note(LANE.store, "note.stored", { row: e.mailbox_id, uidl: e.uidl, owner: e.owner,
                                           size: e.size }, this.eventLines(e), "stored");
  }

  on_retrieved(e) {
    this.note(LANE.store, "note.retrieved", { uidl: e.uidl, size: e.size }, this.eventLines(e),
              "retrieved");
  }

  on_deleted(e) {
    this.note(LANE.store, "note.deleted", { uidl: e.uidl }, this.eventLines(e), "deleted");
  }

  on_bounced(e) {
    this.note(LANE.relay, "note.bounced", { id: e.bounce_queue_id, to: e.to }, this.eventLines(e),
              "bad");
  }

  // -- steps ----------------------------------------------------------------------------------

  step(n) {
    this.lastStep = n;
    const node = el("div", { class: "row step", "data-step": String(n), tabindex: "0",
                             role: "heading", "aria-level": "2" });
    node.append(el("span", { class: "step-no", text: String(n), "aria-hidden": "true" }),
                el("span", { class: "step-title" }), el("span", { class: "step-why" }));
    node.row = { node, step: n };
    this.fillStep(node);
    this.append(node);
    return node;
  }

  fillStep(node) {
    const n = Number(node.dataset.step);
    const t = this.texts || {};
    const name = t[`s${n}`] || `step ${n}`;
    node.querySelector(".step-title").textContent = format(t.step || "Step {n} of 6: {name}",
                                                           { n, name });
    node.querySelector(".step-why").textContent = t[`s${n}.why`] || "";
    node.row.detail = { title: node.querySelector(".step-title").textContent,
                        lines: [{ direction: "", line: t[`s${n}.why`] || "" }] };
  }

  // A new language: the step markers and the notes say it again (the protocol lines stay).
  setTexts(texts) {
    this.texts = texts;
    for (const node of this.rowsNode.querySelectorAll(".row.step")) this.fillStep(node);
    for (const node of this.rowsNode.querySelectorAll(".row.note")) {
      const text = word(node.row.key, node.row.values);
      node.querySelector(".box").textContent = visible(text);
      node.row.detail.title = text;
    }
  }

  // -- rows, selection, keyboard ----------------------------------------------------------------

  // Rows are appended, never redrawn; whether to follow the newest row is read once per frame
  // (reading the layout after every row would force a reflow per event).
  append(node) {
    if (!this.following) {
      const follow = this.atBottom();
      this.following = requestAnimationFrame(() => {
        this.following = 0;
        if (follow) this.rowsNode.lastElementChild?.scrollIntoView({ block: "nearest" });
      });
    }
    this.rowsNode.append(node);
  }

  atBottom() {
    const scroller = document.scrollingElement;
    return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 80;
  }

  select(node) {
    if (!node || !node.row) return;
    if (this.selected) this.selected.classList.remove("selected");
    this.selected = node;
    node.classList.add("selected");
    this.details.replaceChildren(...this.describe(node.row));
  }

  describe(row) {
    if (!row.record) {
      const pre = el("pre", {}, row.detail.lines.map(l => visible(l.line)).join("\n"));
      return [el("h3", { text: row.detail.title }), pre];
    }
    const out = [];
    for (const record of [row.record, row.record.mirror].filter(Boolean)) {
      const side = record.listener === "relay" || record.listener === "client" ? "view.client"
        : "view.server";
      const mark = record === row.record ? row.range : [-1, -1];
      const text = record.lines.map((l, i) =>
        `${i >= mark[0] && i < mark[1] ? "▶ " : "  "}${l.direction}: ${visible(l.line)}`);
      out.push(el("h3", { text: word(side, { who: `${record.server} ${record.listener}` }) }),
               el("pre", { class: "transcript" }, text.join("\n")));
    }
    return out;
  }

  key(e) {
    const node = e.target.closest(".row");
    if (!node) return;
    const moves = { ArrowDown: "nextElementSibling", ArrowUp: "previousElementSibling" };
    if (moves[e.key]) {
      const next = node[moves[e.key]];
      if (next) next.focus();
      e.preventDefault();
    } else if (e.key === "Home" || e.key === "End") {
      const rows = this.rowsNode;
      (e.key === "Home" ? rows.firstElementChild : rows.lastElementChild)?.focus();
      e.preventDefault();
    } else if (e.key === "Enter" || e.key === " ") {
      this.select(node);
      e.preventDefault();
    }
  }
}
