"""AWS-compatible API: SigV4 verification, error shapes, X-Amz-Target dispatch."""
