"""Deployment helpers that run against a stage's AWS account: bootstrap and smoke check."""
