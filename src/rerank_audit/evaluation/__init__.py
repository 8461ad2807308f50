"""Stage 7: ranking and explainability measures, statistics."""
