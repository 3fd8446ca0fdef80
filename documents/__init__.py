"""Document text extraction shared by the crawler and the indexer: pure functions, no I/O."""
