"""knowledge: a multimodal knowledge base of documents, described images and places (RS-RAG).

- ``documents``: read Markdown, text, HTML, PDF and described images into pages.
- ``chunking``: overlapping sentence chunks with stable ids.
- ``gazetteer``: GeoNames places as passages; the place nearest a coordinate.
- ``store``: the LanceDB + BM25 folder, its embedding model recorded and checked.
- ``build``: ``build_kb`` / ``add_to_kb``, the library behind ``skylens kb build|add``.

Retrieval, fusion, reranking and answers live in ``skylens.tasks.rag``.
"""
