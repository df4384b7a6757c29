"""Training jobs: the logic behind the SageMaker entry points in training/."""
