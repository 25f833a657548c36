"""Background side of Snapmatch: RQ queues, retry policies, job families and the worker entry point.

Job functions are thin: load the row, call the domain (``snapmatch``), record the outcome.
"""
