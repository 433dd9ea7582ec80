"""resnet-nb: a literate reproduction of He et al., "Deep Residual Learning for Image
Recognition" (CVPR 2016) on CIFAR-10. See README.md; nothing heavy happens at import."""

__version__ = "0.1.0"
