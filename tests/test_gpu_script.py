"""bench/gpu.sh --cpu: the GPU benchmark's code path on the CPU provider, as CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_gpu_script_cpu_mode_writes_its_results(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "bench" / "gpu.sh"), "--cpu"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    result = json.loads((tmp_path / "gpu-cpu.json").read_text())
    assert {
        "benchmark",
        "date",
        "device",
        "provider",
        "gpu",
        "peak_fp16_tflops",
        "seq",
        "batches",
        "onnxruntime",
        "flops_formula",
        "models",
        "table_markdown",
    } <= set(result)
    assert result["device"] == "cpu"
    assert result["provider"] == "CPUExecutionProvider"
    assert result["batches"] == [1, 4]
    assert {(m["model"], m["dtype"]) for m in result["models"]} == {
        ("tiny", "fp32"),
        ("tiny", "fp16"),
        ("minilm", "fp32"),
        ("minilm", "fp16"),
    }
    for model in result["models"]:
        assert {
            "weights",
            "flops_per_sequence",
            "providers",
            "results",
            "best",
            "gpu_memory_mib",
            "optimized_op_counts",
        } <= set(model)
        assert model["optimized_op_counts"]["Softmax"] == model["config"]["layers"]
        assert model["errors"] == []
        assert model["providers"] == ["CPUExecutionProvider"]
        assert [r["batch"] for r in model["results"]] == [1, 4]
        for row in model["results"]:
            assert row["seq_per_s"] > 0 and row["p50_ms"] > 0 and row["tflops"] > 0
            assert row["host_io_seq_per_s"] > 0
            assert row["fraction_of_fp16_peak"] is None  # no peak for a CPU
        assert model["best"]["batch"] in (1, 4)
    minilm = next(m for m in result["models"] if m["model"] == "minilm")
    assert minilm["weights"] == "real"
    assert minilm["config"] == {
        "layers": 6,
        "hidden": 384,
        "heads": 12,
        "intermediate": 1536,
        "vocab": 30522,
    }
    # 2 * P * S + 4 * L * S^2 * H with P = 6 * (4 * 384^2 + 2 * 384 * 1536 + 9 * 384 + 1536), S = 32
    params = 6 * (4 * 384**2 + 2 * 384 * 1536 + 9 * 384 + 1536)
    assert minilm["non_embedding_params"] == params
    assert minilm["flops_per_sequence"] == 2 * params * 32 + 4 * 6 * 32**2 * 384
    assert (tmp_path / "gpu-cpu.md").read_text().startswith("## bert_onnx encoders")
