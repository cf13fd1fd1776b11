"""The six-step demo, run as a user runs it: ``mua demo`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "mua", "demo", *args], input=stdin,
                          capture_output=True, text=True, encoding="utf-8", timeout=120,
                          cwd=ROOT, env=env)


def assert_in_order(text: str, needles: list[str]) -> None:
    position = 0
    for needle in needles:
        found = text.find(needle, position)
        assert found >= 0, f"{needle!r} missing after position {position}:\n{text}"
        position = found + len(needle)


SMTP_VERBS = ["C: EHLO", "C: STARTTLS", "C: AUTH PLAIN ****", "C: MAIL FROM:<alice@alice.lab>",
              "C: RCPT TO:<bob@bob.lab>", "C: DATA", "S: 354", "C: .", "S: 250 2.0.0",
              "C: QUIT"]
MX_VERBS = ["C: EHLO mx.alice.lab", "C: MAIL FROM:<alice@alice.lab>", "C: RCPT TO:<bob@bob.lab>",
            "C: DATA", "C: .", "S: 250 2.0.0 OK: queued as"]
POP3_VERBS = ["C: USER bob@bob.lab", "C: PASS ****", "C: STAT", "C: LIST", "C: UIDL",
              "C: RETR 1", "C: DELE 1", "C: QUIT"]


def test_demo_shows_six_steps_in_order() -> None:
    result = demo()
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert_in_order(out, [f"Step {n} of 6" for n in range(1, 7)])
    steps = {n: out.split(f"Step {n} of 6")[1].split(f"Step {n + 1} of 6")[0] for n in range(1, 7)}
    assert "Subject: Hello from Alice" in steps[2] and "Message-ID: <" in steps[2]
    assert_in_order(steps[3], SMTP_VERBS)
    assert_in_order(steps[4], ["static route", "queue id", "delivered"] + MX_VERBS
                    + ["table mailbox", "uidl="])
    assert_in_order(steps[5], POP3_VERBS)
    assert "Subject: Hello from Alice" in steps[6] and "Hi Bob," in steps[6]
    assert "Delivered intact" in out
    assert "bob-lab-password" not in out and "alice-lab-password" not in out
    assert "Traceback" not in result.stderr


def test_demo_in_chinese_with_own_message_and_attachment(tmp_path: Path) -> None:
    attachment = tmp_path / "课程 笔记.txt"
    attachment.write_text("第一课：电子邮件\n", encoding="utf-8")
    result = demo("--lang", "zh", "--subject", "你好，Bob", "--body", "这是正文。",
                  "--attach", str(attachment))
    assert result.returncode == 0, result.stderr + result.stdout
    assert_in_order(result.stdout, [f"第 {n} 步（共 6 步）" for n in range(1, 7)])
    rendered = result.stdout.split("第 6 步（共 6 步）")[1]
    assert "Subject: 你好，Bob" in rendered and "这是正文。" in rendered
    assert "课程 笔记.txt" in rendered
    assert "完整送达" in result.stdout


def test_fail_next_hop_shows_the_deferral_and_the_retry() -> None:
    result = demo("--fail-next-hop")
    assert result.returncode == 0, result.stderr + result.stdout
    relay = result.stdout.split("Step 4 of 6")[1].split("Step 5 of 6")[0]
    assert_in_order(relay, ["attempt=1 deferred: 451 4.3.0", "attempt=2 delivered: 250 2.0.0",
                            "connection 1", "S: 451 4.3.0", "connection 2", "S: 250 2.0.0"])


def test_keep_data_and_pause(tmp_path: Path) -> None:
    result = demo("--keep-data", str(tmp_path / "lab"), "--pause", stdin="\n" * 6)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.count("[press Enter for the next step]") == 6
    assert (tmp_path / "lab" / "bob.lab.db").exists()
    assert (tmp_path / "lab" / "alice.lab.db").exists()


def test_missing_attachment_is_a_clear_error(tmp_path: Path) -> None:
    result = demo("--attach", str(tmp_path / "nope.pdf"))
    assert result.returncode == 2
    assert "cannot attach" in result.stderr and "Traceback" not in result.stderr
