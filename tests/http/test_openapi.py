"""The OpenAPI document and the routes agree: each route documented, each documented path served."""

from __future__ import annotations

import re

from http_helpers import Api

from mta.http.app import routes
from mta.http.openapi import DOCUMENT


def _served() -> set[tuple[str, str]]:
    return {(route.method.lower(), route.path) for route in routes()}


def _documented(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in document["paths"].items() for method in ops}


async def test_the_served_document_matches_the_routes(api: Api) -> None:
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200 and document == DOCUMENT
    assert document["openapi"].startswith("3.")
    assert _documented(document) == _served()


def test_every_path_parameter_is_declared() -> None:
    for path, ops in DOCUMENT["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == names, (method, path)
            assert "200" in op["responses"] and op["summary"]


async def test_documented_paths_answer_and_undocumented_do_not(api: Api) -> None:
    for method, path in sorted(_served()):
        if path == "/api/v1/events":
            continue  # a stream: tests/http/test_http_events.py
        concrete = (path.replace("{address}", "bob@bob.lab").replace("{id}", "1")
                    .replace("{index}", "0").replace("{ident}", "1"))
        if method == "get":
            concrete += "?timeout=0" if path.endswith("/wait") else ""
        status, _ = await api.call(method.upper(), concrete,
                                   json={"reply": "451"} if method == "post" else None)
        assert status != 405 and status < 500, (method, path, status)
    assert (await api.get("/api/v1/undocumented"))[0] == 404
