"""Load test (bounded, loopback only): 200 queue submits and 500 concurrent status polls against a
running `longcat serve`; reports p50/p99 latency per endpoint and the error count.

Usage: load_test.py BINARY
"""

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import APP, Server, free_port, request, test_image_data_uri

KEY = "load-test-key"


def timed(fn):
    start = time.perf_counter()
    status = fn()
    return time.perf_counter() - start, status


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main(binary):
    work = tempfile.mkdtemp(prefix="longcat-load-")
    port = free_port()
    server = Server(binary, work, port, KEY, extra=["--workers", "1"])
    server.start()
    image = test_image_data_uri(work)
    body = {"image_url": image, "prompt": "load", "num_frames": 17, "num_inference_steps": 8,
            "num_refine_inference_steps": 8}
    try:
        submit_url = "%s/queue/%s" % (server.base, APP)
        ids = []

        def submit(i):
            st, _, resp = request("POST", submit_url, dict(body, seed=i), key=KEY)
            if st in (200, 202):
                ids.append(resp["request_id"])
            return st

        with ThreadPoolExecutor(max_workers=200) as pool:
            submits = list(pool.map(lambda i: timed(lambda: submit(i)), range(200)))
        status_url = "%s/queue/fal-ai/longcat-video/requests/%%s/status" % server.base

        def poll(i):
            return request("GET", status_url % ids[i % len(ids)], key=KEY)[0]

        with ThreadPoolExecutor(max_workers=500) as pool:
            polls = list(pool.map(lambda i: timed(lambda: poll(i)), range(500)))
        for name, rows, ok in (("submit", submits, (200, 202)), ("status", polls, (200, 202))):
            lat = [r[0] * 1000 for r in rows]
            errors = sum(1 for r in rows if r[1] not in ok)
            print("%-7s n=%d  p50=%.1f ms  p99=%.1f ms  max=%.1f ms  mean=%.1f ms  errors=%d" % (
                name, len(rows), pct(lat, 50), pct(lat, 99), max(lat), statistics.mean(lat), errors))
            if errors:
                return 1
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
