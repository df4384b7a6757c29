"""Offline evaluation: ranking metrics on held-out interactions and the report built from them.

Kept apart from training and serving so that every model (popularity baseline, two-tower
retrieval, ranker) is scored by the same code, and a change to a model can never quietly
change the yardstick it is measured with.
"""
