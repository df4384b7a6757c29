"""The learnrec CDK constructs: one module per logical unit, wired in :mod:`.stack`.

Constructs take plain values (names, sizes, thresholds, asset folders) and never read
the environment, the CDK context or :mod:`learnrec.stages` on their own: ``cdk/app.py``
chooses the stage and passes its :class:`~learnrec.stages.StageConfig` values in, so a
test can build any stage in-process with the same code the CLI runs.
"""
