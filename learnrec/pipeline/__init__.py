"""The retraining pipeline: one definition, run by Step Functions in AWS and locally."""
