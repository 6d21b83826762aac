"""``vtk serve``: a checkpoint or an exported ONNX model behind HTTP, on LitServe.

    vtk serve runs/demo_detection/version_0/checkpoints/last.ckpt --port 8000
    curl --data-binary @image.jpg -H "Content-Type: image/jpeg" http://127.0.0.1:8000/predict

* ``POST /predict``: the image as the request body (``Content-Type: image/...`` or
  ``application/octet-stream``), as a multipart upload (any file field), or as JSON
  ``{"image": "<base64>"}``; for segmentation ``"format": "png"`` (default: the class map as a
  base64 PNG) or ``"rle"`` (row-major run lengths), in JSON or as ``?format=rle``. The answer is
  the task's JSON: classes and scores (multi-label: every class at or above the threshold,
  best first, perhaps none); boxes (x1, y1, x2, y2 in the image's pixels) with class
  names, the dataset's category ids and scores; or the class map.
* ``GET /health`` (``ok``), ``GET /`` a page to drop an image on and see the drawn result (no
  external assets).
* Limits: the upload size (``--max_upload_mb``, 413), the image size in pixels
  (``--max_pixels``, 413), the request time (``--timeout``, 504; an upload slower than that,
  408); an empty body, a file that is
  not an image or is truncated, bad JSON and another content type are a 4xx with a one-line
  reason, and the server keeps serving. ``--api_key`` (or ``VTK_API_KEY``): every route but the
  page and ``/health`` needs the header ``X-API-Key`` (401 otherwise). It binds to 127.0.0.1 unless ``--host`` says
  otherwise.
* ``--max_batch_size`` / ``--batch_timeout``: LitServe's dynamic batching (requests arriving
  within the timeout are predicted together); ``--workers``: inference processes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
from typing import Any

import numpy as np

try:  # vtk serve needs litserve; the rest of vtk does not
    import litserve as _ls

    _LitAPI = _ls.LitAPI
except ImportError:  # pragma: no cover - answered by vtk serve's own message
    _LitAPI = object

#: what the page and the errors say the body may be
ACCEPTED = 'an image body (image/*), a multipart upload or JSON {"image": base64}'


class RequestGuard:
    """ASGI middleware in front of LitServe: the API key, the upload size, and every accepted
    form of ``POST /predict`` turned into one JSON body ``{"image": base64, "format": ...}``;
    anything else answered here with a 4xx and a one-line reason."""

    #: what answers without the API key: the page (it asks for the key) and the health check
    OPEN = ("/", "/health")

    def __init__(
        self, app: Any, api_key: str | None = None, max_bytes: int = 20 << 20,
        timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.app, self.api_key, self.max_bytes, self.timeout = app, api_key, max_bytes, timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if (
            self.api_key is not None
            and scope["path"] not in self.OPEN
            and headers.get("x-api-key") != self.api_key
        ):  # every route LitServe and FastAPI add (/info, /docs, /openapi.json) included
            await _reply(send, 401, "missing or wrong API key: send it in the X-API-Key header")
            return
        if scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(send, 413, f"the upload is larger than {self.max_bytes >> 20} MB")
            return
        body = b""
        more = True
        deadline = asyncio.get_running_loop().time() + self.timeout
        while more:
            left = deadline - asyncio.get_running_loop().time()
            try:  # a slow upload (1 byte a second) would hold a connection open for ever
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except asyncio.TimeoutError:
                await _reply(send, 408, f"the upload took longer than {self.timeout:g} s")
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await _reply(send, 413, f"the upload is larger than {self.max_bytes >> 20} MB")
                return
        if not body:
            await _reply(send, 400, f"the request has no body: send {ACCEPTED}")
            return
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        query = dict(
            p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p
        )
        fmt = query.get("format", "png")
        if kind.startswith("image/") or kind == "application/octet-stream":
            image = body
        elif kind == "application/json":
            try:
                data = json.loads(body)
                image = base64.b64decode(data["image"], validate=True)
                fmt = data.get("format", fmt)
            except (ValueError, KeyError, TypeError):
                await _reply(send, 400, 'the JSON body must be {"image": "<base64 of the file>"}')
                return
        elif kind == "multipart/form-data":
            image = await _first_file(scope, body)
            if image is None:
                await _reply(send, 400, "the multipart upload holds no file")
                return
        else:
            await _reply(
                send, 415, f"content type {kind or '(none)'} is not accepted: send {ACCEPTED}"
            )
            return
        if fmt not in ("png", "rle"):
            await _reply(send, 400, f"format is png or rle, got {fmt!r}")
            return
        payload = json.dumps({"image": base64.b64encode(image).decode(), "format": fmt}).encode()
        scope = {**scope, "headers": [
            *[(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")],
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        ]}  # fmt: skip
        await self.app(scope, _receiver(payload), send)


def _receiver(body: bytes) -> Any:
    """An ASGI ``receive`` that gives ``body`` once, as one message (a body already read)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _first_file(scope: dict, body: bytes) -> bytes | None:
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    form = await Request(scope, _receiver(body)).form()
    for value in form.values():
        if isinstance(value, UploadFile):
            return await value.read()
    return None


async def _reply(send: Any, status: int, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """The upright RGB array of an uploaded file; a 4xx ``HTTPException`` with the reason
    when it is not an image, is truncated or is larger than ``max_pixels``."""
    from fastapi import HTTPException
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise HTTPException(
                    413, f"the image is {w}x{h} = {w * h:,} pixels, more than {max_pixels:,}"
                )
            img.load()
            upright = ImageOps.exif_transpose(img) or img
            return np.array(upright.convert("RGB"))
    except UnidentifiedImageError:
        raise HTTPException(400, "the file is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise HTTPException(
            400, f"the image cannot be decoded (truncated or damaged): {e}"
        ) from None


def encode(result: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The JSON of one prediction, by its form (no task is named): boxes, a list of classes
    (classification, multi-label), or a label map (``fmt``: ``png`` or ``rle``)."""
    if "boxes" in result:
        return {
            "boxes": np.asarray(result["boxes"], dtype=float).round(2).tolist(),
            "labels": list(result["labels"]), "names": list(result["names"]),
            "category_ids": list(result["category_ids"]),
            "scores": [round(float(s), 5) for s in result["scores"]],
        }  # fmt: skip
    if isinstance(result["labels"], list):
        return {"labels": result["labels"], "names": result["names"], "scores": result["scores"]}
    labels = np.asarray(result["labels"])
    out: dict[str, Any] = {"height": int(labels.shape[0]), "width": int(labels.shape[1])}
    if fmt == "rle":
        flat = labels.ravel()
        change = np.flatnonzero(np.diff(flat)) + 1
        starts = np.concatenate([[0], change])
        out["rle"] = {"values": flat[starts].tolist(),
                      "counts": np.diff(np.concatenate([starts, [flat.size]])).tolist()}  # fmt: skip
        return out
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)).save(
        buffer, format="PNG"
    )
    out["png"] = base64.b64encode(buffer.getvalue()).decode()
    return out


class VTKAPI(_LitAPI):  # type: ignore[misc,valid-type]
    """The LitServe API of a vtk model: decode (checks and limits), batch, predict, encode."""

    def __init__(
        self, model_path: str, max_pixels: int, max_batch_size: int = 1, batch_timeout: float = 0.0
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_path, self.max_pixels = model_path, max_pixels

    def setup(self, device: str) -> None:
        import vtk

        kwargs = {} if self.model_path.endswith(".onnx") else {"device": "cpu"}
        self.model = vtk.load(self.model_path, **kwargs)

    def decode_request(self, request: dict) -> tuple[np.ndarray, str]:
        return decode_image(base64.b64decode(request["image"]), self.max_pixels), request["format"]

    def batch(self, inputs: list) -> list:
        return inputs

    def unbatch(self, output: list) -> list:
        return output

    def predict(self, inputs: Any) -> Any:
        single = isinstance(inputs, tuple)
        items = [inputs] if single else inputs
        results = self.model.predict([image for image, _ in items])
        encoded = [encode(r, fmt) for r, (_, fmt) in zip(results, items)]
        return encoded[0] if single else encoded

    def encode_response(self, output: dict) -> dict:
        return output


PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>vtk serve</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222}
#drop{border:2px dashed #888;padding:2em;text-align:center;cursor:pointer;max-width:40em}
#drop.over{background:#eef}
canvas{margin-top:1em;max-width:100%}
#status{margin-top:1em;white-space:pre-wrap}
</style></head><body>
<h1>vtk serve</h1>
<p>API key (if the server has one): <input id="key" type="password"></p>
<div id="drop">Drop an image here, or click to choose one<input id="file" type="file" accept="image/*" hidden></div>
<div id="status"></div>
<canvas id="view"></canvas>
<script>
const drop = document.getElementById("drop"), file = document.getElementById("file");
const status = document.getElementById("status"), view = document.getElementById("view");
drop.onclick = () => file.click();
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = e => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files[0]); };
file.onchange = () => send(file.files[0]);
const colours = ["#e6194b","#3cb44b","#4363d8","#f58231","#911eb4","#46f0f0","#f032e6","#bcf60c"];
async function send(f) {
  if (!f) return;
  status.textContent = "predicting " + f.name + " ...";
  const headers = {"Content-Type": f.type || "application/octet-stream"};
  const key = document.getElementById("key").value;
  if (key) headers["X-API-Key"] = key;
  const response = await fetch("/predict", {method: "POST", headers, body: f});
  const answer = await response.json();
  if (!response.ok) { status.textContent = "error " + response.status + ": " + answer.detail; return; }
  const image = await createImageBitmap(f, {imageOrientation: "from-image"});
  view.width = image.width; view.height = image.height;
  const g = view.getContext("2d");
  g.drawImage(image, 0, 0);
  g.lineWidth = Math.max(2, image.width / 300); g.font = Math.max(12, image.width / 50) + "px sans-serif";
  let text = "";
  if (answer.boxes) {
    answer.boxes.forEach((b, i) => {
      if (answer.scores[i] < 0.3) return;
      g.strokeStyle = g.fillStyle = colours[answer.labels[i] % colours.length];
      g.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
      g.fillText(answer.names[i] + " " + answer.scores[i].toFixed(2), b[0], b[1] - 2);
    });
    text = answer.boxes.length + " detections (boxes drawn from score 0.3)";
  } else if (answer.names) {
    text = answer.names.map((n, i) => n + " " + answer.scores[i].toFixed(3)).join("\n") || "no class at the threshold";
    if (answer.names.length) {
      g.fillStyle = "black"; g.fillRect(0, 0, view.width, 30);
      g.fillStyle = "white"; g.fillText(answer.names[0] + " " + answer.scores[0].toFixed(2), 4, 22);
    }
  } else if (answer.png) {
    const mask = await createImageBitmap(await (await fetch("data:image/png;base64," + answer.png)).blob());
    const tmp = new OffscreenCanvas(mask.width, mask.height), t = tmp.getContext("2d");
    t.drawImage(mask, 0, 0);
    const px = t.getImageData(0, 0, mask.width, mask.height), over = g.getImageData(0, 0, view.width, view.height);
    for (let i = 0; i < px.data.length; i += 4) {
      const c = px.data[i]; if (c === 0) continue;
      const hex = colours[c % colours.length];
      over.data[i] = (over.data[i] + parseInt(hex.slice(1, 3), 16)) / 2;
      over.data[i + 1] = (over.data[i + 1] + parseInt(hex.slice(3, 5), 16)) / 2;
      over.data[i + 2] = (over.data[i + 2] + parseInt(hex.slice(5, 7), 16)) / 2;
    }
    g.putImageData(over, 0, 0);
    text = "class map " + answer.width + "x" + answer.height;
  }
  status.textContent = f.name + ": " + text;
  view.dataset.done = "1";
}
</script></body></html>
"""


def page() -> str:
    """The page at ``GET /``: drop an image, see the drawn result (no external assets)."""
    return PAGE


def build_server(args: argparse.Namespace) -> Any:
    import warnings

    import litserve as ls
    from fastapi.responses import HTMLResponse

    # vtk's API batches when asked (--max_batch_size); at 1 LitServe's advice is not the user's
    warnings.filterwarnings("ignore", message="The LitServer has both batch and unbatch methods")
    api = VTKAPI(args.model, args.max_pixels, args.max_batch_size, args.batch_timeout)
    guard = (
        RequestGuard,
        {
            "api_key": args.api_key,
            "max_bytes": int(args.max_upload_mb * (1 << 20)),
            "timeout": args.timeout,
        },
    )
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers,
                          timeout=args.timeout, middlewares=[guard])  # fmt: skip
    app = server.app
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page()

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vtk serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("model", help="a checkpoint of vtk fit, the name of weights vtk ships "
                        "(vtk list weights), or an ONNX file of vtk export")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="inference processes")
    parser.add_argument("--max_batch_size", type=int, default=1)
    parser.add_argument("--batch_timeout", type=float, default=0.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (504)")
    parser.add_argument("--max_upload_mb", type=float, default=20.0)
    parser.add_argument("--max_pixels", type=int, default=40_000_000)
    parser.add_argument("--api_key", default=os.environ.get("VTK_API_KEY"))
    args = parser.parse_args(argv)
    from vtk import zoo
    from vtk.checkpoint import read_checkpoint
    from vtk.errors import VTKError

    try:
        args.model = zoo.resolve(args.model)  # the name of weights vtk ships: their checkpoint
        if args.model.endswith(".onnx"):
            import vtk

            vtk.load(args.model)  # checked here: a bad file is one line, before any worker starts
        else:
            read_checkpoint(args.model)
        server = build_server(args)
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    except ImportError as e:
        raise SystemExit(
            f"vtk: error: vtk serve needs litserve: pip install litserve ({e})."
        ) from None
    _stop_workers_with_the_server()
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"vtk serve: {args.model} at http://{shown}:{args.port}/ (the page; POST an image to "
          f"/predict; Ctrl-C stops)", flush=True)  # fmt: skip
    server.run(host=args.host, port=args.port, generate_client_file=False,
               api_server_worker_type="thread", log_level="warning")  # fmt: skip


def _stop_workers_with_the_server() -> None:
    """On SIGTERM (``kill``, a service manager) stop LitServe's inference workers too: they are
    processes of their own and would otherwise live on, holding the model's memory."""
    import multiprocessing
    import signal

    def stop(signum: int, frame: Any) -> None:
        for child in multiprocessing.active_children():
            child.terminate()
        for child in multiprocessing.active_children():
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
        os._exit(0)  # LitServe's main loop would catch SystemExit and keep waiting

    signal.signal(signal.SIGTERM, stop)
