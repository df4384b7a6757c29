"""The workshop around learnrec: the command line, the local AWS, benchmarks and packaging.

Nothing here runs in AWS and no Lambda function ships it: :mod:`learnrec_dev.packaging`
copies only ``learnrec/`` into the functions. It may import ``learnrec``; ``learnrec``
never imports it.
"""
