// The server page: the outbound queue (flush, delete), the accounts with their message
// counts, and the MX fault script, through the administrator's API (the bearer token when the
// listener has one; it is kept in this tab's sessionStorage only).

import { call, el, setToken, token } from "./api.js";
import { setLang, translate, word } from "./ui-text.js";

const $ = id => document.getElementById(id);

function status(text, bad = false) {
  $("status").textContent = text;
  $("status").className = bad ? "error" : "";
}

async function refresh() {
  try {
    const [queue, accounts, faults] = await Promise.all([
      call("/queue?all=1"), call("/accounts"), call("/faults/mx")]);
    showQueue(queue.rows);
    $("accounts").replaceChildren(...accounts.accounts.map(a =>
      el("tr", {}, el("td", { text: a.address }), el("td", { text: String(a.messages) }))));
    $("faults").replaceChildren(...faults.replies.map(r => el("li", { text: r })));
    status("");
  } catch (err) {
    status(err.message, true);
  }
}

function showQueue(rows) {
  $("queue").replaceChildren(...(rows.length ? rows.map(r => el("tr", {},
    el("td", { text: String(r.id) }), el("td", { text: r.queue_id }), el("td", { text: r.sender }),
    el("td", { text: r.recipient }), el("td", { text: r.state }), el("td", { text: String(r.attempts) }),
    el("td", { text: r.state === "queued" ? new Date(r.next_attempt * 1000).toLocaleTimeString() : "" }),
    el("td", { text: r.last_reply || "" }),
    el("td", {}, r.state === "queued" ? el("button", { type: "button", text: word("server.delete"),
      onclick: () => act(`/queue/${encodeURIComponent(r.id)}`, "DELETE") }) : null),
  )) : [el("tr", {}, el("td", { colspan: "9", text: word("server.empty") }))]));
}

async function act(path, method, body) {
  try {
    await call(path, { method, body });
  } catch (err) {
    status(err.message, true);
    return;
  }
  await refresh();
}

function useLang(lang) {
  setLang(lang);
  for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  translate();
}

function main() {
  $("token").value = token();
  $("token-form").addEventListener("submit", e => { e.preventDefault(); setToken($("token").value); refresh(); });
  $("flush").addEventListener("click", () => act("/queue/flush", "POST"));
  $("fault-form").addEventListener("submit", e => {
    e.preventDefault();
    act("/faults/mx", "POST", { reply: $("fault-reply").value, count: Number($("fault-count").value) });
  });
  $("fault-clear").addEventListener("click", () => act("/faults/mx", "DELETE"));
  for (const b of document.querySelectorAll("[data-lang]")) b.addEventListener("click", () => useLang(b.dataset.lang));
  useLang(new URLSearchParams(location.search).get("lang") || "en");
  refresh().then(() => { document.body.dataset.ready = "true"; });
  setInterval(refresh, 5000);
}

main();
