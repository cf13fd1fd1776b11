// The mail page: a webmail for one account over the JSON API with HTTP Basic (the account's
// own address and password: it sees its own mailbox and nothing else). Every header and every
// text is shown as text (textContent, control characters made visible), never as markup; the
// HTML part is shown by safehtml.js in a sandboxed frame with remote content off by default.

import { basic, call, el, visible } from "./api.js";
import { frameDocument } from "./safehtml.js";
import { setLang, translate, word } from "./ui-text.js";

const $ = id => document.getElementById(id);
const PAGE = 100;
const timings = [];  // per page of the inbox: ms to fetch it and to draw it (the tests read it)
window.labmailMail = { timings };
const SHOWN = ["From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "X-Priority"];
const state = { auth: "", address: "", cursor: null, shown: 0, current: null, remote: false,
                cids: new Map() };

const mailbox = () => `/mailboxes/${encodeURIComponent(state.address)}/messages`;
const api = (path, options = {}) => call(path, { auth: state.auth, ...options });

function size(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB`
    : `${(n / 1048576).toFixed(1)} MB`;
}

// An event handler that shows its failure instead of leaving it unhandled.
const safe = fn => (...args) => Promise.resolve(fn(...args)).catch(err => status(err.message, true));

function status(text, bad = false) {
  $("status").textContent = visible(text);
  $("status").className = bad ? "error" : "";
}

// -- login ------------------------------------------------------------------------------------

async function login(e) {
  e?.preventDefault();
  const address = (e ? $("address").value : sessionStorage.getItem("labmail.mail.address") || "")
    .trim().toLowerCase();
  const auth = e ? basic(address, $("password").value) : sessionStorage.getItem("labmail.mail.auth");
  if (!address || !auth) return;
  state.auth = auth; state.address = address;
  try {
    await loadInbox();
  } catch (err) {
    $("login-error").textContent = err.message;
    $("login-error").hidden = false;
    state.auth = "";
    return;
  }
  sessionStorage.setItem("labmail.mail.address", address);
  sessionStorage.setItem("labmail.mail.auth", auth);
  $("login").hidden = true; $("mail").hidden = false; $("logout").hidden = false;
  $("who").textContent = visible(address);
}

function logout() {
  sessionStorage.removeItem("labmail.mail.auth");
  location.reload();
}

// -- inbox ------------------------------------------------------------------------------------

async function loadInbox() {
  state.cursor = null; state.shown = 0;
  $("list").replaceChildren();
  await loadMore();
  $("list").firstElementChild?.focus();
}

async function loadMore() {
  const started = performance.now();
  const query = `?limit=${PAGE}` + (state.cursor ? `&cursor=${state.cursor}` : "");
  const page = await api(mailbox() + query);
  const fetched = performance.now();
  const rows = document.createDocumentFragment();
  for (const m of page.messages) rows.append(row(m));
  $("list").append(rows);
  timings.push({ rows: page.messages.length, fetch: fetched - started,
                 draw: performance.now() - fetched });
  state.shown += page.messages.length;
  state.cursor = page.next_cursor;
  $("more").hidden = !state.cursor;
  $("count").textContent = state.shown ? word("mail.count", { shown: state.shown,
    total: state.cursor ? `${state.shown}+` : state.shown }) : word("mail.empty");
}

function row(m) {
  const tr = el("tr", { tabindex: "0", "data-id": String(m.id), "aria-selected": "false" },
    el("td", { text: m.from }),
    el("td", { text: m.subject || "" }), el("td", { text: m.date }),
    el("td", { text: size(m.size) }), el("td", { text: m.attachment_count || "" }));
  tr.addEventListener("click", safe(() => open(m.id, tr)));
  tr.addEventListener("keydown", e => {
    if (e.key === "Enter" || e.key === " ") { safe(open)(m.id, tr); e.preventDefault(); }
    if (e.key === "ArrowDown") { tr.nextElementSibling?.focus(); e.preventDefault(); }
    if (e.key === "ArrowUp") { tr.previousElementSibling?.focus(); e.preventDefault(); }
  });
  return tr;
}

// -- reading ----------------------------------------------------------------------------------

async function open(id, tr) {
  for (const r of $("list").querySelectorAll("[aria-selected=true]")) r.setAttribute("aria-selected", "false");
  tr?.setAttribute("aria-selected", "true");
  $("compose").hidden = true;
  const m = await api(`${mailbox()}/${id}`);
  const parts = (await api(`${mailbox()}/${id}/parts`)).parts;
  state.current = { message: m, parts, row: tr };
  state.remote = false;
  state.cids = new Map();
  showHeaders(m);
  showAttachments(m);
  for (const b of ["raw-button", "tree-button", "remote"]) $(b).setAttribute("aria-pressed", "false");
  $("raw").hidden = true; $("tree").hidden = true;
  $("text-part").hidden = m.text === null || m.text === undefined;
  $("text").textContent = visible(m.text || "");
  $("html-part").hidden = !m.html;
  if (m.html) {
    await loadCids(id, parts);
    showHtml();
  }
  $("message").hidden = false;
  status("");
}

function showHeaders(m) {
  const rows = [];
  for (const name of SHOWN) {
    for (const h of m.headers.filter(h => h.name.toLowerCase() === name.toLowerCase())) {
      rows.push(el("tr", {}, el("th", { text: h.name }), el("td", { class: "h-value", text: h.value })));
    }
  }
  $("headers").replaceChildren(...rows);
}

function showAttachments(m) {
  const items = m.attachments.map(a => el("li", {}, el("button", {
    type: "button", "data-index": String(a.index),
    onclick: safe(() => download(`${mailbox()}/${m.id}/attachments/${a.index}`, a.name || `attachment-${a.index + 1}`)),
    text: `⬇ ${a.name || "(no name)"} (${a.type}, ${size(a.size)})`,
  })));
  $("attachments").replaceChildren(...(items.length
    ? [el("h3", { text: word("mail.attachments") }), el("ul", {}, ...items)] : []));
}

async function download(path, name) {
  const response = await call(path, { auth: state.auth, raw: true });
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// cid: images (RFC 2392) as data: URLs, the only images the frame's policy allows by default.
async function loadCids(id, parts) {
  for (const p of parts.filter(p => p.content_id && p.type.startsWith("image/"))) {
    const response = await call(`${mailbox()}/${id}/parts/${p.index}`, { auth: state.auth, raw: true });
    const blob = new Blob([await response.arrayBuffer()], { type: p.type });
    const url = await new Promise(resolve => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.readAsDataURL(blob);
    });
    state.cids.set(p.content_id, url);
  }
}

function showHtml() {
  $("html").srcdoc = frameDocument(state.current.message.html,
                                   { remote: state.remote, cids: state.cids });
  $("remote-state").hidden = state.remote;
}

function toggleRemote() {
  state.remote = !state.remote;
  $("remote").setAttribute("aria-pressed", String(state.remote));
  if (state.current?.message.html) showHtml();
}

async function toggleRaw() {
  const on = $("raw").hidden;
  $("raw-button").setAttribute("aria-pressed", String(on));
  if (on) {
    const text = await api(`${mailbox()}/${state.current.message.id}/raw`);
    $("raw").textContent = visible(text);
  }
  $("raw").hidden = !on;
}

function toggleTree() {
  const on = $("tree").hidden;
  $("tree-button").setAttribute("aria-pressed", String(on));
  $("tree").replaceChildren(...state.current.parts.map(p => el("li", {
    style: `margin-left:${p.depth * 1.5}rem`,
    text: `${p.index}. ${p.type}${p.charset ? `; charset=${p.charset}` : ""}` +
          `${p.disposition ? ` [${p.disposition}]` : ""}${p.filename ? ` “${p.filename}”` : ""}` +
          `${p.content_id ? ` <${p.content_id}>` : ""}${p.type.startsWith("multipart/") ? "" : `, ${size(p.size)}`}`,
  })));
  $("tree").hidden = !on;
}

async function remove() {
  const { message, row: tr } = state.current;
  try {
    await api(`${mailbox()}/${message.id}`, { method: "DELETE" });
  } catch (err) { status(err.message, true); return; }
  tr?.remove();
  state.shown -= 1;
  $("message").hidden = true;
  status(word("mail.deleted"));
}

// -- compose ----------------------------------------------------------------------------------

async function send(e) {
  e.preventDefault();
  const fields = { to: $("c-to").value, subject: $("c-subject").value, body: $("c-body").value };
  try {
    const formatted = await api("/pages/format", { method: "POST", body: fields });
    const sent = await api("/pages/send", { method: "POST", body: { raw: formatted.raw } });
    $("compose-status").className = "ok";
    $("compose-status").textContent = visible(sent.reply);
  } catch (err) {
    $("compose-status").className = "error";
    $("compose-status").textContent = visible(err.message);
  }
}

function useLang(lang) {
  setLang(lang);
  for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  translate();
}

async function main() {
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("more").addEventListener("click", safe(loadMore));
  $("delete").addEventListener("click", safe(remove));
  $("raw-button").addEventListener("click", safe(toggleRaw));
  $("tree-button").addEventListener("click", toggleTree);
  $("remote").addEventListener("click", toggleRemote);
  $("compose-open").addEventListener("click", () => { $("compose").hidden = false; $("message").hidden = true; });
  $("compose").addEventListener("submit", send);
  for (const b of document.querySelectorAll("[data-lang]")) b.addEventListener("click", () => useLang(b.dataset.lang));
  useLang(new URLSearchParams(location.search).get("lang") || "en");
  await login(null);
  document.body.dataset.ready = "true";
}

main();
