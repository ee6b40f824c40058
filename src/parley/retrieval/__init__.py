"""Retrieval for vector stores and the ``file_search`` tool: chunking, embeddings, ingestion and search."""
