"""Drives a running longcat server with the official Python `fal-client`, unchanged.

The client is pointed at the server as fal-protocol.md §8.1 recipe B says (module
constants for plain http on loopback). Environment: LONGCAT_URL (http://127.0.0.1:PORT),
FAL_KEY (a key the server accepts), LONGCAT_TEST_IMAGE (a PNG on disk), LONGCAT_SAFETY_IMAGE
(a PNG the server's safety policy flags).
Every produced video is downloaded and checked with ffprobe.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

import fal_client
import fal_client.client as fc

BASE = os.environ["LONGCAT_URL"].rstrip("/")
KEY = os.environ["FAL_KEY"]
IMAGE = os.environ["LONGCAT_TEST_IMAGE"]
APP = "fal-ai/longcat-video/image-to-video/720p"

fc.RUN_URL_FORMAT = BASE + "/"
fc.QUEUE_URL_FORMAT = BASE + "/queue/"
fc.REST_URL = fc.CDN_URL = BASE
fc.REALTIME_URL_FORMAT = BASE.replace("http", "ws", 1) + "/"

IMAGE_URI = fal_client.encode_file(IMAGE)
SMALL = {"image_url": IMAGE_URI, "prompt": "a red ball rolling", "num_frames": 17,
         "num_inference_steps": 8, "num_refine_inference_steps": 8, "seed": 7}


def ffprobe(path):
    """Returns the first video stream (codec, frame count, size, rate), failing if unplayable."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=codec_name,nb_read_frames,width,height,r_frame_rate",
         "-of", "json", path],
        check=True, capture_output=True, text=True, timeout=60).stdout
    stream = json.loads(out)["streams"][0]
    assert int(stream["nb_read_frames"]) > 0, stream
    return stream


def check_video(file_obj, expect_codec="h264"):
    url = file_obj["url"]
    assert file_obj.get("content_type"), file_obj
    assert file_obj.get("file_name"), file_obj
    if url.startswith("data:"):
        header, payload = url.split(",", 1)
        assert header == "data:%s;base64" % file_obj["content_type"], header
        data = base64.b64decode(payload)
    else:
        with urllib.request.urlopen(url, timeout=30) as resp:
            data = resp.read()
    assert len(data) == file_obj["file_size"], (len(data), file_obj["file_size"])
    suffix = "." + file_obj["file_name"].rsplit(".", 1)[-1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        stream = ffprobe(f.name)
    assert stream["codec_name"] == expect_codec, stream
    return stream


def wait_status(handle, want, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = handle.status(with_logs=True)
        if isinstance(st, want):
            return st
        time.sleep(0.1)
    raise AssertionError("status never became %s" % want.__name__)


def test_subscribe_with_logs():
    updates = []
    result = fal_client.subscribe(APP, arguments=SMALL, with_logs=True,
                                  on_queue_update=updates.append)
    check_video(result["video"])
    assert result["seed"] == 7, result
    logs = [l for u in updates if isinstance(u, fal_client.InProgress) for l in (u.logs or [])]
    assert logs, "no logs seen while in progress: %r" % updates
    for entry in logs:
        assert set(entry) >= {"message", "level", "source", "timestamp"}, entry


def test_submit_status_result():
    handle = fal_client.submit(APP, arguments=dict(SMALL, seed=11))
    assert handle.request_id
    st = handle.status()
    assert isinstance(st, (fal_client.Queued, fal_client.InProgress, fal_client.Completed)), st
    done = wait_status(handle, fal_client.Completed)
    assert done.error is None, done
    assert "inference_time" in done.metrics, done.metrics
    result = handle.get()
    check_video(result["video"])
    # results stay retrievable, also through the client-built URL
    again = fal_client.result(APP, handle.request_id)
    assert again == result


def test_cancel_queued_and_running():
    long_job = fal_client.submit(APP, arguments=dict(SMALL, num_frames=961, seed=1))
    queued = fal_client.submit(APP, arguments=dict(SMALL, seed=2))
    wait_status(long_job, (fal_client.InProgress, fal_client.Completed))
    queued.cancel()
    long_job.cancel()
    for handle in (queued, long_job):
        st = wait_status(handle, fal_client.Completed)
        assert st.error_type == "client_cancelled", st
        try:
            handle.get()
        except fal_client.client.FalClientHTTPError as e:
            assert e.status_code == 499, e.status_code
        else:
            raise AssertionError("result of a cancelled request did not raise")


def test_sync_mode():
    result = fal_client.run(APP, arguments=dict(SMALL, sync_mode=True,
                                                video_output_type="VP9 (.webm)"))
    assert result["video"]["url"].startswith("data:video/webm;base64,"), result["video"]["url"][:40]
    check_video(result["video"], expect_codec="vp9")


def test_validation_error():
    try:
        fal_client.run(APP, arguments=dict(SMALL, num_frames=5))
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422, e.status_code
        fields = [d["loc"][-1] for d in e.message]
        assert "num_frames" in fields, e.message
    else:
        raise AssertionError("num_frames=5 was accepted")


def test_wrong_key():
    client = fal_client.SyncClient(key="not-a-valid-key")
    try:
        client.submit(APP, arguments=SMALL)
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 401, e.status_code
    else:
        raise AssertionError("a wrong key was accepted")


def test_upload_file_as_input():
    url = fal_client.upload_file(IMAGE)
    assert url.startswith(BASE), url
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == open(IMAGE, "rb").read()
    result = fal_client.subscribe(APP, arguments=dict(SMALL, image_url=url, seed=3))
    check_video(result["video"])


def test_prompt_expansion():
    # scripts/client-tests.sh points the server at tests/clients/chat_endpoint.py, which
    # answers "Expanded: <prompt>" only to a well-formed request (text and JPEG image parts).
    logs = []
    result = fal_client.subscribe(
        APP, arguments=dict(SMALL, enable_prompt_expansion=True), with_logs=True,
        on_queue_update=lambda u: logs.extend(getattr(u, "logs", None) or []))
    assert result["prompt"] == "Expanded: " + SMALL["prompt"], result["prompt"]
    assert any("prompt expanded" in l["message"] for l in logs), logs
    check_video(result["video"])
    plain = fal_client.run(APP, arguments=SMALL)
    assert plain["prompt"] == SMALL["prompt"], plain["prompt"]


def test_content_policy_violation():
    # The server runs the real safety checker with a policy flagging FACE_FEMALE
    # (scripts/client-tests.sh), so scikit-image's astronaut portrait is flagged content.
    portrait = fal_client.upload_file(os.environ["LONGCAT_SAFETY_IMAGE"])
    flagged = dict(SMALL, image_url=portrait)

    def expect_violation(call):
        try:
            call()
        except fal_client.client.FalClientHTTPError as e:
            assert e.status_code == 422, (e.status_code, e.message)
            item = e.message[0]
            assert item["type"] == "content_policy_violation", item
            assert item["loc"] == ["body", "image_url"], item
            assert item["categories"] == ["face_female"], item
            assert item["input"] == portrait, (item["input"][:80], portrait)
            assert item["msg"] and item["url"], item
        else:
            raise AssertionError("a flagged image was accepted")

    expect_violation(lambda: fal_client.run(APP, arguments=flagged))           # sync run
    expect_violation(lambda: fal_client.subscribe(APP, arguments=flagged))     # queue
    # The switch off skips the check.
    result = fal_client.subscribe(APP, arguments=dict(flagged, enable_safety_checker=False))
    check_video(result["video"])


# Every app this server runs (fal's ids; image-to-video/720p is APP).
APPS = ["fal-ai/longcat-video/%s%s/%s" % (d, task, res)
        for d in ("", "distilled/") for task in ("text-to-video", "image-to-video")
        for res in ("480p", "720p")]


def app_arguments(app, num_frames):
    """A small valid input of `app` (fal's per-app fields: no image for text-to-video, no
    refinement steps for 480p, 2..16 steps for distilled)."""
    args = {"prompt": "a red ball rolling", "num_frames": num_frames, "seed": 9,
            "num_inference_steps": 4 if "/distilled/" in app else 8}
    if "/image-to-video/" in app:
        args["image_url"] = IMAGE_URI
    else:
        args["aspect_ratio"] = "1:1"
    if app.endswith("/720p"):
        args["num_refine_inference_steps"] = 8
    return args


def expected_frames(app, num_frames):
    """(frames, fps) an app's video has: 480p is stage 1 (4k+1 frames at 15 fps), 720p is
    refined (twice as many at 30 fps)."""
    snapped = num_frames // 4 * 4 + 1
    return (2 * snapped, 30) if app.endswith("/720p") else (snapped, 15)


def test_every_app_frame_count_and_fps():
    failures = []
    for app in APPS:
        try:
            result = fal_client.subscribe(app, arguments=app_arguments(app, 18))
            stream = check_video(result["video"])
            frames, fps = expected_frames(app, 18)
            got = (int(stream["nb_read_frames"]), stream["r_frame_rate"])
            assert got == (frames, "%d/1" % fps), (app, got, (frames, fps))
        except Exception as e:  # report every app, not only the first
            failures.append("%s: %r" % (app, e))
    assert not failures, "\n".join(failures)


def test_every_app_validates_its_fields():
    for app in APPS:
        bad = app_arguments(app, 18)
        bad.pop("image_url" if "/image-to-video/" in app else "prompt")
        try:
            fal_client.run(app, arguments=bad)
        except fal_client.client.FalClientHTTPError as e:
            assert e.status_code == 422, (app, e.status_code)
            want = "image_url" if "/image-to-video/" in app else "prompt"
            assert [d["loc"] for d in e.message] == [["body", want]], (app, e.message)
            assert e.message[0]["type"] == "missing", (app, e.message)
        else:
            raise AssertionError("%s accepted a body without its required field" % app)
    # Distilled apps take 2..16 steps.
    app = "fal-ai/longcat-video/distilled/text-to-video/480p"
    try:
        fal_client.run(app, arguments=dict(app_arguments(app, 18), num_inference_steps=20))
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422 and e.message[0]["ctx"] == {"le": 16}, e.message
    else:
        raise AssertionError("20 distilled steps were accepted")


def test_text_to_video_queue_status_and_prompt_expansion():
    app = "fal-ai/longcat-video/text-to-video/480p"
    handle = fal_client.submit(app, arguments=dict(app_arguments(app, 17),
                                                   enable_prompt_expansion=True))
    done = wait_status(handle, fal_client.Completed)
    assert done.error is None, done
    result = handle.get()
    # The chat endpoint answers a text-only request (no image for text-to-video).
    assert result["prompt"] == "Expanded: a red ball rolling", result["prompt"]
    assert fal_client.result(app, handle.request_id) == result


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]
    failed = 0
    for name, fn in tests:
        start = time.time()
        try:
            fn()
            print("PASS %-32s %.1fs" % (name, time.time() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL %-32s" % name, flush=True)
            traceback.print_exc()
    print("python fal-client: %d passed, %d failed" % (len(tests) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
