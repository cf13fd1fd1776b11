"""The six steps explained, in English and Chinese (the course notes' language): steps 1-6.

Plain data shared by everything that explains a delivery: ``mua demo`` in a terminal and the
web pages (``mta.http.pages`` serves them as JSON). It lives in ``mta`` because both use it
and dependencies point one way (``mta`` <- ``mua.demo``).

``TEXT[lang][key]`` is a ``str.format`` template; keys name the thing shown: ``s1`` .. ``s6``
the step names, ``sN.why`` what step N does and why (with its RFC), ``sN.*`` the labels of
step N's evidence, and a few for the frame (``title``, ``lab``, ``summary``, ...). Every
language has the same keys. Nothing here knows about terminals or HTML.
"""

from __future__ import annotations

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "labmail: one e-mail, six steps",
        "lab": "Starting two mail domains in this process, on 127.0.0.1 with temporary SQLite "
               "databases:",
        "lab.alice": "alice.lab (the sender's server): submission {submission}, MX {mx}",
        "lab.bob": "bob.lab (the recipient's server): MX {mx}, POP3 {pop3}",
        "step": "Step {n} of 6: {name}",
        "s1": "compose", "s2": "format", "s3": "submit", "s4": "relay", "s5": "retrieve",
        "s6": "render",
        "s1.why": "Alice fills in who the mail is from and to, a subject, a body and any "
                  "attachments. Nothing has been sent yet: these are just the fields of a form.",
        "s2.why": "The user agent turns the form into an Internet message (RFC 5322): header "
                  "fields, a blank line, the body. Non-ASCII text is encoded (RFC 2047 words, "
                  "RFC 2231 file names) and MIME (RFC 2045) describes the parts.",
        "s3.why": "The user agent submits the message by SMTP to Alice's own server on the "
                  "submission port (RFC 6409): EHLO, STARTTLS (RFC 3207), AUTH (RFC 4954), then "
                  "the envelope (MAIL FROM, RCPT TO) and DATA, ended by a lone '.'. The server "
                  "answers 250 only after the message is safely in its queue.",
        "s3.view": "SMTP dialogue, as alice.lab's submission server saw it",
        "s4.why": "alice.lab does not hold bob.lab's mail, so it relays: it looks up the next "
                  "hop (a static route here; on the Internet a DNS MX record, RFC 5321 section "
                  "5), connects to bob.lab's MX server and repeats the SMTP transaction. bob.lab "
                  "adds a Received: header and stores the message in SQLite before it says 250.",
        "s4.route": "routing decision",
        "s4.queue": "queue entry at alice.lab",
        "s4.attempts": "delivery attempts",
        "s4.view": "SMTP dialogue, as bob.lab's MX server saw it",
        "s4.row": "row written into bob.lab's SQLite store",
        "s4.deferred": "bob.lab answered 451 (a temporary failure): alice.lab keeps the message "
                       "queued and tries again after a backoff delay.",
        "s5.why": "Bob's user agent connects to bob.lab's POP3 server (RFC 1939), logs in, asks "
                  "how much mail there is (STAT, LIST, UIDL), downloads it (RETR), marks it "
                  "deleted (DELE) and commits with QUIT.",
        "s5.view": "POP3 dialogue, as bob.lab's POP3 server saw it",
        "s5.saved": "saved in Bob's local Maildir: {path}",
        "s6.why": "Bob's user agent decodes the message for a person: header fields with their "
                  "RFC 2047 words decoded, the text part, and the list of attachments.",
        "summary": "Delivered intact: {hops} hops (submission, relay, POP3), {size} bytes "
                   "composed, {stored} bytes stored at bob.lab; time per step: {times}; "
                   "total {total}.",
        "broken": "The message did NOT arrive intact: {why}",
        "pause": "[press Enter for the next step]",
        "kept": "Databases kept in {folder}",
        "subject": "Hello from Alice",
        "body": "Hi Bob,\n\nthis message went through all six steps of e-mail delivery.\n\n"
                "Alice\n",
        "more": "... {n} more lines",
        "transcript.empty": "(no lines recorded)",
        "connection": "connection {n}, from {peer}",
    },
    "zh": {
        "title": "labmail：一封电子邮件的六个步骤",
        "lab": "在本进程中启动两个邮件域，监听 127.0.0.1，使用临时 SQLite 数据库：",
        "lab.alice": "alice.lab（发件方服务器）：提交端口 {submission}，MX 端口 {mx}",
        "lab.bob": "bob.lab（收件方服务器）：MX 端口 {mx}，POP3 端口 {pop3}",
        "step": "第 {n} 步（共 6 步）：{name}",
        "s1": "撰写", "s2": "格式化", "s3": "提交", "s4": "中继", "s5": "收取", "s6": "显示",
        "s1.why": "Alice 填写发件人、收件人、主题、正文和附件。"
                  "此时还没有发送任何东西：这些只是表单里的字段。",
        "s2.why": "用户代理把表单变成一封互联网邮件（RFC 5322）：首部字段、一个空行、正文。"
                  "非 ASCII 文字会被编码（RFC 2047 编码字、RFC 2231 文件名），MIME（RFC 2045）"
                  "描述各个部分。",
        "s3.why": "用户代理通过 SMTP 把邮件提交给 Alice 自己的服务器的提交端口（RFC 6409）：EHLO、"
                  "STARTTLS（RFC 3207）、AUTH（RFC 4954），然后是信封（MAIL FROM、RCPT TO）"
                  "和 DATA，"
                  "以单独一行的“.”结束。服务器只有在邮件安全进入队列之后才回答 250。",
        "s3.view": "SMTP 对话（alice.lab 提交服务器所见）",
        "s4.why": "alice.lab 并不保存 bob.lab 的邮件，所以它要中继：先查找下一跳（这里是静态路由；"
                  "在互联网上是 DNS MX 记录，RFC 5321 第 5 节），再连接 bob.lab 的 MX 服务器，"
                  "重复一次 SMTP "
                  "事务。bob.lab 添加 Received: 首部，并在回答 250 之前把邮件存入 SQLite。",
        "s4.route": "路由决定",
        "s4.queue": "alice.lab 的队列记录",
        "s4.attempts": "投递尝试",
        "s4.view": "SMTP 对话（bob.lab 的 MX 服务器所见）",
        "s4.row": "写入 bob.lab SQLite 存储的记录",
        "s4.deferred": "bob.lab 回答 451（暂时失败）："
                       "alice.lab 把邮件留在队列中，退避一段时间后重试。",
        "s5.why": "Bob 的用户代理连接 bob.lab 的 POP3 服务器（RFC 1939），登录，询问有多少邮件"
                  "（STAT、LIST、UIDL），下载（RETR），标记删除（DELE），最后用 QUIT 提交。",
        "s5.view": "POP3 对话（bob.lab 的 POP3 服务器所见）",
        "s5.saved": "已保存到 Bob 的本地 Maildir：{path}",
        "s6.why": "Bob 的用户代理把邮件解码给人看："
                  "解码 RFC 2047 编码字后的首部字段、正文部分和附件列表。",
        "summary": "完整送达：经过 {hops} 跳（提交、中继、POP3），"
                   "撰写 {size} 字节，bob.lab 存储 {stored} 字节；"
                   "各步用时：{times}；共 {total}。",
        "broken": "邮件没有完整送达：{why}",
        "pause": "[按回车键继续下一步]",
        "kept": "数据库保存在 {folder}",
        "subject": "来自 Alice 的问候",
        "body": "Bob 你好，\n\n这封邮件走完了电子邮件投递的全部六个步骤。\n\nAlice\n",
        "more": "…… 还有 {n} 行",
        "transcript.empty": "（没有记录到任何行）",
        "connection": "第 {n} 个连接，来自 {peer}",
    },
}
