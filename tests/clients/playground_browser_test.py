"""Drives the playground page (GET /) in a real headless Chromium with Selenium.

Against a running `longcat serve` (tiny model) on loopback: the form is built from the
OpenAPI document, a 422 shows next to its field, an image is uploaded through the storage
routes, a job runs with progress bars and its video loads in a <video> element, a second job
is cancelled, a GIF shows as an <img>, the history reopens a result, and the page breaks no CSP rule.
Environment: LONGCAT_URL, FAL_KEY, LONGCAT_TEST_IMAGE (as the other client tests);
LONGCAT_ARTIFACTS: where the screenshot goes (default target/playground-test);
CHROMIUM / CHROMEDRIVER: the binaries (default /usr/bin/chromium, /usr/bin/chromedriver).
"""

import json
import os
import re
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["LONGCAT_URL"].rstrip("/")
KEY = os.environ["FAL_KEY"]
IMAGE = os.path.abspath(os.environ["LONGCAT_TEST_IMAGE"])
ARTIFACTS = os.environ.get("LONGCAT_ARTIFACTS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "playground-test")
APP = "fal-ai/longcat-video/image-to-video/720p"


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1300", "--autoplay-policy=no-user-gesture-required",
                "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


def wait(driver, what, cond, timeout=120):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d))
    except Exception as e:
        raise AssertionError("timed out waiting for %s (%s)" % (what, e)) from None


def field(driver, name):
    return driver.find_element(By.CSS_SELECTOR, '#input-form [name="%s"]' % name)


def set_value(driver, name, value):
    el = field(driver, name)
    if not el.is_displayed():
        # In the collapsed "Additional settings", as a user would open it.
        driver.find_element(By.CSS_SELECTOR, "#more > summary").click()
    if el.tag_name == "select":
        driver.execute_script("arguments[0].value = arguments[1];"
                              "arguments[0].dispatchEvent(new Event('change'))", el, value)
        return
    el.clear()
    el.send_keys(str(value))


def state(driver):
    return driver.find_element(By.ID, "job-status").get_attribute("data-state")


def input_properties():
    with urllib.request.urlopen(BASE + "/openapi.json", timeout=30) as resp:
        doc = json.load(resp)
    ref = doc["paths"]["/" + APP]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc
    for part in ref.lstrip("#/").split("/"):
        schema = schema[part]
    return schema["properties"]


def run(driver):
    driver.get(BASE + "/")
    wait(driver, "the form", lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", 30)

    # Every OpenAPI input field has a control named after it, with its default.
    props = input_properties()
    for name, prop in props.items():
        el = field(driver, name)
        if "default" not in prop:
            continue
        if el.get_attribute("type") == "checkbox":
            got, want = el.is_selected(), prop["default"]
        elif isinstance(prop["default"], (int, float)):
            got, want = float(el.get_attribute("value")), float(prop["default"])
        else:
            got, want = el.get_attribute("value"), prop["default"]
        assert got == want, (name, got, want)
    print("ok  form built from OpenAPI (%d fields)" % len(props))

    key = driver.find_element(By.ID, "api-key")
    key.send_keys(KEY)
    driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)

    # A 422 from the server shows next to its fields.
    set_value(driver, "num_frames", 5)
    driver.find_element(By.ID, "submit").click()
    err = wait(driver, "422 on num_frames", lambda d: d.find_element(
        By.CSS_SELECTOR, '[data-error-for="num_frames"]').text or False, 30)
    assert "17" in err, err
    image_err = driver.find_element(By.CSS_SELECTOR, '[data-error-for="image_url"]').text
    assert image_err, "no error next to the empty image_url"
    print("ok  422 shown next to num_frames: %r" % err)

    # Upload through the storage routes; the URL lands in image_url; the preview shows.
    driver.find_element(By.CSS_SELECTOR, '[data-upload-for="image_url"]').send_keys(IMAGE)
    wait(driver, "upload", lambda d: d.find_element(
        By.CSS_SELECTOR, '[data-upload-status-for="image_url"]').get_attribute("data-done") == "1", 30)
    url = field(driver, "image_url").get_attribute("value")
    assert "/files/uploads/" in url, url
    wait(driver, "preview", lambda d: d.execute_script(
        "return document.querySelector('[data-preview-for=image_url]').naturalWidth > 0"), 10)
    print("ok  uploaded:", url)

    set_value(driver, "prompt", "a red ball rolling")
    set_value(driver, "num_frames", 17)
    set_value(driver, "num_inference_steps", 8)
    set_value(driver, "num_refine_inference_steps", 8)
    set_value(driver, "seed", 7)
    snippet = driver.find_element(By.ID, "snippet").text
    assert BASE + "/queue/" + APP in snippet and '"num_frames": 17' in snippet, snippet
    driver.find_element(By.CSS_SELECTOR, '#snippet-tabs [data-lang="python"]').click()
    compile(driver.find_element(By.ID, "snippet").text, "snippet.py", "exec")
    driver.find_element(By.CSS_SELECTOR, '#snippet-tabs [data-lang="js"]').click()
    assert BASE + "/api/fal/proxy" in driver.find_element(By.ID, "snippet").text
    print("ok  copy-as snippets (curl, Python compiles, JS)")

    driver.find_element(By.ID, "submit").click()
    wait(driver, "progress bars", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#progress .stage")) > 0)
    wait(driver, "COMPLETED", lambda d: state(d) in ("COMPLETED", "FAILED", "CANCELLED"), 300)
    assert state(driver) == "COMPLETED", driver.find_element(By.ID, "job-error").text
    stages = [e.get_attribute("data-stage") for e in driver.find_elements(By.CSS_SELECTOR, "#progress .stage")]
    assert "base" in stages and "refine" in stages, stages
    # The last step of each stage is always logged (refine runs part of its steps).
    for stage in ("base", "refine"):
        row = driver.find_element(By.CSS_SELECTOR, '#progress .stage[data-stage="%s"]' % stage)
        assert float(row.get_attribute("data-fraction")) == 1.0, stage
        detail = row.find_element(By.CSS_SELECTOR, ".detail").text
        m = re.search(r"step (\d+)/(\d+)", detail)
        assert m and m.group(1) == m.group(2), (stage, detail)
        assert stage != "base" or m.group(2) == "8", detail
    ready = wait(driver, "the video to load", lambda d: d.execute_script(
        "const v = document.getElementById('result-media');"
        "if (v && v.error) return 'error ' + v.error.code;"
        "return v && v.readyState > 0 ? v.readyState : false"), 60)
    assert not str(ready).startswith("error"), ready
    seed = driver.find_element(By.CSS_SELECTOR, '[data-meta="seed"]').text
    size = driver.find_element(By.CSS_SELECTOR, '[data-meta="size"]').text
    assert seed == "7", seed
    assert "bytes" in size or " B" in size, size
    print("ok  job completed: stages %s, video readyState %s, size %s" % (stages, ready, size))
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "playground.png")
    driver.execute_script("arguments[0].pause(); arguments[0].currentTime = 0.5;"
                          "document.getElementById('more').open = false; window.scrollTo(0, 0)",
                          driver.find_element(By.ID, "result-media"))
    time.sleep(0.3)
    driver.save_screenshot(shot)
    print("ok  screenshot:", os.path.abspath(shot))

    # A long job, cancelled from the page.
    set_value(driver, "num_frames", 961)
    set_value(driver, "seed", 1)
    driver.find_element(By.ID, "submit").click()
    wait(driver, "the second job", lambda d: d.find_element(By.ID, "job-id").text != ""
         and len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 2, 30)
    wait(driver, "IN_PROGRESS", lambda d: state(d) in ("IN_PROGRESS", "COMPLETED"), 120)
    # Live progress of the running job (12 segments): its base stage's bar, with step/total.
    detail = wait(driver, "live progress", lambda d: d.execute_script(
        "const r = document.querySelector('#progress .stage[data-stage=base] .detail');"
        "return r && /step \\d+\\/\\d+/.test(r.textContent) ? r.textContent : false"), 120)
    assert state(driver) == "IN_PROGRESS", state(driver)
    print("ok  live progress of the second job: base", detail)
    driver.find_element(By.ID, "cancel").click()
    wait(driver, "CANCELLED", lambda d: state(d) in ("CANCELLED", "COMPLETED", "FAILED"), 120)
    assert state(driver) == "CANCELLED", (state(driver), driver.find_element(By.ID, "job-error").text)
    assert "client_cancelled" in driver.find_element(By.ID, "job-error").text
    print("ok  second job cancelled")

    # A GIF is shown as an <img>.
    set_value(driver, "num_frames", 17)
    set_value(driver, "video_output_type", "GIF (.gif)")
    driver.find_element(By.ID, "submit").click()
    wait(driver, "the third job", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 3, 30)
    wait(driver, "COMPLETED", lambda d: state(d) in ("COMPLETED", "FAILED", "CANCELLED"), 300)
    assert state(driver) == "COMPLETED", driver.find_element(By.ID, "job-error").text
    wait(driver, "the GIF", lambda d: d.execute_script(
        "const m = document.getElementById('result-media');"
        "return !!m && m.tagName === 'IMG' && m.complete && m.naturalWidth > 0"), 60)
    print("ok  GIF output shown as <img>")

    # History (localStorage) reopens the first result, also after a reload.
    driver.refresh()
    wait(driver, "the form again", lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", 30)
    items = driver.find_elements(By.CSS_SELECTOR, "#history li")
    assert len(items) == 3, len(items)
    assert field(driver, "image_url").get_attribute("value") == ""
    assert driver.find_element(By.ID, "api-key").get_attribute("value") == KEY
    items[2].find_element(By.CSS_SELECTOR, "button.open").click()
    wait(driver, "the reopened result", lambda d: d.execute_script(
        "const v = document.getElementById('result-media'); return !!v && v.readyState > 0"), 60)
    assert driver.find_element(By.CSS_SELECTOR, '[data-meta="seed"]').text == "7"
    items = driver.find_elements(By.CSS_SELECTOR, "#history li")
    items[2].find_element(By.CSS_SELECTOR, "button.load").click()
    assert field(driver, "num_frames").get_attribute("value") == "17"
    print("ok  history reopens the result and reloads its input")

    # Nothing the page did broke its CSP (Chromium logs violations as console errors).
    logs = driver.get_log("browser")
    bad = [l for l in logs if "Content Security Policy" in l.get("message", "")]
    assert not bad, bad
    print("ok  no CSP violations (%d console entries)" % len(logs))

    # Another app's page builds its form from that app's own document.
    t2v = "fal-ai/longcat-video/distilled/text-to-video/480p"
    driver.get(BASE + "/playground/" + t2v)
    wait(driver, "the text-to-video form", lambda d: d.find_element(
        By.TAG_NAME, "body").get_attribute("data-ready") == "1", 30)
    assert driver.find_element(By.ID, "app-id").text == t2v
    names = {el.get_attribute("name") for el in driver.find_elements(
        By.CSS_SELECTOR, "#input-form [name]")}
    assert {"prompt", "aspect_ratio", "num_inference_steps"} <= names, names
    assert not names & {"image_url", "guidance_scale", "negative_prompt",
                        "num_refine_inference_steps"}, names
    assert float(field(driver, "fps").get_attribute("value")) == 15
    assert float(field(driver, "num_inference_steps").get_attribute("value")) == 12
    # A text-to-video job from the page: no image, stage 1 only (480p).
    set_value(driver, "prompt", "a red ball rolling")
    set_value(driver, "num_frames", 17)
    set_value(driver, "num_inference_steps", 2)
    driver.find_element(By.ID, "submit").click()
    wait(driver, "the text-to-video job", lambda d: state(d) in ("COMPLETED", "FAILED", "CANCELLED"), 300)
    assert state(driver) == "COMPLETED", driver.find_element(By.ID, "job-error").text
    stages = [e.get_attribute("data-stage") for e in driver.find_elements(By.CSS_SELECTOR, "#progress .stage")]
    assert "refine" not in stages and "encode_image" not in stages, stages
    print("ok  %s page: its own fields and defaults; job completed (%s)" % (t2v, stages))


def main():
    driver = browser()
    try:
        run(driver)
    except Exception:
        traceback.print_exc()
        os.makedirs(ARTIFACTS, exist_ok=True)
        try:
            driver.save_screenshot(os.path.join(ARTIFACTS, "playground-failure.png"))
            for entry in driver.get_log("browser"):
                print("console:", entry)
        except Exception:
            pass
        return 1
    finally:
        driver.quit()
    print("playground browser test: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
