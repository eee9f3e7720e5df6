"""Item tokenizers: quantize item embeddings into collision-free semantic IDs."""
