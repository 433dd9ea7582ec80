"""resnet-nb: a literate reproduction of He et al., "Deep Residual Learning for Image
Recognition" (CVPR 2016) on CIFAR-10. See README.md; nothing heavy happens at import.

The sub-packages follow the data flow, each importing only the ones before it: ``models`` and
``data`` -> ``runs`` (the run-directory contract) -> ``training`` -> ``analysis`` -> ``report``
-> ``pipeline`` (reproduce, executors, publish), with ``bench`` and ``cli`` on top."""
from pathlib import Path

__version__ = "0.1.0"
REPO = Path(__file__).resolve().parent.parent  # the project root (a source checkout or an editable install)
