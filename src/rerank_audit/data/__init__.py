"""Stage 1–2: adapters from raw collections to the data model, and query splits."""
