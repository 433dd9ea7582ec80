"""The networks: ``resnet`` (He et al.'s CIFAR-10 plain and residual nets, option-A shortcuts, the
depth -> parameters table) and ``packed`` (several such nets as one grouped-convolution network,
each member mathematically its own model).

Layer 1 of the data flow (models, data -> runs -> training -> analysis -> report -> pipeline ->
bench, cli): imports nothing of the package.
"""
