// Drives a running longcat server with the official JS client `@fal-ai/client`, unchanged.
// Pointed at the server with the proxy convention (fal-protocol.md §8.2 recipe C) and, for one
// test, with a request middleware that rewrites the fal hosts (recipe D).
// Environment: LONGCAT_URL (http://127.0.0.1:PORT), FAL_KEY, LONGCAT_TEST_IMAGE (a PNG file).
import { createFalClient, ValidationError, ApiError } from "@fal-ai/client";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BASE = process.env.LONGCAT_URL.replace(/\/$/, "");
const KEY = process.env.FAL_KEY;
const IMAGE = readFileSync(process.env.LONGCAT_TEST_IMAGE);
const APP = "fal-ai/longcat-video/image-to-video/720p";
const IMAGE_URI = "data:image/png;base64," + IMAGE.toString("base64");
const SMALL = {
  image_url: IMAGE_URI, prompt: "a red ball rolling", num_frames: 17,
  num_inference_steps: 8, num_refine_inference_steps: 8, seed: 5,
};

const proxied = (credentials) => createFalClient({
  credentials, proxyUrl: { url: `${BASE}/api/fal/proxy`, when: "always" },
});
const rewritten = (credentials) => createFalClient({
  credentials,
  requestMiddleware: async (r) => ({
    ...r,
    url: r.url.replace("https://queue.fal.run/", `${BASE}/queue/`)
      .replace("https://fal.run/", `${BASE}/`)
      .replace("https://rest.fal.ai/", `${BASE}/`),
  }),
});
const fal = proxied(KEY);

function assert(cond, msg) { if (!cond) throw new Error("assertion failed: " + msg); }

// Every app this server runs (fal's ids; image-to-video/720p is APP).
const APPS = ["", "distilled/"].flatMap((d) => ["text-to-video", "image-to-video"]
  .flatMap((task) => ["480p", "720p"].map((res) => `fal-ai/longcat-video/${d}${task}/${res}`)));

// A small valid input of `app` (fal's per-app fields).
function appInput(app, numFrames) {
  const input = {
    prompt: "a red ball rolling", num_frames: numFrames, seed: 4,
    num_inference_steps: app.includes("/distilled/") ? 4 : 8,
  };
  if (app.includes("/image-to-video/")) input.image_url = IMAGE_URI;
  else input.aspect_ratio = "9:16";
  if (app.endsWith("/720p")) input.num_refine_inference_steps = 8;
  return input;
}

// [frames, fps] of an app's video: 480p is stage 1 (4k+1 frames at 15 fps), 720p is refined
// (twice as many at 30 fps).
function expectedFrames(app, numFrames) {
  const snapped = Math.floor(numFrames / 4) * 4 + 1;
  return app.endsWith("/720p") ? [2 * snapped, 30] : [snapped, 15];
}

async function checkVideo(file, codec = "h264") {
  assert(file && file.url && file.content_type && file.file_name, JSON.stringify(file));
  let data;
  if (file.url.startsWith("data:")) {
    data = Buffer.from(file.url.split(",", 2)[1], "base64");
  } else {
    const res = await fetch(file.url);
    assert(res.ok, `GET ${file.url} -> ${res.status}`);
    data = Buffer.from(await res.arrayBuffer());
  }
  assert(data.length === file.file_size, `size ${data.length} != ${file.file_size}`);
  const dir = mkdtempSync(join(tmpdir(), "longcat-js-"));
  const path = join(dir, file.file_name);
  writeFileSync(path, data);
  const out = JSON.parse(execFileSync("ffprobe", ["-v", "error", "-select_streams", "v:0",
    "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames,r_frame_rate", "-of", "json", path],
  { timeout: 60000 }).toString());
  const stream = out.streams[0];
  assert(stream.codec_name === codec, JSON.stringify(stream));
  assert(Number(stream.nb_read_frames) > 0, JSON.stringify(stream));
  return stream;
}

async function waitCompleted(client, requestId, timeoutMs = 120000, app = APP) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const st = await client.queue.status(app, { requestId, logs: true });
    if (st.status === "COMPLETED") return st;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("never completed: " + requestId);
}

const tests = {
  async subscribePollingWithLogs() {
    const logs = [];
    const res = await fal.subscribe(APP, {
      input: SMALL, logs: true,
      onQueueUpdate: (u) => { if (u.status === "IN_PROGRESS") logs.push(...(u.logs || [])); },
    });
    assert(res.requestId, "requestId");
    assert(res.data.seed === 5, JSON.stringify(res.data));
    assert(logs.length > 0, "no logs while in progress");
    await checkVideo(res.data.video);
  },
  async subscribeStreaming() {
    // In streaming mode the client hands onQueueUpdate the logs accumulated across events,
    // so the server must send only new entries in each event, or they would repeat here.
    let logs = [];
    const res = await fal.subscribe(APP, {
      input: { ...SMALL, seed: 6 }, logs: true, mode: "streaming",
      onQueueUpdate: (u) => { if (u.logs) logs = u.logs; },
    });
    assert(logs.length > 0, "no logs in streaming mode");
    const messages = logs.map((l) => l.message + l.timestamp);
    assert(new Set(messages).size === messages.length, "streamed logs were repeated");
    await checkVideo(res.data.video);
  },
  async submitStatusResultMiddleware() {
    const client = rewritten(KEY);
    const { request_id: id } = await client.queue.submit(APP, { input: { ...SMALL, seed: 9 } });
    assert(id, "request id");
    const st = await waitCompleted(client, id);
    assert(!st.error, JSON.stringify(st));
    const res = await client.queue.result(APP, { requestId: id });
    assert(res.requestId === id, `requestId ${res.requestId}`);
    await checkVideo(res.data.video);
  },
  async cancelQueued() {
    const { request_id: longId } = await fal.queue.submit(APP, { input: { ...SMALL, num_frames: 961 } });
    const { request_id: id } = await fal.queue.submit(APP, { input: { ...SMALL, seed: 10 } });
    await fal.queue.cancel(APP, { requestId: id });
    await fal.queue.cancel(APP, { requestId: longId });
    for (const rid of [id, longId]) {
      const st = await waitCompleted(fal, rid);
      assert(st.error_type === "client_cancelled", JSON.stringify(st));
    }
  },
  async syncMode() {
    const res = await fal.run(APP, { input: { ...SMALL, sync_mode: true, video_output_type: "GIF (.gif)" } });
    assert(res.data.video.url.startsWith("data:image/gif;base64,"), res.data.video.url.slice(0, 40));
    await checkVideo(res.data.video, "gif");
  },
  async validationError() {
    try {
      await fal.run(APP, { input: { ...SMALL, guidance_scale: 99 } });
    } catch (e) {
      assert(e instanceof ValidationError, "not a ValidationError: " + e);
      assert(e.status === 422, "status " + e.status);
      assert(e.getFieldErrors("guidance_scale").length === 1, JSON.stringify(e.body));
      return;
    }
    throw new Error("guidance_scale=99 was accepted");
  },
  async wrongKey() {
    try {
      await proxied("wrong-key").queue.submit(APP, { input: SMALL });
    } catch (e) {
      assert(e instanceof ApiError, "not an ApiError: " + e);
      assert(e.status === 401, "status " + e.status);
      return;
    }
    throw new Error("a wrong key was accepted");
  },
  async everyAppFrameCountAndFps() {
    const failures = [];
    for (const app of APPS) {
      try {
        // Submit, status and result as the client builds them for a 3-segment app id.
        const { request_id: id } = await fal.queue.submit(app, { input: appInput(app, 18) });
        const st = await waitCompleted(fal, id, 120000, app);
        assert(!st.error, JSON.stringify(st));
        const res = await fal.queue.result(app, { requestId: id });
        const stream = await checkVideo(res.data.video);
        const [frames, fps] = expectedFrames(app, 18);
        const got = [Number(stream.nb_read_frames), stream.r_frame_rate];
        assert(got[0] === frames && got[1] === `${fps}/1`,
          `${JSON.stringify(got)} != ${JSON.stringify([frames, fps])}`);
      } catch (e) {
        failures.push(`${app}: ${e.message || e}`);
      }
    }
    assert(failures.length === 0, failures.join("\n"));
  },
  async everyAppValidatesItsFields() {
    for (const app of APPS) {
      const input = appInput(app, 18);
      const required = app.includes("/image-to-video/") ? "image_url" : "prompt";
      delete input[required];
      try {
        await fal.run(app, { input });
      } catch (e) {
        assert(e instanceof ValidationError, `${app}: not a ValidationError: ${e}`);
        assert(e.status === 422, `${app}: status ${e.status}`);
        assert(e.getFieldErrors(required).length === 1, `${app}: ${JSON.stringify(e.body)}`);
        continue;
      }
      throw new Error(`${app} accepted a body without ${required}`);
    }
  },
  async blobInputIsUploaded() {
    const blob = new Blob([IMAGE], { type: "image/png" });
    const res = await fal.subscribe(APP, { input: { ...SMALL, image_url: blob, seed: 12 } });
    await checkVideo(res.data.video);
  },
};

let failed = 0;
for (const [name, fn] of Object.entries(tests)) {
  const start = Date.now();
  try {
    await fn();
    console.log(`PASS ${name.padEnd(32)} ${((Date.now() - start) / 1000).toFixed(1)}s`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name.padEnd(32)}`);
    console.log(e && e.stack ? e.stack : e, e && e.body ? JSON.stringify(e.body) : "");
  }
}
console.log(`@fal-ai/client: ${Object.keys(tests).length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
