#!/usr/bin/env bash
# Places the safety checker's model, the NudeNet 320n detector, at data/models/nudenet-320n.onnx
# (or at $1). The file is AGPL-3.0 and never committed: it comes from the `nudenet` wheel on
# PyPI (pinned version, sha256 checked). Idempotent: does nothing when the file is there and
# matches. See docs/safety.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-data/models/nudenet-320n.onnx}"
VERSION=3.4.2
SHA256=c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f

if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum -c --status; then
  exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# pip, the registry's own client: the system's when it has one, else a throwaway venv's.
if python3 -m pip --version >/dev/null 2>&1; then
  PIP=(python3 -m pip)
else
  python3 -m venv "$TMP/venv"
  PIP=("$TMP/venv/bin/python" -m pip)
fi
"${PIP[@]}" download -q --no-deps --only-binary=:all: "nudenet==$VERSION" -d "$TMP/wheel"
mkdir -p "$(dirname "$DEST")"
python3 - "$TMP"/wheel/nudenet-"$VERSION"-*.whl "$DEST.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("nudenet/320n.onnx") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$SHA256  $DEST.part" | sha256sum -c --status; then
  rm -f "$DEST.part"
  echo "fetch-safety-model: nudenet $VERSION's 320n.onnx does not have the expected sha256" >&2
  exit 1
fi
mv "$DEST.part" "$DEST"
echo "fetch-safety-model: NudeNet 320n (nudenet $VERSION, AGPL-3.0) placed at $DEST"
