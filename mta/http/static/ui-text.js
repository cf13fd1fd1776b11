// The pages' own words (buttons, lanes, notes). The step headings and explanations are NOT
// here: they come from the server (/api/v1/texts), the one source the terminal demo uses too.

const WORDS = {
  en: {
    "flow.title": "labmail: watch one e-mail travel", "controls": "Send, fetch, replay",
    "nav.flow": "Flow", "nav.mail": "Mail", "nav.server": "Server",
    "lane.ua_from": "Alice's user agent", "lane.submission": "{from}\nsubmission",
    "lane.relay": "{from}\nqueue + relay", "lane.mx": "{to}\nMX", "lane.store": "{to}\nstore",
    "lane.pop3": "{to}\nPOP3", "lane.ua_to": "Bob's user agent",
    "send.legend": "Send a message", "send.from": "From", "send.password": "Password",
    "send.to": "To", "send.subject": "Subject", "send.body": "Body",
    "send.fault": "Next hop answers 451 once", "send.button": "Send",
    "fetch.legend": "Retrieve", "fetch.button": "Fetch as Bob", "fetch.keep": "Keep on server",
    "replay.label": "Replay by Message-ID", "replay.button": "Replay",
    "clear": "Clear diagram", "details": "Exact protocol lines", "details.none":
      "Click an arrow or a note (or focus it and press Enter) to see its exact lines.",
    "note.compose": "compose: {from} → {to}, “{subject}”",
    "note.format": "format: Message-ID {mid}", "note.queue": "queue entry {id}: <{sender}> → {rcpts}",
    "note.accepted": "accepted as {id}", "note.refused": "✗ refused: {reply}",
    "note.route": "route {dest}: {how} → {hops}", "note.noroute": "✗ no route to {dest}: {error}",
    "note.delivered": "✓ attempt {n}: delivered ({reply})",
    "note.deferred": "✗ attempt {n}: deferred ({reply}), retry at {at}",
    "note.failed": "✗ attempt {n}: failed ({reply})",
    "note.stored": "stored: row {row}, UIDL {uidl}, {owner}, {size} bytes",
    "note.retrieved": "retrieved: UIDL {uidl} ({size} bytes)", "note.deleted": "deleted: UIDL {uidl}",
    "note.bounced": "✗ bounce {id} to <{to}>", "note.rendered": "render: “{subject}” from {from}",
    "status.live": "live", "status.off": "reconnecting…", "status.sending": "sending…",
    "status.sent": "submitted: {reply}", "status.fetched": "{n} new message(s)",
    "status.nothing": "no new message", "client": "client", "server": "server",
    "view.client": "{who} (client side)", "view.server": "{who} (server side)",
    "mail.title": "labmail webmail", "mail.login": "Log in", "mail.address": "Address",
    "mail.logout": "Log out", "mail.inbox": "Inbox", "mail.more": "Load more",
    "mail.count": "{shown} of {total} messages", "mail.from": "From", "mail.subject": "Subject",
    "mail.date": "Date", "mail.size": "Size", "mail.delete": "Delete", "mail.raw": "Raw source",
    "mail.tree": "MIME tree", "mail.remote": "Load remote content",
    "mail.remote.off": "Remote content is blocked.", "mail.attachments": "Attachments",
    "mail.compose": "Compose", "mail.send": "Send", "mail.empty": "No messages.",
    "mail.deleted": "Deleted.", "mail.html": "HTML part (sandboxed: no scripts, no remote loads)",
    "mail.text": "Text part", "mail.cc": "Cc",
    "server.title": "labmail server", "server.queue": "Outbound queue", "server.flush": "Flush",
    "server.accounts": "Accounts", "server.faults": "Fault script (next MX replies)",
    "server.token": "Token", "server.save": "Use token", "server.script": "Add", "server.clear":
      "Clear", "server.delete": "Delete", "server.empty": "Empty.",
  },
  zh: {
    "flow.title": "labmail：看一封电子邮件的旅程", "controls": "发送、收取、重放",
    "nav.flow": "流程", "nav.mail": "邮件", "nav.server": "服务器",
    "lane.ua_from": "Alice 的用户代理", "lane.submission": "{from}\n提交服务",
    "lane.relay": "{from}\n队列 + 中继", "lane.mx": "{to}\nMX", "lane.store": "{to}\n存储",
    "lane.pop3": "{to}\nPOP3", "lane.ua_to": "Bob 的用户代理",
    "send.legend": "发送邮件", "send.from": "发件人", "send.password": "密码", "send.to": "收件人",
    "send.subject": "主题", "send.body": "正文", "send.fault": "下一跳先回答一次 451",
    "send.button": "发送", "fetch.legend": "收取", "fetch.button": "以 Bob 身份收信",
    "fetch.keep": "在服务器上保留", "replay.label": "按 Message-ID 重放", "replay.button": "重放",
    "clear": "清空图", "details": "协议原文",
    "details.none": "点击箭头或注释（或用 Tab 选中后按回车）查看原始协议行。",
    "note.compose": "撰写：{from} → {to}，“{subject}”",
    "note.format": "格式化：Message-ID {mid}", "note.queue": "队列记录 {id}：<{sender}> → {rcpts}",
    "note.accepted": "已接收，编号 {id}", "note.refused": "✗ 拒绝：{reply}",
    "note.route": "路由 {dest}：{how} → {hops}", "note.noroute": "✗ 没有到 {dest} 的路由：{error}",
    "note.delivered": "✓ 第 {n} 次尝试：已投递（{reply}）",
    "note.deferred": "✗ 第 {n} 次尝试：推迟（{reply}），{at} 重试",
    "note.failed": "✗ 第 {n} 次尝试：失败（{reply}）",
    "note.stored": "已存储：第 {row} 行，UIDL {uidl}，{owner}，{size} 字节",
    "note.retrieved": "已取走：UIDL {uidl}（{size} 字节）", "note.deleted": "已删除：UIDL {uidl}",
    "note.bounced": "✗ 退信 {id} 发给 <{to}>", "note.rendered": "显示：“{subject}”，来自 {from}",
    "status.live": "实时", "status.off": "正在重新连接…", "status.sending": "正在发送…",
    "status.sent": "已提交：{reply}", "status.fetched": "{n} 封新邮件", "status.nothing": "没有新邮件",
    "client": "客户端", "server": "服务器",
    "view.client": "{who}（客户端所见）", "view.server": "{who}（服务器所见）",
    "mail.title": "labmail 网页邮箱", "mail.login": "登录", "mail.address": "地址",
    "mail.logout": "退出", "mail.inbox": "收件箱", "mail.more": "加载更多",
    "mail.count": "{shown} / {total} 封邮件", "mail.from": "发件人", "mail.subject": "主题",
    "mail.date": "日期", "mail.size": "大小", "mail.delete": "删除", "mail.raw": "原始邮件",
    "mail.tree": "MIME 结构", "mail.remote": "加载远程内容", "mail.remote.off": "已阻止远程内容。",
    "mail.attachments": "附件", "mail.compose": "写邮件", "mail.send": "发送",
    "mail.empty": "没有邮件。", "mail.deleted": "已删除。",
    "mail.html": "HTML 部分（沙箱：不运行脚本，不加载远程内容）", "mail.text": "文本部分",
    "mail.cc": "抄送",
    "server.title": "labmail 服务器", "server.queue": "发送队列", "server.flush": "立即重试",
    "server.accounts": "账户", "server.faults": "故障脚本（MX 接下来的回答）",
    "server.token": "令牌", "server.save": "使用令牌", "server.script": "添加",
    "server.clear": "清空", "server.delete": "删除", "server.empty": "空。",
  },
};

let lang = "en";
export function setLang(value) { lang = WORDS[value] ? value : "en"; }
export function getLang() { return lang; }

// word("note.queue", {id: ...}): the word in the current language with {names} filled in.
export function word(key, values = {}) {
  const text = WORDS[lang][key] ?? WORDS.en[key] ?? key;
  return format(text, values);
}

export function format(text, values) {
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}

// Marks every element with data-word="key" with its word (textContent: never markup).
export function translate(root = document) {
  for (const node of root.querySelectorAll("[data-word]")) node.textContent = word(node.dataset.word);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}
