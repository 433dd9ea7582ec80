"""The run-directory contract, shared by the writer (training) and every reader: ``rundir`` (file
names, atomic writes, safe reads, locks, run statuses, run-id names), ``published`` (the committed
copies in ``report/published/`` and where a run id is read from) and ``environment`` (the machine
and the code a run was made with). docs/run-directory.md describes the files.

Layer 2 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli):
imports nothing of the package but ``resnet_nb.__version__``.
"""
