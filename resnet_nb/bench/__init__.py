"""Measurements of speed and of numerical agreement, outside the data flow: ``throughput``
(``resnet-nb bench``: images/s per path on the current device) with ``table`` (implied wall
times, the printed table), ``cpu`` (the CPU table), ``sync_check`` (host syncs per step),
``parity`` (bf16 against fp32 training) and ``gpu_check`` (the GPU check a user runs on a card).

Layer 7 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli): may
import every layer below it; nothing imports it but the command line.
"""
