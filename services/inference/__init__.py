"""The inference server (ONNX Runtime) service."""
