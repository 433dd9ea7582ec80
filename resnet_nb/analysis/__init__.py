"""From run directories to evidence, reading files only: ``aggregate`` (runs -> summary.json,
curves, tables), ``verdicts`` (the one rule table that judges a comparison), ``claims`` (the
paper's claims judged on a summary), ``literature`` (published numbers), ``plots`` (Fig. 6-style
figures), ``probes`` (the theory notebook's measurements at initialisation), ``responses``
(Fig. 7's layer responses) and ``parity`` (bf16 against fp32 in the first epochs).

Layer 4 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli): may
import models, data, runs and training.
"""
