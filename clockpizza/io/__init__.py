"""Params and files: the params schema, the runs-table schema, atomic writes, the run store.

Knows no science: nothing here imports the models, the trainer or the metrics.
"""
