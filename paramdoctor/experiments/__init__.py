"""experiments: a layer above train and diagnose; nothing below imports them.

Each experiment calls the trainer as a function with a config, records every
run it makes as an MLflow child of the run it started from, and judges runs
with the same engine ``diagnose`` uses.
"""
