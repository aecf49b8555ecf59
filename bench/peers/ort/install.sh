#!/usr/bin/env bash
# Installs the ONNX Runtime test peer, npm onnxruntime-node@1.30.0, into DIR (default:
# build/peers/ort), outside the source tree. ONNXRUNTIME_NODE_INSTALL=skip: the package's
# install script would fetch GPU libraries; the CPU library ships inside the package.
# Needs node and npm (Debian: apt-get install nodejs npm).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../../../build/peers/ort}"
mkdir -p "$dir"
if ! command -v npm >/dev/null; then
  echo "install.sh: npm not found (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --prefix "$dir" onnxruntime-node@1.30.0
echo "onnxruntime-node installed in $(cd "$dir" && pwd)/node_modules"
