"""``resnet-nb`` command line: one sub-command per module, imported only when used.

Each module named in ``COMMANDS`` provides ``add_arguments(parser)`` and
``run_cli(args) -> int``. Errors the user can fix (``UserError`` subclasses such as
``DataError`` and ``ValueError`` raised on bad input) print one line, exit code 2.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

DESCRIPTION = """\
Reproduce He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016) on CIFAR-10:
train plain and residual networks under one recipe, compare them, and build a report
(PDF, DOCX, HTML) from the run directories."""

EPILOG = """\
typical commands:
  resnet-nb reproduce --preset smoke --dataset synthetic   a quick check, no data or GPU needed
  resnet-nb data download                                   fetch and md5-verify CIFAR-10
  resnet-nb reproduce                                       the reproduction: 4 models, seed recipe
  resnet-nb reproduce --preset short --seeds 0,1,2          the same at 20 epochs, for a CPU
  resnet-nb train --preset smoke --model resnet20 --dataset synthetic
                                                            train one model into experiments/<run id>/
  resnet-nb report --run-id <run id>                        the report of a reproduction
  resnet-nb bench                                           training images/s on this machine

Each command has its own help: resnet-nb COMMAND --help. An interrupted command resumes
when it is run again; runs live in experiments/<run id>/<model>/."""

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("resnet_nb.data.cli", "download, verify or describe CIFAR-10"),
    "train": ("resnet_nb.training.train", "train one model into its run dir (several models, packed: reproduce --models)"),
    "reproduce": ("resnet_nb.pipeline.reproduce", "run the training notebook for each model with papermill, then the analysis"),
    "report": ("resnet_nb.report.render", "build the pandoc report (pdf, docx, html) of a run id"),
    "bench": ("resnet_nb.bench.throughput", "measure training images/s: common recipe vs this project's fast paths"),
    "parity": ("resnet_nb.bench.parity", "train the short recipe's first epochs in fp32 and bf16: does bf16 train as fp32 does?"),
    "publish": ("resnet_nb.pipeline.publish", "copy a finished reproduction into report/published/<run id>/; the README table"),
    "evaluate": ("resnet_nb.pipeline.evaluate", "re-compute a run's test accuracy from its best.pth and check it against metrics.json"),
    "gpu-check": ("resnet_nb.bench.gpu_check", "check and measure the GPU fast path on this machine's card, in one go"),
    "transfer": ("resnet_nb.pipeline.transfer", "export run dirs as checked tars, or import them on another machine"),
}


class _TopFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and the epilog's line breaks; command names in one column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=16)
        self._action_max_length = 14  # room for "    reproduce" beside its help


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: X)" unless the help text already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from resnet_nb import __version__

    parser = argparse.ArgumentParser(prog="resnet-nb", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_TopFormatter)
    parser.add_argument("--version", action="version", version=f"resnet-nb {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    sub.required = True
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_,
                           formatter_class=_HelpFormatter)
        p.set_defaults(_module=module)
        if chosen in (None, name):  # import only the module of the command used
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    from resnet_nb.data.cifar10 import DataError

    try:
        return int(module.run_cli(args) or 0)
    except (DataError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"resnet-nb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        print(f"resnet-nb {args.command}: error: {e}", file=sys.stderr)  # runs.NoSpaceError: one line
        return 2
    except KeyboardInterrupt:
        print(f"resnet-nb {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
