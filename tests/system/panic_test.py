"""A job that panics inside the model fails with a clear error, and the next job completes.

`longcat serve --workers 1` runs the built-in tiny model with its documented test hook
`LONGCAT_TEST_TINY_PANIC_RUNS=1` (docs/worker.md): the model's first run panics inside a
denoising step. The first job must end as a failure (`runner_server_error`, a message saying
the model panicked and the engine was rebuilt), `/health` must stay 200, and the second job
must complete with a video.

Usage: panic_test.py BINARY
"""

import os
import sys
import tempfile
import time

from common import APP, Server, free_port, request, test_image_data_uri

KEY = "panic-test-key"
STATUS = "%s/queue/fal-ai/longcat-video/requests/%s/status?logs=1"


def wait_done(server, rid, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = request("GET", STATUS % (server.base, rid), key=KEY)[2]
        if body["status"] == "COMPLETED":
            return body
        time.sleep(0.25)
    raise AssertionError("job %s did not finish" % rid)


def main(binary):
    work = tempfile.mkdtemp(prefix="longcat-panic-")
    env = dict(os.environ, LONGCAT_TEST_TINY_PANIC_RUNS="1")
    server = Server(binary, work, free_port(), KEY, env=env, extra=["--workers", "1"])
    server.start()
    try:
        image = test_image_data_uri(work)
        body = {"image_url": image, "num_frames": 17, "guidance_scale": 1.0,
                "num_inference_steps": 8, "num_refine_inference_steps": 8}
        ids = []
        for _ in range(2):
            st, _, sub = request("POST", "%s/queue/%s" % (server.base, APP), body, key=KEY)
            assert st in (200, 202), (st, sub)
            ids.append(sub["request_id"])

        first = wait_done(server, ids[0])
        assert first.get("error_type") == "runner_server_error", first
        assert "the model panicked during generation" in first["error"], first["error"]
        assert "the engine was rebuilt" in first["error"], first["error"]
        st, _, result = request("GET", "%s/queue/fal-ai/longcat-video/requests/%s" % (server.base, ids[0]), key=KEY)
        assert st == 500 and result["error_type"] == "runner_server_error", (st, result)

        second = wait_done(server, ids[1])
        assert not second.get("error"), second
        st, _, result = request("GET", "%s/queue/fal-ai/longcat-video/requests/%s" % (server.base, ids[1]), key=KEY)
        assert st == 200 and result["video"]["file_size"] > 0, (st, result)
        st, _, health = request("GET", server.base + "/health", key=None)
        assert st == 200 and health["status"] == "ok", (st, health)
        print("panic test: job 1 failed with %r; job 2 completed; health ok" % first["error"])
        return 0
    except Exception:
        print(server.log_tail())
        raise
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
