"""``mua demo --web`` run as a user runs it: it prints the URL, serves the pages, and stops on
Ctrl-C with one line; ``mua demo`` without ``--web`` is tested in tests/demo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_web_serves_the_pages_until_ctrl_c() -> None:
    # faulthandler: a demo that does not stop is killed with SIGABRT, which prints its stacks
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1",
           "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mua", "demo", "--web", "--port", "0", "--lang", "zh"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", cwd=ROOT,
        env=env)
    assert process.stdout is not None
    try:
        first = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/flow", first)
        assert match, first
        base = match.group(1)
        with urllib.request.urlopen(f"{base}/flow", timeout=10) as response:
            assert response.status == 200 and b'src="/static/flow.js"' in response.read()
        with urllib.request.urlopen(f"{base}/api/v1/pages/config", timeout=10) as response:
            config = json.load(response)
        assert config["lang"] == "zh" and config["lab"]["recipient"]["address"] == "bob@bob.lab"
        assert config["peers"][0]["domains"] == ["bob.lab"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # never left behind for the next test
            out, err = process.communicate(timeout=30)
            raise AssertionError(f"mua demo --web did not stop on Ctrl-C:\n{err[-5000:]}") from None
    assert process.returncode == 130, err
    assert err.strip() == "mua: interrupted"
    assert "Traceback" not in out + err
