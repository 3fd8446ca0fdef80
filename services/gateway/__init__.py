"""The HTTP gateway: REST API, AWS-compatible API, auth."""
