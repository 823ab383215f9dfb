#!/usr/bin/env bash
# The GPU check (docs/gpu.md): run from the repository root on a bare GPU machine whose python3 has torch,
# with the wheels of scripts/fetch-device-wheels.sh in .whl/:
#
#   bash scripts/device-check.sh
#
# 1. installs the carried wheels into /tmp/site and the working tree itself in editable mode (a plain
#    PYTHONPATH cannot serve captum_topgap.adapters, which setup.cfg maps from adapters/);
# 2. prints nvidia-smi and torch's CUDA facts;
# 3. runs the CUDA-vs-CPU tests (pytest -m cuda);
# 4. runs `captum-topgap bench --device cuda` and the demo's object scenario at the default preset on CUDA,
#    each only if its command takes --device.
# Everything stays within DEVICE_CHECK_SECONDS (default 540, under the device tool's ten minutes a command).
# Logs go to $OUT when it is set (else /tmp/device-check): facts.txt, pytest.log, bench.log, demo.log,
# demo-results.json and demo-index.html — six files, within what the device tool brings back.
# Exit status: pytest's when the tests fail, 1 when bench or the demo fails (a timeout is reported, not
# failed), 2 when the set-up fails, else 0.
set -uo pipefail

budget=${DEVICE_CHECK_SECONDS:-540}
logs=${OUT:-/tmp/device-check}
mkdir -p "$logs"

# seconds for the next step: at most $1, and never past the budget (10 s are kept for the summary)
seconds_for() {
  local left=$(( budget - SECONDS - 10 ))
  echo $(( left < $1 ? left : $1 ))
}

shopt -s nullglob
wheels=(.whl/*.whl)
if (( ${#wheels[@]} == 0 )); then
  echo "no wheels in .whl/: run 'bash scripts/fetch-device-wheels.sh' on the developer machine and carry .whl" >&2
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "${wheels[@]}" || exit 2
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export GIT_PYTHON_REFRESH=quiet  # foolbox imports GitPython, which otherwise insists on a git executable
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile -e . || exit 2

{
  nvidia-smi
  python3 - <<'PY'
import platform

import torch

import captum
import captum_topgap
import pytorch_grad_cam  # noqa: F401 (importable)
from importlib.metadata import version

print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, CUDA available: {torch.cuda.is_available()}")
for index in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(index)
    print(f"cuda:{index} {props.name}, capability {props.major}.{props.minor}, {props.multi_processor_count} SMs, "
          f"{props.total_memory / 2 ** 30:.1f} GiB")
print(f"TF32 by default: cuDNN {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}")
print(f"captum-topgap {captum_topgap.__version__} from {captum_topgap.__file__}; captum {captum.__version__}; "
      + "; ".join(f"{name} {version(name)}" for name in ("grad-cam", "foolbox", "adversarial-robustness-toolbox",
                                                         "timm", "setuptools")))
print(f"methods: {len(captum_topgap.list_methods())}")
PY
} 2>&1 | tee "$logs/facts.txt"
if (( PIPESTATUS[0] != 0 )); then
  echo "the set-up is broken (see above); nothing was run" >&2
  exit 2
fi

# six pytest-xdist workers where the image has it (tests/conftest.py gives each two torch threads);
# SIGINT first at the limit: pytest then prints the summary of what it ran
workers=()
if python3 -c 'import xdist' 2>/dev/null; then workers=(-n 6); fi
timeout -s INT -k 20 "$(seconds_for 330)" python3 -m pytest -m cuda -q -p no:cacheprovider "${workers[@]}" \
  --continue-on-collection-errors --durations=15 2>&1 | tee "$logs/pytest.log"
tests=${PIPESTATUS[0]}

failed=()
# run_step NAME SECONDS COMMAND...: runs the command if its --help mentions --device, logging to NAME.log
run_step() {
  local name=$1 limit status help
  limit=$(seconds_for "$2")
  shift 2
  if (( limit <= 0 )); then
    echo "$name: skipped, no time left" | tee "$logs/$name.log"
    return
  fi
  help=$(python3 -m captum_topgap_cli "$name" --help)
  if [[ $help != *--device* ]]; then
    echo "$name: skipped, 'captum-topgap $name' takes no --device yet" | tee "$logs/$name.log"
    return
  fi
  timeout -s INT -k 20 "$limit" python3 -m captum_topgap_cli "$name" "$@" --device cuda 2>&1 \
    | tee "$logs/$name.log"
  status=${PIPESTATUS[0]}
  if (( status == 124 )); then
    echo "$name: stopped at its time limit (timed out, not failed)" | tee -a "$logs/$name.log"
  elif (( status != 0 )); then
    failed+=("$name")
  fi
}

run_step bench 150
demo=/tmp/device-check-demo  # models and figures stay here; the report comes back through $OUT
rm -rf "$demo"
run_step demo 600 --scenarios object --out "$demo"
for file in results.json index.html; do
  if [[ -f $demo/$file ]]; then cp "$demo/$file" "$logs/demo-$file"; fi
done

echo "device check: pytest exit $tests; failed steps: ${failed[*]:-none}; ${SECONDS} s; logs in $logs"
if (( tests != 0 )); then exit "$tests"; fi
if (( ${#failed[@]} > 0 )); then exit 1; fi
