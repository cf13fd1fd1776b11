"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/v1/openapi.json``.

Written out by hand (not generated from the routes) so that a test can hold the two against
each other: every route is documented and every documented path is served.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

JSON = "application/json"


def _q(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": kind}}


def _p(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def _op(summary: str, *parameters: dict[str, Any], ok: str = "OK", ok_type: str = JSON,
        errors: tuple[int, ...] = (400, 401, 403, 404), body: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok, "content": {ok_type: {}}}}
    for status in errors:
        responses[str(status)] = {"$ref": "#/components/responses/Error"}
    op: dict[str, Any] = {"summary": summary, "parameters": list(parameters),
                          "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": {
            "type": "object", "properties": {"reply": {"type": "string"},
                                             "count": {"type": "integer"}}}}}}
    return op


ADDRESS = _p("address", "the mailbox's address, e.g. bob@bob.lab")
ID = _p("id", "the message's id (from a listing)")
FILTERS = (_q("to", "contains, in To, Cc or the mailbox address"),
           _q("from", "contains, in From or the envelope sender"),
           _q("subject", "contains, in the decoded Subject"),
           _q("since", "stored at or after: epoch seconds or ISO 8601"))

PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": _op("liveness: the listener answers and the store reads",
                            errors=())},
    "/api/v1/openapi.json": {"get": _op("this document", errors=())},
    "/api/v1/accounts": {"get": _op("accounts with their message counts", errors=(401,))},
    "/api/v1/mailboxes/{address}/messages": {
        "get": _op("a mailbox's messages, newest first", ADDRESS, *FILTERS,
                   _q("limit", "1 to 500 (default 50)", "integer"),
                   _q("cursor", "next_cursor of the previous page")),
        "delete": _op("purge the mailbox (409 while POP3 holds it)", ADDRESS,
                      errors=(401, 403, 404, 409)),
    },
    "/api/v1/mailboxes/{address}/messages/{id}": {
        "get": _op("one message parsed: headers, text, html, attachments, trace", ADDRESS, ID),
        "delete": _op("delete one message (409 while POP3 holds the mailbox)", ADDRESS, ID,
                      errors=(401, 403, 404, 409)),
    },
    "/api/v1/mailboxes/{address}/messages/{id}/raw": {
        "get": _op("the message exactly as stored", ADDRESS, ID, ok_type="message/rfc822")},
    "/api/v1/mailboxes/{address}/messages/{id}/attachments/{index}": {
        "get": _op("one attachment, as a download with a safe file name", ADDRESS, ID,
                   _p("index", "0-based, in the order the message lists them"),
                   ok_type="application/octet-stream")},
    "/api/v1/messages/wait": {
        "get": _op("the first message that matches, as soon as it is stored", *FILTERS,
                   _q("timeout", "seconds, 0 to 300 (default 30)", "number"),
                   errors=(400, 401, 408, 503))},
    "/api/v1/events": {
        "get": _op("the event stream (Server-Sent Events); resume with Last-Event-ID",
                   _q("kind", "comma-separated event kinds"),
                   _q("step", "comma-separated steps 1-6"), _q("queue_id", "a queue id"),
                   _q("message_id", "a Message-ID"), _q("server", "a hostname or domain"),
                   _q("last_event_id", "as the Last-Event-ID header", "integer"),
                   ok_type="text/event-stream", errors=(400, 401, 403, 503))},
    "/api/v1/queue": {"get": _op("the outbound queue, as mta queue list shows it",
                                 _q("all", "true: delivered and failed rows too", "boolean"),
                                 errors=(401, 403))},
    "/api/v1/queue/flush": {"post": _op("make every queued row due now", errors=(401, 403))},
    "/api/v1/queue/{ident}": {"delete": _op(
        "delete a queue row (its number) or a message (its queue id)",
        _p("ident", "row number or queue id"), errors=(401, 403, 404))},
    "/api/v1/faults/mx": {
        "get": _op("the MX replies scripted for the next transactions", errors=(401, 403)),
        "post": _op("script the next MX replies: {\"reply\": \"451\", \"count\": 2}",
                    errors=(400, 401, 403, 409, 413, 415), body=True),
        "delete": _op("clear the scripted replies", errors=(401, 403)),
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "labmail mta HTTP API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "basic": {"type": "http", "scheme": "basic"}},
        "responses": {"Error": {"description": "a refusal", "content": {JSON: {"schema": {
            "type": "object", "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}}}}},
    },
    "security": [{"bearer": []}, {"basic": []}, {}],
    "paths": PATHS,
}


async def serve(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
