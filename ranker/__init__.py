"""Unbiased learning to rank from click logs: simulate, preprocess, train, evaluate, export, validate."""
__version__ = "0.2.0"
