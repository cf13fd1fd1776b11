// The pages' one way to the JSON API (/api/v1) of this server or of a peer server: bearer token
// or HTTP Basic credentials, JSON errors turned into Error objects with the server's message.

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

// Credentials live in sessionStorage (this tab only): the token of a server, or a login.
export function token() { return sessionStorage.getItem("labmail.token") || ""; }
export function setToken(value) {
  if (value) sessionStorage.setItem("labmail.token", value);
  else sessionStorage.removeItem("labmail.token");
}

export function basic(address, password) {
  const bytes = new TextEncoder().encode(`${address}:${password}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

export function headers(auth) {
  const out = {};
  const value = auth || (token() ? `Bearer ${token()}` : "");
  if (value) out.Authorization = value;
  return out;
}

// fetch(base + API + path) with auth; JSON in (``body``) and out; ApiError on 4xx/5xx.
export async function call(path, { method = "GET", body, auth, base = "", raw = false } = {}) {
  const init = { method, headers: headers(auth) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(base + API + path, init);
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch { /* not JSON */ }
    const why = (data && (data.message || data.error)) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, why, data);
  }
  if (raw) return response;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// Server-Sent Events over fetch (EventSource can send neither Authorization nor a
// Last-Event-ID of our choosing): calls onEvent(kind, data, id) per event and reconnects from
// the last id seen. Returns a function that stops it.
export function subscribe(url, onEvent, { auth, onState = () => {} } = {}) {
  let lastId = null, stopped = false, controller = null;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const h = { ...headers(auth), Accept: "text/event-stream" };
        if (lastId !== null) h["Last-Event-ID"] = lastId;
        const response = await fetch(url, { headers: h, signal: controller.signal });
        if (!response.ok) throw new Error(`${response.status}`);
        onState("open");
        await readStream(response.body, (kind, data, id) => {
          if (id) lastId = id;
          onEvent(kind, data, id);
        });
      } catch (e) {
        if (stopped) return;
        onState("closed", e);
      }
      await new Promise(r => setTimeout(r, 1000));  // then reconnect, resuming from lastId
    }
  };
  run();
  return () => { stopped = true; if (controller) controller.abort(); };
}

async function readStream(body, emit) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message", id = "", data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;  // a comment (keep-alive)
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") kind = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      if (data.length) emit(kind, data.join("\n"), id);
    }
  }
}

// Text as text: control characters are shown as escapes (ESC -> \x1b, in ASCII so that every
// font has them), never interpreted; TAB and LF stay.
export function visible(text) {
  return String(text ?? "").replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g,
    c => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = visible(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
