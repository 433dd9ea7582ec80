"""Orchestration around the data flow: ``reproduce`` (papermill runs of the notebooks per model and
seed), ``executor`` (local executions, threads, time budget) and ``cluster`` (SLURM through
submitit), ``notebook`` (helpers the notebooks call), ``publish`` (a finished reproduction into
``report/published/``, the README's results block), ``evaluate`` (re-checks published weights) and
``transfer`` (run dirs exported and imported between machines).

Layer 6 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli): may
import every layer below it.
"""
