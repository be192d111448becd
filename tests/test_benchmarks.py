"""The benchmark scripts still run (smoke test at tiny sizes; speed itself is never asserted here).

Each script checks its own results against the baseline it times (equal matches, moments to
tolerance) and exits non-zero when they differ, so this also catches a fast path drifting from
its reference.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script, *args, timeout=300):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def test_bench_extract_quick():
    pytest.importorskip("torch")
    out = run("bench_extract.py", "--quick")
    for mode in ("positions", "positions/sequential", "positions/overlap", "sample:1000", "avgpool"):
        assert f"[{mode:>20}]" in out and "ratio" in out
    assert "training throughput" in out


def test_bench_gpu_runs_on_cpu_torch():
    pytest.importorskip("torch")
    out = run("bench_gpu.py", "--device", "cpu", "--rows", "40000", "--batch", "10000", "--neurons", "32",
              "--images", "64", "--width", "0.25", "--units", "60")
    assert "NO GPU" in out and "[reduce]" in out and "[curve]" in out and "sizes identical" in out
    assert "[extract]" in out and "reductions on cpu" in out
    assert out.count("[assign]") == 2 and out.count("pairs identical") == 2


def test_bench_alignment_quick():
    out = run("bench_alignment.py", "--quick")
    assert "ratio repmatch / numpy" in out and "[bipartite]" in out and "bipartite_match" in out


def test_bench_subspace_quick():
    out = run("bench_subspace.py", "--quick", "--only", "maxmatch", "curve", "certify", "simple", "simple512")
    assert "[maxmatch]" in out and "[curve]" in out and "[simple]" in out and "[simple512]" in out
    assert out.count("[certify]") == 3 and "identical" in out


def test_bench_transformer_quick():
    pytest.importorskip("torch")
    out = run("bench_transformer.py", "--quick")
    for arch in ("vit-tiny", "char-tiny"):
        for mode in ("tokens", "tokens/sequential", "mean"):
            assert f"[{arch}] extraction + reductions [{mode:>17}]" in out
        assert f"[{arch}] check: streamed reduction" in out
    assert out.count("x median of") == 6 and "target <= 1.5x" in out


def test_bench_kseeds_quick():
    pytest.importorskip("torch")
    out = run("bench_kseeds.py", "--quick")
    for work in ("pairs", "stage"):
        line = next(line for line in out.splitlines() if line.startswith(f"K=3 {work}"))
        assert "forward passes" in line and "ratio" in line and "results identical: True" in line
