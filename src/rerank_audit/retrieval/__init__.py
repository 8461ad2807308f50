"""Stage 3: first-stage retrieval."""
