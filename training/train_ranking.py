"""SageMaker entry point: train the XGBoost re-ranker and write the model bundle.

Locally: ``SM_CHANNEL_TRAIN=fit/ SM_CHANNEL_LABELS=labels/ SM_CHANNEL_RETRIEVAL=model/
SM_MODEL_DIR=bundle/ python training/train_ranking.py``
"""

import sys

from learnrec.training.jobs import main

if __name__ == "__main__":
    sys.exit(main("train_ranking"))
