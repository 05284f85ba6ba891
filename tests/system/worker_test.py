"""Separate worker processes: `longcat serve --workers 0` only takes requests; two `longcat worker`
processes sharing its job database and storage run the jobs. Checks every job completes exactly
once, that both processes are used only through the shared queue, that the webhook of every job
carries fal's Ed25519 signature and that it verifies against the server's
`/.well-known/jwks.json` (server and workers on their default key file and lease), and that a
worker stopped with SIGTERM exits cleanly.

Needs the `cryptography` package (tests/clients/requirements.txt; scripts/test.sh runs this in
the clients' venv).

Usage: worker_test.py BINARY
"""

import base64
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import APP, Server, free_port, request, test_image_data_uri

KEY = "worker-test-key"


class Hooks(http.server.BaseHTTPRequestHandler):
    """Records every webhook (headers and raw body); answers 200."""

    received = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Hooks.lock:
            Hooks.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def verify(headers, body, jwks):
    """fal's webhook signature: Ed25519 over request id, user id, timestamp, sha256(body)."""
    h = {k.lower(): v for k, v in headers.items()}
    ts = h["x-fal-webhook-timestamp"]
    assert abs(time.time() - int(ts)) < 600, ts
    message = "\n".join([h["x-fal-webhook-request-id"], h["x-fal-webhook-user-id"], ts,
                         hashlib.sha256(body).hexdigest()]).encode()
    signature = bytes.fromhex(h["x-fal-webhook-signature"])
    for k in jwks["keys"]:
        x = base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4))
        try:
            Ed25519PublicKey.from_public_bytes(x).verify(signature, message)
            return True
        except InvalidSignature:
            pass
    return False


def main(binary):
    binary = os.path.abspath(binary)
    work = tempfile.mkdtemp(prefix="longcat-workers-")
    port = free_port()
    hook_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    hook_url = "http://127.0.0.1:%d/hook" % hook_server.server_address[1]
    # Every process runs in `work`, so each one's default key file (./data/...) is the same
    # file, as in a deployment started from one directory.
    server = Server(binary, work, port, KEY, cwd=work,
                    extra=["--workers", "0", "--allow-private-webhook-urls"])
    server.start()
    workers = []
    try:
        for i in range(2):
            log = open(os.path.join(work, "worker%d.log" % i), "wb")
            workers.append(subprocess.Popen(
                [binary, "worker", "--database-url", "sqlite://" + os.path.join(work, "longcat.db"),
                 "--storage", os.path.join(work, "files"), "--public-url", server.base,
                 "--allow-private-webhook-urls"],
                stdout=log, stderr=subprocess.STDOUT, cwd=work))
        image = test_image_data_uri(work)
        ids = []
        for i in range(4):
            st, _, body = request("POST", "%s/queue/%s?fal_webhook=%s" % (
                server.base, APP, urllib.parse.quote(hook_url, safe="")),
                                  {"image_url": image, "num_frames": 17, "seed": i,
                                   "num_inference_steps": 8, "num_refine_inference_steps": 8}, key=KEY)
            assert st in (200, 202), (st, body)
            ids.append(body["request_id"])
        status_url = "%s/queue/fal-ai/longcat-video/requests/%%s/status?logs=1" % server.base
        done = {}
        deadline = time.time() + 300
        while len(done) < len(ids) and time.time() < deadline:
            for rid in ids:
                if rid not in done:
                    body = request("GET", status_url % rid, key=KEY)[2]
                    if body["status"] == "COMPLETED":
                        done[rid] = body
            time.sleep(0.25)
        assert len(done) == len(ids), "not all jobs completed: %r" % (set(ids) - set(done))
        used = set()
        for rid, body in done.items():
            assert not body.get("error"), body
            starts = [l["message"] for l in body["logs"] if l["message"].startswith("attempt ")]
            assert len(starts) == 1, starts  # ran exactly once
            used.add(starts[0].split(" on worker ")[-1])
            st, _, result = request("GET", "%s/queue/fal-ai/longcat-video/requests/%s" % (server.base, rid), key=KEY)
            assert st == 200 and result["video"]["file_size"] > 0, (st, result)
            st, _, data = request("GET", result["video"]["url"], key=None)
            assert st == 200 and len(data) == result["video"]["file_size"], st
        print("worker test: %d jobs completed once each by worker(s) %s" % (len(ids), sorted(used)))
        # Webhooks: one per job, each signed with the key the server publishes.
        deadline = time.time() + 120
        while time.time() < deadline:
            with Hooks.lock:
                if len(Hooks.received) >= len(ids):
                    break
            time.sleep(0.25)
        with Hooks.lock:
            received = list(Hooks.received)
        got = sorted(json.loads(body)["request_id"] for _, body in received)
        assert got == sorted(ids), (got, ids)
        st, _, jwks = request("GET", server.base + "/.well-known/jwks.json", key=None)
        assert st == 200 and jwks["keys"], (st, jwks)
        for headers, body in received:
            assert verify(headers, body, jwks), "webhook signature does not verify: %r" % headers
            assert json.loads(body)["status"] == "OK", body
        print("worker test: %d webhooks verified against the server's JWKS" % len(received))
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(timeout=60) == 0, "worker exit code %s" % w.returncode
        return 0
    except Exception:
        print(server.log_tail())
        for i in range(len(workers)):
            with open(os.path.join(work, "worker%d.log" % i), "rb") as f:
                print(f.read()[-3000:].decode("utf-8", "replace"))
        raise
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        server.stop()
        hook_server.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
