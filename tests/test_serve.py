"""vtk serve over real HTTP on the loopback address: each task's answers equal vtk.load's, every
bad input is a 4xx with a reason (and the server keeps serving), the API key, and dynamic
batching giving each caller its own result under concurrency."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import VTK
from PIL import Image

import vtk

pytestmark = pytest.mark.slow  # servers in their own processes, and a browser
pytest.importorskip("litserve")
pytest.importorskip("multipart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [VTK, "serve", str(model), "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy(),
        )  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if self.get("/health")[1] == b"ok":
                    return
            except OSError:
                time.sleep(0.5)
        self.process.kill()
        raise AssertionError(f"the server did not start: {self.process.stdout.read()[-3000:]}")

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.status, r.read()

    def post(self, body: bytes, content_type: str = "image/png", headers: dict | None = None,
             path: str = "/predict") -> tuple[int, dict]:  # fmt: skip
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": content_type, **(headers or {})})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: vtk serve stops its inference workers too."""
        workers = _children(self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        deadline = time.time() + 15
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
            time.sleep(0.2)
        left = [p for p in workers if Path(f"/proc/{p}").exists()]
        for p in left:
            os.kill(p, 9)
        assert not left, f"vtk serve left {len(left)} worker processes running"
        self.output = self.process.stdout.read()
        # it said where it listens, and passed on no advice that is not the user's to act on
        assert f"at http://127.0.0.1:{self.port}/" in self.output, self.output[-2000:]
        assert "both batch and unbatch" not in self.output, self.output[-2000:]


def _children(pid: int) -> list[int]:
    """The descendants of ``pid`` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _png(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from helpers import QUIET

    folder = tmp_path_factory.mktemp("serve_cls")
    done = subprocess.run(
        [VTK, "fit", "demo_classification", "--trainer.max_steps", "2", "--data.image_size", "32", *QUIET],
        cwd=folder, capture_output=True, text=True, env=os.environ.copy(), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return next(folder.rglob("last.ckpt"))


def test_classification_answers_bad_inputs_and_the_key(classifier, tmp_path) -> None:
    server = Server(
        classifier, "--api_key", "s3cret", "--max_upload_mb", "0.05", "--max_pixels", "1000000"
    )
    key = {"X-API-Key": "s3cret"}
    try:
        images = sorted(
            (Path(os.environ["VTK_DATA_DIR"]) / "demo_classification" / "val").rglob("*.png")
        )[:3]
        expected = vtk.load(classifier, device="cpu").predict(images)
        for path, want in zip(images, expected):
            status, got = server.post(_png(path), headers=key)
            assert status == 200 and got["names"] == want["names"]
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
        # the same through multipart and JSON
        boundary = "vtkboundary"
        multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                     f"Content-Type: image/png\r\n\r\n").encode() + _png(images[0]) + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
        status, got = server.post(multipart, f"multipart/form-data; boundary={boundary}", key)
        assert status == 200 and got["names"] == expected[0]["names"]
        body = json.dumps({"image": base64.b64encode(_png(images[0])).decode()}).encode()
        assert server.post(body, "application/json", key)[1]["names"] == expected[0]["names"]
        # the key
        assert server.post(_png(images[0]))[0] == 401
        assert server.post(_png(images[0]), headers={"X-API-Key": "wrong"})[0] == 401
        # bad inputs: a 4xx with a one-line reason each
        jpeg = io.BytesIO()
        Image.new("RGB", (64, 64), (9, 99, 199)).save(jpeg, "JPEG")
        big = io.BytesIO()
        Image.new("L", (1200, 1000)).save(big, "PNG")
        cases = [
            (b"", "image/png", 400, "no body"),
            (b"hello", "text/plain", 415, "content type text/plain is not accepted"),
            (b"not an image at all", "image/jpeg", 400, "not an image"),
            (jpeg.getvalue()[:300], "image/jpeg", 400, "cannot be decoded"),
            (b"{not json", "application/json", 400, "JSON body must be"),
            (os.urandom(60_000), "image/png", 413, "larger than"),
            (big.getvalue(), "image/png", 413, "more than 1,000,000"),
        ]
        for body, kind, status, reason in cases:
            got_status, answer = server.post(body, kind, key)
            assert got_status == status and reason in answer["detail"], (kind, got_status, answer)
        assert server.get("/health") == (200, b"ok")  # still serving
        status, page = server.get("/")
        assert status == 200 and b"<canvas" in page and b"http" not in page.split(b"<script>")[1]
    finally:
        server.stop()


def test_dynamic_batching_gives_each_caller_its_own_result(classifier) -> None:
    server = Server(classifier, "--max_batch_size", "4", "--batch_timeout", "0.05")
    try:
        images = sorted(
            (Path(os.environ["VTK_DATA_DIR"]) / "demo_classification" / "val").rglob("*.png")
        )[:12]
        expected = [r["names"] for r in vtk.load(classifier, device="cpu").predict(images)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: server.post(_png(p)), images))
        assert [a[0] for a in answers] == [200] * 12
        assert [a[1]["names"] for a in answers] == expected
        # tools/load_serve.py against the same server: no errors, the server's memory read
        import runpy

        tool = runpy.run_path(
            str(Path(__file__).parents[1] / "tools" / "load_serve.py"), run_name="tool"
        )
        bodies = [(p.read_bytes(), "image/png") for p in images]
        result = tool["run"](server.url, bodies, 24, 4)
        assert result["errors"] == 0 and result["p99_ms"] >= result["p50_ms"] > 0
        assert tool["rss_mib"](server.process.pid) > 50  # the server and its worker
    finally:
        server.stop()


@pytest.mark.parametrize("recipe", ["demo_segmentation", "demo_detection"])
def test_segmentation_and_detection_answer_as_vtk_load(recipe, fit_demo, tmp_path) -> None:
    extra = (("--data.crop_size", "64") if recipe == "demo_segmentation" else
             ("--model.init_args.model.init_args.min_size", "96", "--model.init_args.model.init_args.max_size", "96"))  # fmt: skip
    ckpt = fit_demo(recipe, *extra, steps=1)
    server = Server(ckpt)
    try:
        root = Path(os.environ["VTK_DATA_DIR"]) / recipe
        image = sorted(root.rglob("*.jpg"))[0]
        want = vtk.load(ckpt, device="cpu").predict(image)
        if recipe == "demo_segmentation":
            status, got = server.post(image.read_bytes(), "image/jpeg")
            labels = np.array(Image.open(io.BytesIO(base64.b64decode(got["png"]))))
            assert status == 200 and np.array_equal(labels, want["labels"])
            status, rle = server.post(image.read_bytes(), "image/jpeg", path="/predict?format=rle")
            flat = np.repeat(rle["rle"]["values"], rle["rle"]["counts"])
            assert np.array_equal(flat.reshape(rle["height"], rle["width"]), want["labels"])
        else:
            status, got = server.post(image.read_bytes(), "image/jpeg")
            assert status == 200 and got["category_ids"] == want["category_ids"]
            np.testing.assert_allclose(got["boxes"], want["boxes"], atol=0.01)
    finally:
        server.stop()


def test_a_multilabel_model_serves_from_its_checkpoint_and_its_onnx_export(
    fit_demo, run_vtk, tmp_path
) -> None:
    """The answer is every class at or above the checkpoint's threshold, as vtk.load gives it,
    whether the server runs the checkpoint or the exported ONNX model."""
    pytest.importorskip("onnxruntime")
    ckpt = fit_demo("demo_multilabel", "--data.image_size", "32", "--data.resize_size", "32",
                    "--model.threshold", "0.45", steps=1)  # fmt: skip
    assert run_vtk("export", ckpt, "--out", tmp_path / "m.onnx") == 0
    images = sorted((Path(os.environ["VTK_DATA_DIR"]) / "demo_detection" / "val").glob("*.jpg"))
    want = vtk.load(ckpt, device="cpu").predict(images[:2])
    assert any(w["labels"] for w in want)
    for model in (ckpt, tmp_path / "m.onnx"):
        server = Server(model)
        try:
            for image, w in zip(images, want):
                status, got = server.post(image.read_bytes(), "image/jpeg")
                assert status == 200 and got["names"] == w["names"], model
                np.testing.assert_allclose(got["scores"], w["scores"], atol=1e-4)
        finally:
            server.stop()


def test_the_page_in_a_real_browser(classifier, tmp_path) -> None:
    """Debian's chromium, headless, driven by Selenium: upload an image on the page, the drawn
    result appears (a screenshot is kept in tmp_path; docs/images/serve_page.png is one)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip(
            "chromium and chromedriver are not installed (apt install chromium chromium-driver)"
        )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(classifier)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,700"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        image = sorted(
            (Path(os.environ["VTK_DATA_DIR"]) / "demo_classification" / "val" / "star").glob(
                "*.png"
            )
        )[0]
        want = vtk.load(classifier, device="cpu").predict(image)["names"][0]
        browser.get(server.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(browser, 60).until(
            lambda b: b.find_element(By.ID, "view").get_attribute("data-done") == "1"
        )
        status = browser.find_element(By.ID, "status").text
        assert status.startswith(f"{image.name}: {want} ")
        width = browser.execute_script("return document.getElementById('view').width")
        assert width == Image.open(image).width  # the image was drawn at its size
        browser.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 1000
    finally:
        browser.quit()
        server.stop()
