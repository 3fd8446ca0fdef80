"""The fraud detection service (Amazon Fraud Detector)."""
