#!/usr/bin/env bash
# The web page in real Chromium: builds the server (dev profile, as the
# tests), makes the demo corpus, installs playwright-core (npm, pinned by
# package-lock.json; it drives the system's Chromium, nothing is
# downloaded), and runs page.test.mjs. Screenshots land in
# target/browser-screenshots (SCREENSHOT_DIR to change).
#
# Needs: chromium (Debian package; CHROMIUM=path for another), node ≥ 20
# with npm, ffmpeg, poppler-utils.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== building the server"
cargo build --quiet
echo "== demo corpus"
data/demo/make.sh >/dev/null
echo "== playwright-core"
(cd tests/browser && npm ci --no-audit --no-fund --silent)
echo "== the page in Chromium"
node --test --test-concurrency=1 --test-reporter=spec tests/browser/page.test.mjs
