"""The search index service (Kendra Query / Retrieve)."""
