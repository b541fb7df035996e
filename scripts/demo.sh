#!/usr/bin/env bash
# The main job: sets up, builds, and runs both samples through the kchain runtime, printing
# their outputs, their cold / warm / hot start timings and the CNN's held-out accuracy.
# Runs on the GPU when there is one, on the host backend otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
build=${KCHAIN_BUILD_DIR:-build}
samples="$build/samples"
echo
"$build/bin/kchain-run" --device "${KCHAIN_DEVICE:-auto}" "$samples/vecadd/manifest.json"
echo
"$build/bin/kchain-run" --device "${KCHAIN_DEVICE:-auto}" \
  --eval-images "$samples/mnist_cnn/heldout_images.bin" \
  --eval-labels "$samples/mnist_cnn/heldout_labels.bin" "$samples/mnist_cnn/manifest.json"
