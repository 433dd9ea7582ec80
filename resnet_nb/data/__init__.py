"""CIFAR-10: ``cifar10`` finds, downloads, verifies (md5) and loads the batches, fingerprints them
and labels their provenance (canonical, non-canonical, synthetic); ``augment`` is the paper's
crop and flip and the normalisation, as pure tensor functions; ``cli`` is ``resnet-nb data``.

Layer 1 of the data flow (models, data -> runs -> training -> analysis -> report -> pipeline ->
bench, cli): imports nothing of the package.
"""
