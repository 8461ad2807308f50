"""Models: the bundled base model, loading, prompts and the scorer interface."""
