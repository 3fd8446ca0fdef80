"""The image builder (SageMaker custom images) service."""
