"""modalmesh-load: mixed modality classes at set ratios against any OpenAI-compatible server."""
