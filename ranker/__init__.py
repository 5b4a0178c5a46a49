"""Unbiased learning to rank from click logs: simulate, preprocess, train, evaluate, export, validate."""
