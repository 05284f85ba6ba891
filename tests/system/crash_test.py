"""Crash test: kill -9 the server with jobs queued and one running, restart it, and check that
every job completes or fails with a reason, and that none ran twice at the same time.

Usage: crash_test.py BINARY   (a built `longcat`)
"""

import sys
import tempfile
import time

from common import APP, Server, free_port, request, test_image_data_uri

KEY = "crash-test-key"


def main(binary):
    work = tempfile.mkdtemp(prefix="longcat-crash-")
    port = free_port()
    # A short lease so that the killed worker's job is recovered quickly after the restart.
    server = Server(binary, work, port, KEY, extra=["--workers", "1", "--lease-seconds", "3"])
    server.start()
    image = test_image_data_uri(work)
    base_input = {"image_url": image, "prompt": "crash test", "num_inference_steps": 8,
                  "num_refine_inference_steps": 8}
    ids = []
    try:
        # One long job (it will be running at the kill), then queued ones.
        for i, frames in enumerate([49, 17, 17, 33]):
            st, _, body = request("POST", "%s/queue/%s" % (server.base, APP),
                                  dict(base_input, num_frames=frames, seed=100 + i), key=KEY)
            assert st in (200, 201, 202), (st, body)
            ids.append(body["request_id"])
        status_url = "%s/queue/fal-ai/longcat-video/requests/%%s/status?logs=1" % server.base
        deadline = time.time() + 120
        while time.time() < deadline:
            st, _, body = request("GET", status_url % ids[0], key=KEY)
            if body.get("status") == "IN_PROGRESS" and body.get("logs"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("first job never started: %r" % (body,))
        server.kill9()
        print("killed the server with job %s running and %d queued" % (ids[0], len(ids) - 1))
        server.start()
        outcomes = {}
        deadline = time.time() + 900
        while len(outcomes) < len(ids) and time.time() < deadline:
            for rid in ids:
                if rid in outcomes:
                    continue
                st, _, body = request("GET", status_url % rid, key=KEY)
                assert st in (200, 202), (rid, st, body)
                assert body["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"), body
                if body["status"] == "COMPLETED":
                    outcomes[rid] = body
            time.sleep(0.5)
        assert len(outcomes) == len(ids), "jobs lost or stuck: %r" % (set(ids) - set(outcomes))
        for rid in ids:
            st, _, result = request("GET", "%s/queue/fal-ai/longcat-video/requests/%s" % (server.base, rid), key=KEY)
            if outcomes[rid].get("error"):
                assert outcomes[rid].get("error_type"), outcomes[rid]
                print("%s failed with a reason: %s (%s)" % (rid, outcomes[rid]["error"], outcomes[rid]["error_type"]))
            else:
                assert st == 200 and "video" in result, (st, result)
                print("%s completed: %s" % (rid, result["video"]["url"]))
            # The job's log must never show two attempts running at once: every
            # "attempt N started" line is preceded by the end (or loss) of attempt N-1.
            starts = [l["message"] for l in outcomes[rid]["logs"] if "attempt" in l["message"] and "started" in l["message"]]
            assert len(starts) == len(set(starts)), starts
            if rid == ids[0]:
                # The job running at the kill was recovered and run again after its lease expired.
                assert any(m.startswith("attempt 2 started") for m in starts), starts
                print("%s: %s" % (rid, "; ".join(starts)))
        print("crash test: all %d jobs accounted for" % len(ids))
        return 0
    except Exception:
        print(server.log_tail())
        raise
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
