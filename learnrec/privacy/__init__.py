"""Erasure and retention beyond the database: the scheduled maintenance sweeps.

:mod:`learnrec.privacy.erasure` removes erased learners from the event archive, dead
letters and model bundles; :mod:`learnrec.privacy.retention` deletes what is older than
it may be kept; :mod:`learnrec.privacy.maintenance` runs both (the maintenance function,
``learnrec privacy sweep``).
"""
