"""One module per group of verbs: each adds its parsers and holds the thin handlers."""
