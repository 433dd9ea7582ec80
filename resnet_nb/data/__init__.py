"""CIFAR-10: ``cifar10`` finds, downloads, verifies (md5) and loads the batches, fingerprints them,
labels their provenance (canonical, non-canonical, synthetic) and augments whole epochs as pure
tensor functions; ``cli`` is ``resnet-nb data``.

Layer 1 of the data flow (models, data -> runs -> training -> analysis -> report -> pipeline ->
bench, cli): imports nothing of the package.
"""
