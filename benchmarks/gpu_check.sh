#!/usr/bin/env bash
# The GPU checks of the torch backend, as run on a lent H100/H200 (no network there: the
# duckdb wheel is carried in .gpu_wheels/, everything else is in the machine's image).
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-deps --no-index .gpu_wheels/*.whl 2>&1 | tail -1
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, sklearn; print('torch', torch.__version__, 'sklearn', sklearn.__version__)"
echo "== GPU tests"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_backends.py 2>&1 | tail -3
echo "== backends benchmark"
python3 benchmarks/bench_backends.py --device cuda --sklearn-problems 50 --problems 500
echo "== end to end: extract 1000 samples of the default model, analyse on the GPU"
python3 -m attnstore extract --store /tmp/gs --samples 1000 --no-analysis --device cuda | tail -1
/usr/bin/time -f "analyze wall %e s, peak RSS %M kB" python3 -m attnstore analyze \
    --store /tmp/gs --backend torch --device cuda --view raw | tail -1
