"""vtk serve's request guard as an ASGI middleware, without a server: the API key guards every
route but the page and /health (LitServe's /info, FastAPI's /docs and /openapi.json too), and
an upload slower than the time limit is answered 408 instead of holding the connection."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("litserve")

from vtk.serve import RequestGuard


def _call(guard: RequestGuard, path: str, headers=(), method: str = "GET", receive=None):
    sent: list[dict] = []
    reached: list[str] = []

    async def app(scope, receive, send) -> None:
        reached.append(scope["path"])

    async def send(message) -> None:
        sent.append(message)

    async def nothing():
        return {"type": "http.request", "body": b"", "more_body": False}

    guard.app = app
    scope = {"type": "http", "path": path, "method": method, "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in headers]}  # fmt: skip
    asyncio.run(guard(scope, receive or nothing, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, (json.loads(body) if body else None), reached


@pytest.mark.parametrize("path", ["/info", "/docs", "/openapi.json", "/predict"])
def test_the_key_guards_every_route_but_the_page_and_health(path) -> None:
    guard = RequestGuard(None, api_key="s3cret")
    status, answer, reached = _call(guard, path)
    assert status == 401 and "X-API-Key" in answer["detail"] and not reached
    status, _, reached = _call(guard, path, headers=[("x-api-key", "s3cret")])
    assert path == "/predict" or reached == [path]
    for open_path in ("/", "/health"):
        assert _call(guard, open_path)[2] == [open_path]


def test_a_slow_upload_is_answered_408() -> None:
    guard = RequestGuard(None, timeout=0.3)

    async def one_byte_a_second():
        await asyncio.sleep(1.0)
        return {"type": "http.request", "body": b"x", "more_body": True}

    status, answer, reached = _call(guard, "/predict", [("content-type", "image/png")], "POST",
                                    one_byte_a_second)  # fmt: skip
    assert status == 408 and "longer than 0.3 s" in answer["detail"] and not reached
