"""Open a local HTML page in headless Chromium and report what a person would see, and what broke.

Speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (fds 3 and 4: no port, no
websocket), so it works under pytest-socket. Every network request outside ``file:`` is sent to a
dead proxy and every host name resolves to nothing: a page that needs a CDN fails here, as offline.
Collected: console errors, uncaught exceptions, failed or HTTP >= 400 requests, element counts for
CSS selectors, the page's text and a full-page PNG screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_ENV = "DETBENCH_CHROMIUM"


def chromium_path() -> str | None:
    """DETBENCH_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    if os.environ.get(CHROMIUM_ENV):
        return os.environ[CHROMIUM_ENV]
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed requests
    counts: dict[str, int] = field(default_factory=dict)  # CSS selector -> elements
    text: str = ""  # document.body.innerText
    screenshot: bytes = b""  # PNG


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=60.0) -> dict:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (crashed?)")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            pass


def _errors(events: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(
                "console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
            )
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            out.append(f"request failed: {p.get('errorText')} ({p.get('type')})")
        elif method == "Network.responseReceived" and p.get("response", {}).get("status", 200) >= 400:
            out.append(f"HTTP {p['response']['status']}: {p['response'].get('url')}")
    return out


def open_page(
    page: Path,
    *,
    selectors: Sequence[str] = (),
    wait_for: str | None = None,
    width: int = 1280,
    height: int = 900,
    timeout: float = 60.0,
) -> PageResult:
    """Load ``page``, wait until ``wait_for`` (a selector) matches or ``timeout``, and report."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium, or set DETBENCH_CHROMIUM)")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    # Chromium reads commands from fd 3 and writes replies to fd 4; park the ends high first so the
    # dup2 calls in the child cannot clobber each other.
    high_r, high_w = os.dup2(to_chrome_r, 200), os.dup2(from_chrome_w, 201)

    def child_fds() -> None:
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    profile = tempfile.mkdtemp(prefix="detbench-chromium-")
    args = [
        exe,
        "--headless=new",
        "--remote-debugging-pipe",
        "--no-sandbox",  # root in CI containers; the page is our own file
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=child_fds,  # two dup2 calls, no locks taken
        pass_fds=(3, 4),
    )
    for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
        os.close(fd)
    pipe = _Pipe(to_chrome_w, from_chrome_r)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            pipe.send(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        pipe.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)

        def evaluate(expr: str) -> Any:
            res = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
            return res.get("result", {}).get("value")

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loaded = evaluate("document.readyState") == "complete"
            if loaded and (wait_for is None or evaluate(f"document.querySelectorAll({wait_for!r}).length")):
                break
            pipe.pump(0.2)
        pipe.pump(1.0)  # late console errors and requests
        result = PageResult()
        result.counts = {s: int(evaluate(f"document.querySelectorAll({s!r}).length") or 0) for s in selectors}
        result.text = evaluate("document.body ? document.body.innerText : ''") or ""
        size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        shot_args = {"format": "png", "captureBeyondViewport": True, "clip": clip}
        shot = pipe.send("Page.captureScreenshot", shot_args, session=session)
        result.screenshot = base64.b64decode(shot["data"])
        result.errors = _errors(pipe.events)
        with contextlib.suppress(RuntimeError, TimeoutError):
            pipe.send("Browser.close", timeout=10)
        return result
    finally:
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_spread(png: bytes) -> tuple[float, int]:
    """(grey-level standard deviation, number of distinct colours) of a PNG: a blank page is ~ (0, 1)."""
    import io

    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    return ImageStat.Stat(image.convert("L")).stddev[0], len(colours) if colours else 1 << 20
