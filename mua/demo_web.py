"""``mua demo --web``: the six-step demo driven from a browser (a composition root).

Starts the demo's two domains in this process (``mta.lab``), gives each an HTTP listener with
the web pages, and waits until Ctrl-C: the teacher opens the flow page and sends, fails and
fetches from there. alice.lab's listener serves the flow page on ``--port``; bob.lab's (on a
free port) lets the page fetch as Bob and read Bob's mail, and accepts alice.lab's origin
(CORS). When the lab's domains share one event bus, the page follows one stream; otherwise
it follows both, as it does for servers in separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from dataclasses import dataclass

from mta import http as mta_http
from mta.http.pages import PageOptions, Peer
from mta.lab import LAB_QUEUE, Lab

ALICE, BOB = "alice@alice.lab", "bob@bob.lab"


@dataclass(frozen=True)
class WebDemo:
    """Where the running demo's pages are."""

    url: str        # alice.lab's listener: the flow page
    bob_url: str    # bob.lab's listener: Bob's mail


async def start_web(lab: Lab, *, port: int = 0, lang: str = "en", subject: str = "",
                    body: str = "") -> WebDemo:
    """HTTP listeners with the pages on alice.lab (``port``) and bob.lab (a free port)."""
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    accounts = ((ALICE, alice.password(ALICE)), (BOB, bob.password(BOB)))  # LAB ONLY
    shared = alice.server.bus is bob.server.bus
    alice_pages = PageOptions(lang=lang, shared_bus=shared, lab_accounts=accounts,
                              subject=subject, body=body)
    listener = await mta_http.start(alice.server, alice.server.bus, "127.0.0.1", port,
                                    pages=alice_pages)
    alice.server.listeners["http"] = listener  # closed with the server
    url = f"http://127.0.0.1:{listener.port}"
    origins = (url, f"http://localhost:{listener.port}")
    bob_pages = PageOptions(lang=lang, shared_bus=shared, lab_accounts=accounts,
                            peers=[Peer(url, ("alice.lab",))])
    bob_listener = await mta_http.start(bob.server, bob.server.bus, "127.0.0.1", 0,
                                        mta_http.Options(cors_origins=origins), pages=bob_pages)
    bob.server.listeners["http"] = bob_listener
    bob_url = f"http://127.0.0.1:{bob_listener.port}"
    alice_pages.peers.append(Peer(bob_url, ("bob.lab",)))
    return WebDemo(url, bob_url)


async def serve(args: argparse.Namespace, texts: dict[str, str]) -> int:
    """Run the web demo until Ctrl-C (``mua.cli`` turns that into one line)."""
    queue = dataclasses.replace(LAB_QUEUE, retry_initial=0.5)
    async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}, queue=queue) as lab:
        web = await start_web(lab, port=args.port, lang=args.lang,
                              subject=args.subject or texts["subject"],
                              body=args.body if args.body is not None else texts["body"])
        print(f"{texts['title']}: {web.url}/flow", flush=True)
        print(f"  Bob's mail: {web.bob_url}/mail   alice.lab server: {web.url}/server", flush=True)
        print("  Ctrl-C stops the demo.", flush=True)
        await asyncio.Event().wait()
    return 0
