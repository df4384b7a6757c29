"""Candidate retrieval: the two-tower model, its ONNX export and its serving runtime."""
