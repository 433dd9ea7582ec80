"""``resnet-nb data download|verify|info``."""
from __future__ import annotations

import argparse
import sys

from resnet_nb.data import cifar10


class _DeprecatedRoot(argparse.Action):
    """``--root``: the old name of ``--data-root``; still accepted, hidden from --help."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("resnet-nb data: --root is deprecated; use --data-root (the name train and "
              "reproduce use)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("download", "verify", "info"),
                   help="download: fetch the archive if missing; verify: check md5 sums; "
                        "info: counts per class, fingerprint, canonical yes/no")
    p.add_argument("--data-root", default=None,
                   help="folder holding cifar-10-batches-py or cifar-10-python.tar.gz "
                        "(default: $RESNET_NB_DATA or data/cifar10)")
    p.add_argument("--root", dest="data_root", action=_DeprecatedRoot, default=None,
                   help=argparse.SUPPRESS)
    p.add_argument("--allow-noncanonical", action="store_true",
                   help="load a copy whose md5 sums differ from the published ones")


def run_cli(args: argparse.Namespace) -> int:
    if args.action == "download":
        d = cifar10.find_batches_dir(args.data_root, download=True)
        print(f"CIFAR-10 batches at {d}")
        args.action = "verify"
    if args.action == "verify":
        d = cifar10.find_batches_dir(args.data_root, download=False)
        bad = cifar10.verify_cifar10(d)
        for name, want in cifar10.BATCH_MD5.items():
            print(f"{name:14s} {'MISMATCH' if name in bad else 'ok'} (published md5 {want})")
        print(f"canonical: {'no' if bad else 'yes'}")
        return 1 if bad else 0
    ds = cifar10.load_cifar10(args.data_root, allow_noncanonical=args.allow_noncanonical, download=False)
    print(f"root:        {ds.root}")
    print(f"provenance:  {ds.provenance}")
    print(f"canonical:   {'yes' if ds.canonical else 'no'}")
    print(f"fingerprint: {ds.fingerprint}")
    print(f"train: {ds.train_y.numel()} images, test: {ds.test_y.numel()} images")
    tr = ds.train_y.bincount(minlength=10).tolist()
    te = ds.test_y.bincount(minlength=10).tolist()
    print(f"{'class':12s} {'train':>6s} {'test':>6s}")
    for c, a, b in zip(cifar10.CLASSES, tr, te):
        print(f"{c:12s} {a:6d} {b:6d}")
    return 0
