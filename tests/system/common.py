"""Helpers for the system tests: start/stop a real `longcat serve` on loopback, plain HTTP calls."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

APP = "fal-ai/longcat-video/image-to-video/720p"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `longcat serve` process with its own database and storage under `workdir`."""

    def __init__(self, binary, workdir, port, key, extra=(), cwd=None, env=None):
        self.binary, self.workdir, self.port, self.key = binary, workdir, port, key
        self.extra = list(extra)
        self.cwd, self.env = cwd, env
        self.proc = None
        self.base = "http://127.0.0.1:%d" % port

    def start(self, timeout=120):
        log = open(os.path.join(self.workdir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--public-url", self.base,
             "--database-url", "sqlite://" + os.path.join(self.workdir, "longcat.db"),
             "--storage", os.path.join(self.workdir, "files"),
             "--api-key", self.key] + self.extra,
            stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s" % self.proc.returncode)
            try:
                if request("GET", self.base + "/health", key=None)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError("server did not become healthy")

    def kill9(self):
        self.proc.kill()  # SIGKILL
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n=60):
        with open(os.path.join(self.workdir, "server.log"), "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")


def request(method, url, body=None, key=None, timeout=60):
    """Returns (status, headers, parsed JSON or raw bytes)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Key " + key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, dict(e.headers), e.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw


def test_image_data_uri(workdir):
    path = os.path.join(workdir, "input.png")
    if not os.path.exists(path):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1",
                        "-frames:v", "1", path], check=True, timeout=60)
    import base64
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()
