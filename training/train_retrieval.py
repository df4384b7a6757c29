"""SageMaker entry point: train the two-tower retrieval model (see learnrec.training.jobs).

Locally:
``SM_CHANNEL_TRAIN=data/ SM_MODEL_DIR=model/ python training/train_retrieval.py --epochs 5``
"""

import sys

from learnrec.training.jobs import main

if __name__ == "__main__":
    sys.exit(main("train_retrieval"))
