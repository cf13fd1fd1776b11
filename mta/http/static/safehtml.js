// A message's HTML part made safe to show (step 6): parsed with DOMParser (an inert document:
// nothing in it runs or loads), stripped of what could override the policy or navigate
// (<script>, <meta>, <base>, frames, plugins), its cid: images replaced by data: URLs of the
// message's own parts (RFC 2392), then given a Content-Security-Policy as the first thing in
// its <head>. The result goes into <iframe sandbox="" srcdoc>: no allow-scripts, so nothing
// runs even if the policy were bypassed, and an opaque origin that reaches nothing of ours.
// Remote content (http:, https: images and styles) is refused unless ``remote`` is true.

const DROP = "script, noscript, meta, base, iframe, frame, frameset, object, embed, applet, " +
             "link[rel~='import' i], link[rel~='prefetch' i], link[rel~='preload' i], portal";

export function policy(remote) {
  const far = remote ? " http: https:" : "";
  return `default-src 'none'; script-src 'none'; style-src 'unsafe-inline'${far}; ` +
         `img-src data:${far}; font-src${far || " 'none'"}; media-src 'none'; ` +
         "form-action 'none'; frame-src 'none'; object-src 'none'";
}

export function frameDocument(html, { remote = false, cids = new Map() } = {}) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const node of doc.querySelectorAll(DROP)) node.remove();
  for (const node of doc.querySelectorAll("*")) {
    for (const attr of [...node.attributes]) {
      if (/^on/i.test(attr.name)) node.removeAttribute(attr.name);  // inert anyway: no scripts
      else if (/^\s*cid:/i.test(attr.value) && /^(src|background)$/i.test(attr.name)) {
        const id = attr.value.trim().slice(4).replace(/^<|>$/g, "");
        const url = cids.get(decodeURIComponent(id)) || cids.get(id);
        if (url) node.setAttribute(attr.name, url); else node.removeAttribute(attr.name);
      }
    }
  }
  const meta = doc.createElement("meta");
  meta.setAttribute("http-equiv", "Content-Security-Policy");
  meta.setAttribute("content", policy(remote));
  const base = doc.createElement("base");
  base.setAttribute("target", "_blank");  // links cannot navigate the frame (no popups allowed)
  doc.head.prepend(meta, base);
  return "<!doctype html>\n" + doc.documentElement.outerHTML;
}
