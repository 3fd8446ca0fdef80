"""ONNX Runtime sessions: provider choice (CUDA when present), GPU arena limits, no silent fallback."""

from __future__ import annotations

import gc
import threading

import numpy as np
import onnxruntime as ort

from contracts.inference import ModelConfig

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ProviderUnavailable(RuntimeError):
    """The model requires a provider this replica cannot give it."""


def cuda_available() -> bool:
    return CUDA in ort.get_available_providers()


def providers_for(config: ModelConfig, *, has_cuda: bool) -> list[str | tuple[str, dict[str, str]]]:
    wants_cuda = config.provider == "cuda" or (config.provider == "auto" and has_cuda)
    if config.require_gpu and not has_cuda:
        raise ProviderUnavailable(
            f"model {config.name!r} requires the GPU, but this replica's ONNX Runtime offers "
            f"{ort.get_available_providers()} (install onnxruntime-gpu and the CUDA libraries)"
        )
    if not wants_cuda:
        return [CPU]
    options = {
        "device_id": "0",
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "DEFAULT",
    }
    if config.gpu_mem_limit_mb:
        options["gpu_mem_limit"] = str(config.gpu_mem_limit_mb * 1024 * 1024)
    return [(CUDA, options), CPU]


def artifact_for(config: ModelConfig, *, has_cuda: bool) -> str:
    if has_cuda and config.provider != "cpu" and "cuda" in config.artifacts:
        return config.artifacts["cuda"]
    return config.artifacts.get("cpu") or config.artifacts["cuda"]


class OnnxRunner:
    """One InferenceSession; `run` is safe to call from several threads (ORT allows it)."""

    def __init__(
        self, model: bytes, config: ModelConfig, *, has_cuda: bool, intra_op_threads: int = 0
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        # Idle threads sleep instead of spinning: on shared or small machines spinning burns
        # the CPU that the next request (or the bus) needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Memory patterns pay off for fixed shapes only; text inputs vary within buckets.
        options.enable_mem_pattern = config.task not in ("text_embedding", "text_classification")
        requested = providers_for(config, has_cuda=has_cuda)
        self.session: ort.InferenceSession | None = ort.InferenceSession(
            model, sess_options=options, providers=requested
        )
        self.providers: list[str] = list(self.session.get_providers())
        if (config.require_gpu or config.provider == "cuda") and CUDA not in self.providers:
            self.close()
            raise ProviderUnavailable(
                f"model {config.name!r} asked for CUDA but the session runs on {self.providers}"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._on_gpu = CUDA in self.providers
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session
        if session is None:
            raise RuntimeError("the model was unloaded")
        if self._on_gpu:
            return self._run_bound(session, feeds)
        values = session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values, strict=True))

    def _run_bound(
        self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        # IOBinding: inputs copied once to the device, outputs allocated there by ORT.
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self.output_names:
            binding.bind_output(name, "cuda")
        session.run_with_iobinding(binding)
        values = binding.copy_outputs_to_cpu()
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        """Drop the session so ORT frees its arena (GPU memory included)."""
        with self._lock:
            self.session = None
        gc.collect()
