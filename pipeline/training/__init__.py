"""Training: the commands that fit, score and use a model, over run directories.

`train` fits a model from a dataset and writes `runs/NAME/` (`model.keras`, `config.json`,
`history.json`, `checkpoints/`; `checkpoints` writes and restores them, `replicas` spreads a run over
devices, `processes` over processes and hosts); `evaluate` scores a run on a test split; `predict`
classifies fresh sequences.
"""
