"""The pandoc report: ``facts`` (every number and verdict the templates may phrase, from the run
files), ``figure_facts`` (the figures, their numbers and captions), ``provenance`` (environment,
commands, configuration, development log) and ``render`` (Jinja2 markdown in zh and en -> PDF,
DOCX, HTML; ``resnet-nb report``).

Layer 5 (models, data -> runs -> training -> analysis -> report -> pipeline -> bench, cli): may
import every layer below it.
"""
