"""Drive a real headless Chromium over the DevTools protocol, with no dependency beyond the stdlib.

Chromium's ``--remote-debugging-pipe`` speaks CDP over two inherited file descriptors (it reads
commands on fd 3 and writes replies and events on fd 4, one NUL-terminated JSON message each), so no
websocket client and no port are needed. Used by the report's browser test and to take the
screenshot in the docs::

    with Chromium() as browser:
        page = browser.open(Path("report.html"))
        page.evaluate("document.title")
        page.screenshot(Path("report.png"))
        page.errors, page.requests   # console errors / exceptions, and every request the page made

The flags keep the browser offline and quiet (no first-run, sync, component updates, QUIC or
background networking) and run it as root in a container (``--no-sandbox``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """Chromium failed to start, died, or answered a command with an error."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$CALIB_CHROMIUM``, else the usual names on PATH."""
    env = os.environ.get("CALIB_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab, attached with a flat session; records errors and network requests as they come."""

    def __init__(self, browser: Chromium, session_id: str):
        self.browser = browser
        self.session_id = session_id
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0) -> dict[str, Any]:
        return self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append((params.get("type", ""), text))
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":  # CSP violations and failed loads land here
                self.errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))

    def navigate(self, url: str, *, timeout: float = 30.0) -> None:
        self.browser.drain_events()
        self.send("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", session_id=self.session_id, timeout=timeout)

    def evaluate(self, expression: str, *, timeout: float = 30.0) -> Any:
        """Value of a JavaScript expression (returned by value); raises BrowserError on an exception."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        timeout=timeout)
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluate({expression!r}): {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the first element matching ``selector``."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise BrowserError(f"click: no element matches {selector!r}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path, *, width: int = 1280, full_page: bool = True, max_height: int = 8000) -> Path:
        """PNG of the page (the whole document when ``full_page``, capped at ``max_height`` pixels)."""
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", metrics)  # lay out at the final width first
        if full_page:
            metrics["height"] = min(int(self.evaluate("document.documentElement.scrollHeight") or 900), max_height)
            self.send("Emulation.setDeviceMetricsOverride", metrics)
        # Software rendering of a tall page on a busy 2-core machine can take well over 30 s.
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                         timeout=180.0)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    """A headless Chromium process driven over ``--remote-debugging-pipe``. Use as a context manager."""

    def __init__(self, binary: str | None = None, *, extra_flags: tuple[str, ...] = ()):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no Chromium found: install Debian's chromium package or set $CALIB_CHROMIUM")
        self.extra_flags = extra_flags
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self._pages: dict[str, Page] = {}
        self._proc: subprocess.Popen | None = None
        self._profile: tempfile.TemporaryDirectory | None = None
        self.stderr = b""

    # ------------------------------------------------------------------ process

    def __enter__(self) -> Chromium:  # noqa: PYI034 - typing.Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="calib-chromium-")
        to_child_r, self._to_child = os.pipe()  # we write commands; Chromium reads them on fd 3
        self._from_child, from_child_w = os.pipe()  # Chromium writes on fd 4; we read
        # Park the child's ends at fd >= 10 so that moving them to 3 and 4 cannot clobber one with
        # the other; a tiny Python trampoline moves them and execs Chromium (no preexec_fn, which
        # is unsafe with threads; dash cannot redirect fds above 9).
        parked = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]
        os.close(to_child_r)
        os.close(from_child_w)
        to_child_r, from_child_w = parked
        trampoline = (f"import os, sys; os.dup2({to_child_r}, 3); os.dup2({from_child_w}, 4); "
                      "os.execv(sys.argv[1], sys.argv[1:])")
        args = [sys.executable, "-S", "-c", trampoline,
                self.binary, *FLAGS, *self.extra_flags, f"--user-data-dir={self._profile.name}", "about:blank"]
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr_file,
            pass_fds=(to_child_r, from_child_w),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        try:
            self.send("Target.setDiscoverTargets", {"discover": False}, timeout=60.0)  # first reply = alive
        except BrowserError as e:
            self.close()
            tail = self.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise BrowserError(f"{self.binary} did not start: {e}; its last words: {' | '.join(tail)}") from None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5.0)
            except BrowserError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        for fd in (getattr(self, "_to_child", None), getattr(self, "_from_child", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_child = self._from_child = None
        if getattr(self, "_stderr_file", None) is not None:
            self._stderr_file.seek(0)
            self.stderr = self._stderr_file.read()[-4000:]
            self._stderr_file.close()
            self._stderr_file = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # ------------------------------------------------------------------ protocol

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    page = self._pages.get(msg.get("sessionId", ""))
                    if page is not None:
                        page._on_event(msg.get("method", ""), msg.get("params", {}))
                    self._events.put(msg)

    _closed = False

    def send(self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Send one command and wait for its reply's ``result``; BrowserError on an error reply."""
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        try:
            os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        except (OSError, TypeError) as e:
            raise BrowserError(f"{method}: Chromium is not running ({e})") from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    what = "exited" if self._closed else f"did not answer within {timeout:.0f} s"
                    raise BrowserError(f"{method}: Chromium {what}")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def drain_events(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()

    def wait_event(self, method: str, *, session_id: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no {method} event within {timeout:.0f} s")
            try:
                msg = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self._closed:
                    raise BrowserError(f"Chromium exited while waiting for {method}") from None
                continue
            if msg.get("method") == method and (session_id is None or msg.get("sessionId") == session_id):
                return msg.get("params", {})

    def new_page(self) -> Page:
        """A fresh tab with Runtime, Log, Network and Page events on (they record errors and requests)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.send(f"{domain}.enable")
        return page

    def open(self, path: Path, *, timeout: float = 60.0) -> Page:
        """A new tab showing the local file ``path`` (file:// URL), after its load event."""
        page = self.new_page()
        page.navigate(Path(path).resolve().as_uri(), timeout=timeout)
        return page
