"""Training: ``config`` (the frozen ``TrainConfig`` and its presets: one field per flag and
notebook parameter), ``prepare`` (data on the device), ``step`` (one optimisation step, evaluation,
precision), ``loop`` (the epochs of one run or of a pack, time budget, divergence), ``run_writer``
(what a run writes, resume and its refusals) and ``train`` (``resnet-nb train``).

Layer 3 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli): may
import models, data and runs.
"""
