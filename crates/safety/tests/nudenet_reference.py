"""Reference side of the safety parity test: the `nudenet` package's own detector on real
photographs shipped by scikit-image (`skimage/data`), plus crops of them (padding on either
side) and a small image (upscaling).

Usage: nudenet_reference.py MODEL OUTDIR. For each case it writes OUTDIR/NAME.png (a plain
8-bit BGR PNG written by OpenCV, which both sides then read), NAME.blob.f32 (the package's
preprocessed input, `_read_image`), NAME.raw.f32 (onnxruntime's output for that input) and
records the package's `detect()` result in OUTDIR/cases.json.
"""

import json
import os
import sys

import cv2
import numpy as np
import skimage
from nudenet import nudenet as nn

model, out = sys.argv[1], sys.argv[2]
data = os.path.join(os.path.dirname(skimage.__file__), "data")
detector = nn.NudeDetector(model_path=model)


def load(name):
    image = cv2.imread(os.path.join(data, name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


astronaut = load("astronaut.png")
cases = {
    "astronaut": astronaut,
    "camera": load("camera.png"),
    "coffee": load("coffee.png"),
    "chelsea": load("chelsea.png"),
    "moon": load("moon.png"),
    "color": load("color.png"),
    "phantom": load("phantom.png"),
    "motorcycle": load("motorcycle_left.png"),
    "astronaut_wide": astronaut[40:340, 60:500],
    "astronaut_tall": astronaut[0:512, 100:380],
    "microaneurysms": load("microaneurysms.png"),
}

results = []
for name, image in cases.items():
    path = os.path.join(out, name + ".png")
    cv2.imwrite(path, np.ascontiguousarray(image))
    blob = nn._read_image(path, detector.input_width)[0]
    blob.astype("<f4").tofile(os.path.join(out, name + ".blob.f32"))
    raw = detector.onnx_session.run(None, {detector.input_name: blob})[0]
    raw.astype("<f4").tofile(os.path.join(out, name + ".raw.f32"))
    results.append({"name": name, "detections": detector.detect(path)})

with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(results, f, indent=1)
