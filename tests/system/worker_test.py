"""Separate worker processes: `longcat serve --workers 0` only takes requests; two `longcat worker`
processes sharing its job database and storage run the jobs. Checks every job completes exactly
once, that both processes are used only through the shared queue, and that a worker stopped with
SIGTERM exits cleanly.

Usage: worker_test.py BINARY
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

from common import APP, Server, free_port, request, test_image_data_uri

KEY = "worker-test-key"


def main(binary):
    work = tempfile.mkdtemp(prefix="longcat-workers-")
    port = free_port()
    server = Server(binary, work, port, KEY, extra=["--workers", "0"])
    server.start()
    workers = []
    try:
        for i in range(2):
            log = open(os.path.join(work, "worker%d.log" % i), "wb")
            workers.append(subprocess.Popen(
                [binary, "worker", "--database-url", "sqlite://" + os.path.join(work, "longcat.db"),
                 "--storage", os.path.join(work, "files"), "--public-url", server.base,
                 "--webhook-key-file", os.path.join(work, "webhook.key")],
                stdout=log, stderr=subprocess.STDOUT))
        image = test_image_data_uri(work)
        ids = []
        for i in range(4):
            st, _, body = request("POST", "%s/queue/%s" % (server.base, APP),
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
