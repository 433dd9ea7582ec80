"""Training: ``config`` (the frozen ``TrainConfig`` and its presets: one field per flag and
notebook parameter), ``prepare`` (data on the device), ``batches`` (the epoch's batches and
evaluation), ``step`` (one SGD step) with ``precision``, ``schedule`` (optimiser, learning rate),
``graphs`` (CUDA-graph capture, compile) and ``evaluation`` (the evaluation forward), ``loop``
(the epochs of one run or a pack, divergence), ``budget`` (the time budget), ``run_writer``
(what a run writes, resume and its refusals) and ``train`` (``resnet-nb train``).

Layer 3 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli): may
import models, data and runs.
"""
