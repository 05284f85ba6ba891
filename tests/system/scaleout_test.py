"""Scale-out: two `longcat serve --workers 0` processes and two `longcat worker` processes on one
Postgres database and one S3 bucket, behind a loopback load balancer (every process has its
address as `--public-url`, as in docs/deploy.md). The official Python fal client:

* uploads an image through server A (token and upload both on A);
* uploads a file in parts with the load balancer alternating servers on every request (token,
  multipart start, each part and complete land on A, B, A, ...), and the same for the fal
  repository protocol (initiate on A, PUT on B) with plain HTTP;
* submits three jobs through server B, polls them through server A;
* while the first job runs, its worker is killed with SIGKILL: the job is re-run by the other
  worker after its lease expires and completes once; the others complete once each;
* downloads every video from its URL (and a byte range of it) and checks it with ffprobe.

Needs LONGCAT_TEST_POSTGRES_URL (scripts/with-postgres.sh) and LONGCAT_TEST_S3_STORAGE plus the
AWS_* settings (scripts/with-s3.sh), and fal-client (run it in tests/clients/.venv). Exits 75
when Postgres or S3 is not configured.

Usage: scaleout_test.py BINARY
"""

import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from common import APP, free_port, request

KEY = "scaleout-test-key"
LEASE_SECONDS = 4
JOB = {"prompt": "a cat walks", "num_frames": 17, "num_inference_steps": 8,
       "num_refine_inference_steps": 8}


class Balancer(http.server.ThreadingHTTPServer):
    """A loopback reverse proxy in front of the servers. `mode` is a server name (every request
    goes there) or "alternate" (round robin per request); `served` records (server, method,
    path) for every request."""

    daemon_threads = True

    def __init__(self, backends):
        super().__init__(("127.0.0.1", 0), Forward)
        self.backends = backends
        self.mode = next(iter(backends))
        self.turn = 0
        self.lock = threading.Lock()
        self.served = []

    def pick(self, method, path):
        with self.lock:
            if self.mode == "alternate":
                names = sorted(self.backends)
                name = names[self.turn % len(names)]
                self.turn += 1
            else:
                name = self.mode
            self.served.append((name, method, path))
            return name

    def route(self, mode):
        with self.lock:
            self.mode, self.turn = mode, 0
            self.served = []


class Forward(http.server.BaseHTTPRequestHandler):
    def forward(self):
        lb = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        name = lb.pick(self.command, self.path)
        conn = http.client.HTTPConnection("127.0.0.1", lb.backends[name], timeout=120)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                 "content-length", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = forward

    def log_message(self, *args):
        pass


def ffprobe_frames(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
                          "-show_entries", "stream=nb_read_frames", "-of", "json", path],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return int(json.loads(out)["streams"][0]["nb_read_frames"])


def attempts(logs):
    """(attempt number, worker id) of every "attempt N started on worker W" log line."""
    found = []
    for line in logs or []:
        m = re.match(r"attempt (\d+) started on worker (\S+)", line["message"])
        if m:
            found.append((int(m.group(1)), m.group(2)))
    return found


def main(binary):
    pg = os.environ.get("LONGCAT_TEST_POSTGRES_URL")
    s3 = os.environ.get("LONGCAT_TEST_S3_STORAGE")
    if not pg or not s3:
        print("scaleout test: SKIPPED (needs LONGCAT_TEST_POSTGRES_URL and LONGCAT_TEST_S3_STORAGE: "
              "run under scripts/with-postgres.sh scripts/with-s3.sh)", file=sys.stderr)
        return 75
    import fal_client
    import fal_client.client as fc

    binary = os.path.abspath(binary)
    work = tempfile.mkdtemp(prefix="longcat-scaleout-")
    storage = s3.rstrip("/") + "/scaleout"
    ports = {"A": free_port(), "B": free_port()}
    lb = Balancer(ports)
    threading.Thread(target=lb.serve_forever, daemon=True).start()
    public = "http://127.0.0.1:%d" % lb.server_address[1]
    shared = ["--database-url", pg, "--storage", storage, "--public-url", public,
              "--lease-seconds", str(LEASE_SECONDS)]
    procs, logs = {}, {}

    def spawn(name, args):
        logs[name] = os.path.join(work, name + ".log")
        procs[name] = subprocess.Popen([binary] + args + shared, cwd=work,
                                       stdout=open(logs[name], "wb"), stderr=subprocess.STDOUT)

    try:
        for name, port in ports.items():
            spawn(name, ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "0",
                         "--api-key", KEY])
        for name, port in ports.items():
            deadline = time.time() + 120
            while True:
                assert procs[name].poll() is None, "server %s exited" % name
                try:
                    if request("GET", "http://127.0.0.1:%d/health" % port)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.time() < deadline, "server %s did not start" % name
                time.sleep(0.25)
        for name in ("W1", "W2"):
            spawn(name, ["worker"])

        fc.RUN_URL_FORMAT = public + "/"
        fc.QUEUE_URL_FORMAT = public + "/queue/"
        fc.REST_URL = fc.CDN_URL = public
        os.environ["FAL_KEY"] = KEY
        image = os.path.join(work, "input.png")
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1",
                        "-frames:v", "1", image], check=True, timeout=60)

        # 1. The image, uploaded through A.
        lb.route("A")
        image_url = fal_client.upload_file(image)
        assert image_url.startswith(public + "/files/uploads/"), image_url
        assert {s for s, _, _ in lb.served} == {"A"}, lb.served

        # 2. A multipart upload whose every request lands on the other server (the client's
        # threshold and part size lowered so that 300 kB take 5 parts).
        lb.route("alternate")
        blob = os.urandom(300 * 1024)
        blob_path = os.path.join(work, "blob.bin")
        with open(blob_path, "wb") as f:
            f.write(blob)
        fc.MULTIPART_THRESHOLD, fc.MULTIPART_CHUNK_SIZE = 64 * 1024, 64 * 1024
        fc.MULTIPART_MAX_CONCURRENCY = 1
        blob_url = fal_client.upload_file(blob_path)
        paths = [p for _, _, p in lb.served]
        assert sum("/multipart/" in p for p in paths) >= 6, paths
        assert {s for s, _, _ in lb.served} == {"A", "B"}, lb.served
        st, _, data = request("GET", blob_url)
        assert st == 200 and data == blob, (st, len(data))

        # The fal repository protocol: initiate on A, PUT on B.
        lb.route("alternate")
        st, _, init = request("POST", public + "/storage/upload/initiate",
                              {"content_type": "text/plain", "file_name": "note.txt"}, key=KEY)
        assert st == 200, (st, init)
        put = urllib.request.Request(init["upload_url"], data=b"hello", method="PUT",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(put, timeout=30) as resp:
            assert resp.status == 200 and resp.headers["X-Served-By"] == "B"
        assert [s for s, _, _ in lb.served] == ["A", "B"], lb.served
        assert request("GET", init["file_url"])[2] == b"hello"
        fc.MULTIPART_THRESHOLD = 100 * 1024 * 1024

        # 3. Three jobs submitted through B, polled through A.
        lb.route("B")
        handles = [fal_client.submit(APP, arguments=dict(JOB, image_url=image_url, seed=i))
                   for i in range(3)]
        assert {s for s, _, _ in lb.served} == {"B"}, lb.served
        lb.route("A")
        first = handles[0]
        killed = None
        deadline = time.time() + 300
        while killed is None:
            assert time.time() < deadline, "the first job never started"
            st = first.status(with_logs=True)
            assert not isinstance(st, fal_client.Completed), \
                "the first job finished before its worker could be killed: %r" % st
            started = attempts(getattr(st, "logs", None))
            if started:
                pid = int(started[0][1].rsplit("-", 2)[-2])
                killed = next(n for n in ("W1", "W2") if procs[n].pid == pid)
                procs[killed].kill()  # SIGKILL, mid-job
                procs[killed].wait(timeout=30)
            time.sleep(0.05)
        print("scaleout test: killed %s (pid %d) during job %s" % (killed, pid, first.request_id))

        results = {}
        deadline = time.time() + 600
        while len(results) < len(handles):
            assert time.time() < deadline, "jobs did not complete: %r" % results
            for h in handles:
                if h.request_id not in results:
                    st = h.status(with_logs=True)
                    if isinstance(st, fal_client.Completed):
                        results[h.request_id] = st.logs
            time.sleep(0.25)
        assert {s for s, _, _ in lb.served} == {"A"}, lb.served

        # 4. Every job completed once: the killed one on a second attempt by the other worker.
        survivor_pid = procs["W2" if killed == "W1" else "W1"].pid
        for h in handles:
            runs = attempts(results[h.request_id])
            if h is first:
                assert [n for n, _ in runs] == [1, 2], runs
                assert int(runs[1][1].rsplit("-", 2)[-2]) == survivor_pid, runs
            else:
                assert [n for n, _ in runs] == [1], runs
            result = h.get()
            video = result["video"]
            assert video["url"].startswith(public + "/files/outputs/%s/" % h.request_id), video
            path = os.path.join(work, h.request_id + ".mp4")
            st, _, data = request("GET", video["url"])
            assert st == 200 and len(data) == video["file_size"], (st, len(data), video)
            with open(path, "wb") as f:
                f.write(data)
            # A range read of the video, served from the bucket.
            ranged = urllib.request.Request(video["url"], headers={"Range": "bytes=10-109"})
            with urllib.request.urlopen(ranged, timeout=30) as resp:
                assert resp.status == 206, resp.status
                assert resp.read() == data[10:110]
            assert ffprobe_frames(path) > 0
        print("scaleout test: %d jobs completed once each through 2 servers and 2 workers "
              "on Postgres + S3; the killed job ran twice, finished once" % len(handles))
        return 0
    except Exception:
        for name, path in logs.items():
            with open(path, "rb") as f:
                print("---- %s ----\n%s" % (name, f.read()[-3000:].decode("utf-8", "replace")))
        raise
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        lb.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
