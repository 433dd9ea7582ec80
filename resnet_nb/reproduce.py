"""``resnet-nb reproduce``: the whole reproduction through the notebooks, with papermill.

1. Builds one ``TrainConfig`` per model (and seed) of the preset and checks everything that
   can be checked before any work: the values, the data (loaded once: a missing dataset
   with no network is reported here, once), the Jupyter kernel, and run dirs of the same
   run id that hold another config (refused, with the differing fields).
2. Plans execution units: on CUDA one per depth (plain and residual nets and all seeds of
   that depth, which ``train_many`` may pack into one network); on CPU one per model.
   Units whose runs are all finished are skipped; unfinished ones resume from ``last.pth``.
3. Executes ``notebooks/02_train.ipynb`` once per unit with papermill, each in its own
   process (``--parallel N`` at once, spread over the visible GPUs through
   ``CUDA_VISIBLE_DEVICES``), and saves the executed notebook into the run dir(s) as the
   run's record. Every output line is shown prefixed with the unit's name (the training
   prints one line per epoch). A failing unit reports its notebook and failing cell; the
   others go on; the exit code is 1 if any failed. ``--executor slurm`` runs the same
   executions as the tasks of one SLURM job array instead (``resnet_nb.cluster``).
4. Executes ``01_theory`` (theory figures) and ``03_analysis`` (curves, Fig. 6 style plot,
   ``summary.json``) into ``report/figures/<run_id>/``.

The module also holds the helpers the notebooks call: ``notebook_setup`` and
``configs_from_parameters`` (papermill parameters -> validated configs).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "project_root", "notebook_setup", "TRAIN_EXTRAS", "train_parameter_names",
    "configs_from_parameters", "check_run_dirs", "Unit", "plan_units", "check_kernel",
    "execute_notebook", "theory_parameters", "add_arguments", "run_cli",
]

TRAIN_EXTRAS = ("models", "seeds")        # 02_train parameters beyond the TrainConfig fields
DEFAULT_MODELS = "plain20,plain56,resnet20,resnet56"
KERNEL = "python3"
_SNAPSHOT = "_resnet_nb_names_before_parameters"


# --------------------------------------------------------------------------- notebook helpers

def project_root() -> Path:
    """The checkout holding ``resnet_nb`` (the folder with ``notebooks/``), else the cwd."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "notebooks").is_dir() else Path.cwd()


def notebook_setup(namespace: dict | None = None) -> None:
    """First call of every notebook. Makes relative paths mean the same in JupyterLab
    (which starts kernels in ``notebooks/``), under nbval (``tests/notebooks/``) and under
    papermill (started from the project root): the working directory becomes the project
    root when the kernel started in one of those two folders. With the notebook's
    ``globals()`` it also records the names defined so far, so that
    ``configs_from_parameters`` can tell parameters apart from imports."""
    root = project_root()
    if Path.cwd().resolve() in (root / "notebooks", root / "tests" / "notebooks"):
        os.chdir(root)
    if namespace is not None:
        namespace[_SNAPSHOT] = set(namespace)


def train_parameter_names() -> list[str]:
    """The parameters of ``02_train``: every TrainConfig field, then ``models``, ``seeds``."""
    from resnet_nb.config import TrainConfig

    return [f.name for f in fields(TrainConfig)] + list(TRAIN_EXTRAS)


def _is_parameter_value(name: str, value: Any) -> bool:
    return not (name.startswith("_") or isinstance(value, (types.ModuleType, type)) or callable(value))


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).split(",") if p.strip()]


def configs_from_parameters(namespace: Mapping[str, Any]) -> list:
    """The ``TrainConfig`` list that ``02_train``'s parameters ask for.

    ``namespace`` is the notebook's ``globals()``. Parameters left at ``None`` take the
    preset's value. ``models``/``seeds`` (comma lists) give the cross product of models and
    seeds; the run name is the model, or ``<model>-seed<s>`` with several seeds. All configs
    share one run id (an unfinished matching run's, else a new one: ``resnet_nb.train``).
    A name papermill injected that is not a parameter is refused with the valid names.
    """
    from resnet_nb.config import PRESETS, make_config
    from resnet_nb.train import resolve_run_ids

    known = train_parameter_names()
    hidden = set(namespace.get(_SNAPSHOT, ()))
    try:  # names IPython itself defines (In, Out, exit, ...)
        hidden |= set(get_ipython().user_ns_hidden)  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        pass
    unknown = sorted(k for k, v in namespace.items()
                     if k not in known and k not in hidden and _is_parameter_value(k, v))
    if unknown:
        hints = [f"{u} (did you mean {c[0]}?)" if (c := difflib.get_close_matches(u, known, n=1)) else u
                 for u in unknown]
        raise ValueError(f"unknown parameter(s) {', '.join(hints)}: 02_train takes the TrainConfig "
                         f"fields and models, seeds: {', '.join(known)}")
    values = {k: namespace[k] for k in known if k in namespace}
    preset = values.pop("preset", None) or "seed"
    if preset not in PRESETS:  # first: every default below comes from the preset
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    models, seeds = _split(values.pop("models", "")), _split(values.pop("seeds", ""))
    overrides = {k: v for k, v in values.items() if v is not None}
    models = models or [overrides.pop("model", None) or make_config(preset).model]
    overrides.pop("model", None)
    try:
        seed_list = [int(s) for s in seeds] if seeds else [int(overrides.pop("seed", make_config(preset).seed))]
    except ValueError:
        raise ValueError(f"seeds must be a comma list of integers (e.g. 0,1,2); got {seeds!r}") from None
    overrides.pop("seed", None)
    pairs = [(m, s) for m in models for s in seed_list]
    if len(pairs) > 1 and overrides.get("run_name"):
        raise ValueError("run_name names one run; leave it empty when models/seeds give several "
                         "(runs are named <model> or <model>-seed<s>)")
    cfgs = []
    for m, s in pairs:
        name = overrides.get("run_name") or (m if len(seed_list) == 1 else f"{m}-seed{s}")
        cfgs.append(make_config(preset, **{**overrides, "model": m, "seed": s, "run_name": name}))
    return resolve_run_ids(cfgs)


def check_run_dirs(cfgs: Sequence) -> None:
    """Refuse configs whose run dir already holds a run with other settings (e.g. another
    preset under the same run id), listing every differing field, before anything runs."""
    from resnet_nb.config import config_diff
    from resnet_nb.runs import CONFIG_FILE, read_json, run_dir_of

    problems = []
    for c in cfgs:
        d = run_dir_of(c.out_dir, c.run_id, c.run_name)
        if not (d / CONFIG_FILE).is_file():
            continue
        try:
            stored = read_json(d / CONFIG_FILE)["config"]
        except (ValueError, KeyError, TypeError):  # unreadable: train rebuilds it from last.pth or refuses
            continue
        diff = config_diff(stored, c)
        if diff:
            fields_ = ", ".join(f"{k} (stored {a!r}, now {b!r})" for k, (a, b) in diff.items())
            problems.append(f"{d}: {fields_}")
    if problems:
        raise ValueError(f"run id {cfgs[0].run_id!r} already holds runs with other settings: "
                         f"{'; '.join(problems)}. Use another --run-id (or the stored settings)")


def _status(cfg) -> str | None:
    from resnet_nb.runs import CONFIG_FILE, read_json, run_dir_of

    p = run_dir_of(cfg.out_dir, cfg.run_id, cfg.run_name) / CONFIG_FILE
    try:
        return read_json(p).get("status") if p.is_file() else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- planning

@dataclass
class Unit:
    """One papermill execution of 02_train: one config (CPU) or a same-depth pack (CUDA)."""

    name: str
    cfgs: list
    status: str = "pending"          # pending | skipped | ok | failed
    failure: dict | None = None
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def run_dirs(self) -> list[Path]:
        from resnet_nb.runs import run_dir_of

        return [run_dir_of(c.out_dir, c.run_id, c.run_name) for c in self.cfgs]

    @property
    def finished(self) -> bool:
        return all(_status(c) == "finished" for c in self.cfgs)

    def parameters(self, several_seeds: bool) -> dict:
        """The papermill parameters of this unit (names 1:1 with TrainConfig + extras)."""
        from dataclasses import asdict

        from resnet_nb.config import TrainConfig

        base = asdict(self.cfgs[0])
        defaults = asdict(TrainConfig())
        params = {k: v for k, v in base.items()
                  if k in ("preset", "run_id", "out_dir", "dataset") or v != defaults[k]}
        params = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in params.items()}
        params.pop("run_name", None)
        params.pop("model", None)
        params.pop("seed", None)
        if len(self.cfgs) == 1:
            c = self.cfgs[0]
            params.update(model=c.model, seed=c.seed, run_name=c.run_name)
        else:
            params["models"] = ",".join(dict.fromkeys(c.model for c in self.cfgs))
            seeds = list(dict.fromkeys(c.seed for c in self.cfgs))
            if several_seeds:
                params["seeds"] = ",".join(map(str, seeds))
            else:
                params["seed"] = seeds[0]
        return params


def plan_units(cfgs: Sequence, pack_by_depth: bool) -> list[Unit]:
    """One unit per config, or (``pack_by_depth``) one per depth holding every config of it."""
    from resnet_nb.models import parse_model_name

    if not pack_by_depth:
        return [Unit(c.run_name, [c]) for c in cfgs]
    groups: dict[int, list] = {}
    for c in cfgs:
        groups.setdefault(parse_model_name(c.model)[1], []).append(c)
    return [Unit(f"depth{d}", g) for d, g in groups.items()]


def _uses_cuda(cfg) -> bool:
    if cfg.device.startswith("cuda"):
        return True
    if cfg.device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


# --------------------------------------------------------------------------- execution

def check_kernel(name: str = KERNEL) -> None:
    """Make sure the Jupyter kernel ``name`` runs this environment's Python (papermill and
    nbval start notebooks in it); ValueError with the fix otherwise."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    fix = f"{sys.executable} -m ipykernel install --sys-prefix --name {name}"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise ValueError(f"no Jupyter kernel named {name!r}; install it with `{fix}` (make install does)") from None
    exe = spec.argv[0] if spec.argv else ""
    generic = {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}
    if exe not in generic and Path(exe).resolve() != Path(sys.executable).resolve():
        raise ValueError(f"the Jupyter kernel {name!r} runs {exe}, not this environment's "
                         f"{sys.executable}; reinstall it with `{fix}`")


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict,
                     kernel: str = KERNEL, cwd: str | os.PathLike | None = None) -> dict | None:
    """Run ``notebook`` with papermill into ``output``, streaming the cells' output to this
    process's stdout/stderr. Returns None on success, else a failure record: notebook,
    cell (index), execution_count, ename, evalue and the failing cell's first line."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            progress_bar=False, stdout_file=sys.stdout, stderr_file=sys.stderr,
                            cwd=str(cwd) if cwd else None)
    except PapermillExecutionError as e:
        first = next((ln for ln in str(e.source).splitlines() if ln.strip() and not ln.startswith("#")), "")
        return {"notebook": str(output), "cell": e.cell_index, "execution_count": e.exec_count,
                "ename": e.ename, "evalue": str(e.evalue).splitlines()[0] if e.evalue else "",
                "source": first.strip()}
    except Exception as e:  # noqa: BLE001 - a dead kernel, a bad notebook: still one unit's failure
        return {"notebook": str(output), "cell": None, "execution_count": None,
                "ename": type(e).__name__, "evalue": str(e).splitlines()[0] if str(e) else "", "source": ""}
    return None


def _child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux ``/proc``; empty elsewhere)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields_[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _worker(spec_path: str) -> int:
    """Child process: execute one notebook (spec: JSON), write a failure record if it fails.

    Ctrl-C (SIGINT) is passed on to the kernel (which Jupyter starts in its own session) as
    a kernel interrupt, so the training cell stops cleanly: the run is marked interrupted
    with a resumable ``last.pth``, and the failure record names the interrupted cell."""
    import signal

    spec = json.loads(Path(spec_path).read_text())
    interrupted = []

    def forward(signum, frame):  # noqa: ARG001
        if interrupted:
            return
        interrupted.append(True)
        kids = _child_pids(os.getpid())
        if not kids:
            raise KeyboardInterrupt
        for pid in kids:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass

    signal.signal(signal.SIGINT, forward)
    failure = execute_notebook(spec["notebook"], spec["outputs"][0], spec["parameters"],
                               spec["kernel"], spec["cwd"])
    if failure is None and not interrupted:
        import shutil

        for extra in spec["outputs"][1:]:
            Path(extra).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spec["outputs"][0], extra)
        return 0
    Path(spec["failure_file"]).write_text(json.dumps(failure or {
        "notebook": spec["outputs"][0], "cell": None, "execution_count": None,
        "ename": "KeyboardInterrupt", "evalue": "interrupted", "source": ""}))
    return 130 if interrupted else 1


# kernel log lines that say nothing about the run (jupyter_client's default TCP transport;
# the kernel's own report of the shutdown papermill requests after the last cell)
_NOISE = ("Kernel is running over TCP without encryption", "KeyboardInterrupt caught in kernel")


class _Runner:
    """Runs notebook executions in child processes, at most ``parallel`` at once, and
    prints their output prefixed with the unit's name."""

    def __init__(self, parallel: int, gpus: list[str], kernel: str, cwd: Path, tmp: Path) -> None:
        self.parallel, self.gpus, self.kernel, self.cwd, self.tmp = max(1, parallel), gpus, kernel, cwd, tmp
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []

    def _echo(self, name: str, stream) -> None:
        for line in stream:
            if any(noise in line for noise in _NOISE):
                continue
            with self.lock:
                print(f"[{name}] {line.rstrip()}", flush=True)

    def start(self, unit: Unit, notebook: Path, outputs: list[Path], params: dict, slot: int):
        spec = self.tmp / f"{unit.name}.json"
        failure_file = self.tmp / f"{unit.name}.failure.json"
        failure_file.unlink(missing_ok=True)
        spec.write_text(json.dumps({"notebook": str(notebook), "outputs": [str(o) for o in outputs],
                                    "parameters": params, "kernel": self.kernel, "cwd": str(self.cwd),
                                    "failure_file": str(failure_file)}))
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        if len(self.gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        proc = subprocess.Popen([sys.executable, "-m", "resnet_nb.reproduce", "--worker", str(spec)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, env=env, cwd=str(self.cwd))
        self.procs.append(proc)
        reader = threading.Thread(target=self._echo, args=(unit.name, proc.stdout), daemon=True)
        reader.start()
        gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if len(self.gpus) > 1 else ""
        with self.lock:
            print(f"[{unit.name}] started: {notebook.name} -> {outputs[0]}{gpu}", flush=True)
        return proc, reader, failure_file, time.time()

    def run(self, jobs: list[tuple[Unit, Path, list[Path], dict]]) -> None:
        """Run every (unit, notebook, outputs, parameters); sets unit.status/failure."""
        pending = list(jobs)
        running: dict[int, tuple] = {}
        free_slots = list(range(self.parallel))
        while pending or running:
            while pending and free_slots:
                unit, nb, outs, params = pending.pop(0)
                slot = free_slots.pop(0)
                running[slot] = (unit, *self.start(unit, nb, outs, params, slot))
            time.sleep(0.2)
            for slot, (unit, proc, reader, failure_file, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                reader.join(timeout=5)
                unit.seconds = time.time() - t0
                if proc.returncode == 0:
                    unit.status = "ok"
                else:
                    unit.status = "failed"
                    unit.failure = (json.loads(failure_file.read_text()) if failure_file.is_file() else
                                    {"notebook": "", "cell": None, "ename": "WorkerError",
                                     "evalue": f"exit code {proc.returncode}", "source": ""})
                with self.lock:
                    print(f"[{unit.name}] {_describe(unit)}", flush=True)
                del running[slot]
                free_slots.append(slot)

    def stop(self, grace_s: float = 30.0) -> None:
        """Interrupt the running executions (their kernels stop the training cleanly), wait
        up to ``grace_s`` for them, then terminate what is left."""
        import signal

        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.time() + grace_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def _describe(unit: Unit) -> str:
    if unit.status == "ok":
        return f"done in {unit.seconds:.0f} s"
    if unit.status == "skipped":
        return "skipped (finished)"
    f = unit.failure or {}
    cell = f"cell {f['cell']} (In [{f.get('execution_count')}])" if f.get("cell") is not None else "before any cell"
    src = f": `{f['source']}`" if f.get("source") else ""
    return f"FAILED in {f.get('notebook') or 'its notebook'}, {cell}{src}: {f.get('ename')}: {f.get('evalue')}"


def theory_parameters(preset: str, cfg, run_id: str, figures_root: Path, depths: str | None = None,
                      seeds: str | None = None, batch: int | None = None) -> dict:
    """01_theory's parameters: the data of the training runs, probe sizes by preset (the
    smoke preset's smaller probe, ``probes.SMOKE_PROBE``, else ``probes.FULL_PROBE``)."""
    from resnet_nb.probes import FULL_PROBE, SMOKE_PROBE

    probe = SMOKE_PROBE if preset == "smoke" else FULL_PROBE
    depths, seeds, batch = depths or probe["depths"], seeds or probe["seeds"], batch or probe["batch_size"]
    return {"dataset": cfg.dataset, "data_root": cfg.data_root, "allow_noncanonical": cfg.allow_noncanonical,
            "depths": depths, "seeds": seeds, "batch_size": batch, "normalization": cfg.normalization,
            "run_id": run_id, "figures_root": str(figures_root), "device": cfg.device}


def _theory_done(params: dict, fingerprint: str) -> bool:
    """True when ``<figures_root>/<run_id>/`` already holds the theory outputs of the same
    probe settings and data (01_theory is then not executed again); outputs that do not
    record the data's provenance (older figures, whose titles did not name it) are redone."""
    from resnet_nb.analysis import THEORY_FIGURE_FILES, figures_dir_of
    from resnet_nb.probes import THEORY_JSON

    d = figures_dir_of(params["figures_root"], params["run_id"])
    try:
        stored = json.loads((d / THEORY_JSON).read_text())["parameters"]
    except (OSError, ValueError, KeyError):
        return False
    want = {k: params[k] for k in ("dataset", "depths", "seeds", "batch_size", "normalization")}
    return ({k: stored.get(k) for k in want} == want and stored.get("fingerprint") == fingerprint
            and bool(stored.get("provenance")) and all((d / f).is_file() for f in THEORY_FIGURE_FILES.values()))


# --------------------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="seed", help="recipe: seed, paper or smoke")
    p.add_argument("--run-id", default="", help="run id (folder of the runs); empty: the newest "
                   "unfinished matching reproduction, else a new repro-YYYYmmdd-HHMMSS")
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma list of plain<depth>/resnet<depth>")
    p.add_argument("--seeds", default="", help="comma list of seeds (several: runs <model>-seed<s>); "
                   "empty: the preset's seed")
    p.add_argument("--parallel", type=int, default=1, help="executions at once (spread over the visible GPUs)")
    p.add_argument("--dataset", default="cifar10", help="cifar10, or synthetic (generated, for demos and tests)")
    p.add_argument("--data-root", default=None, help="folder with CIFAR-10 (default $RESNET_NB_DATA or data/cifar10)")
    p.add_argument("--allow-noncanonical", action="store_true", help="accept a CIFAR-10 copy with other md5 sums")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    p.add_argument("--out-dir", default="experiments", help="root folder of run directories")
    p.add_argument("--figures-root", default="report/figures", help="figures go to <figures-root>/<run-id>/")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any TrainConfig field, e.g. --set epochs=2 (repeatable)")
    p.add_argument("--skip-theory", action="store_true", help="do not execute 01_theory")
    p.add_argument("--theory-depths", default=None, help="depths 01_theory probes (default: 20,56,110)")
    p.add_argument("--theory-seeds", default=None, help="seeds 01_theory probes (default: 0,1,2; smoke 0)")
    p.add_argument("--theory-batch", type=int, default=None,
                   help="images in 01_theory's probe batch (default: 128; smoke 16)")
    p.add_argument("--kernel", default=KERNEL, help="Jupyter kernel that executes the notebooks")
    from resnet_nb import cluster

    cluster.add_arguments(p)  # --executor local|slurm and the --slurm-* resources


# TrainConfig fields that reproduce sets from its own flags (--set cannot give them)
_OWN_FLAGS = {"preset": "--preset", "model": "--models", "seed": "--seeds", "dataset": "--dataset",
              "data_root": "--data-root", "allow_noncanonical": "--allow-noncanonical",
              "device": "--device", "out_dir": "--out-dir", "run_id": "--run-id"}


def _overrides(items: Sequence[str]) -> dict:
    from resnet_nb.config import coerce_field

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE (e.g. epochs=2); got {item!r}")
        if key in _OWN_FLAGS:
            raise ValueError(f"--set {key}=... is not used by reproduce; give it as {_OWN_FLAGS[key]}")
        out[key] = coerce_field(key, value)  # unknown fields: ValueError naming the valid ones
    return out


def _execute_units(args: argparse.Namespace, runner: _Runner, jobs: list, base: Path) -> None:
    """The executor seam: run the 02_train executions ``jobs`` (unit, notebook, outputs,
    parameters) on this machine, or (``--executor slurm``) as one SLURM job array through
    ``resnet_nb.cluster``; either way every unit ends with its status and failure set."""
    if args.executor == "slurm":
        from resnet_nb.cluster import run_units

        run_units(jobs, args, base, kernel=runner.kernel, cwd=runner.cwd)
    else:
        runner.run(jobs)


def run_cli(args: argparse.Namespace) -> int:
    from resnet_nb.config import make_config
    from resnet_nb.data import load_dataset
    from resnet_nb.models import parse_model_name
    from resnet_nb.train import resolve_run_ids

    root = project_root()
    nb_dir = root / "notebooks"
    for nb in ("01_theory", "02_train", "03_analysis"):
        if not (nb_dir / f"{nb}.ipynb").is_file():
            raise FileNotFoundError(f"{nb_dir / nb}.ipynb is missing; run reproduce from a checkout "
                                    f"of resnet-nb (jupytext --sync notebooks/*.py recreates it)")
    if args.parallel < 1:
        raise ValueError(f"--parallel must be >= 1; got {args.parallel}")
    models = _split(args.models)
    if not models:
        raise ValueError("--models must name at least one model (e.g. plain20,resnet20)")
    for m in models:
        parse_model_name(m)
    try:
        seeds = [int(s) for s in _split(args.seeds)]
    except ValueError:
        raise ValueError(f"--seeds must be a comma list of integers; got {args.seeds!r}") from None
    out_dir = Path(args.out_dir).expanduser().resolve()
    data_root = str(Path(args.data_root).expanduser().resolve()) if args.data_root else None
    overrides = _overrides(args.overrides)
    run_name = overrides.pop("run_name", "")
    common = dict(dataset=args.dataset, data_root=data_root, allow_noncanonical=args.allow_noncanonical,
                  device=args.device, out_dir=str(out_dir), run_id=args.run_id, **overrides)
    seed_list = seeds or [make_config(args.preset, **common).seed]
    several = len(seed_list) > 1
    if run_name and len(models) * len(seed_list) > 1:
        raise ValueError(f"--set run_name={run_name} names one run's folder, but --models/--seeds give "
                         f"{len(models) * len(seed_list)} runs (named <model> or <model>-seed<s>); "
                         f"drop it, or use --run-id to name the folder that groups them")
    cfgs = [make_config(args.preset, **{**common, "model": m, "seed": s,
                                        "run_name": run_name or (f"{m}-seed{s}" if several else m)})
            for m in models for s in seed_list]
    cfgs = resolve_run_ids(cfgs)
    run_id = cfgs[0].run_id

    # ---- everything that can fail, before any run
    check_kernel(args.kernel)
    if args.executor == "slurm":  # options, client commands, controller: before anything is submitted
        from resnet_nb import cluster

        cluster.check_slurm(args)
    ds = load_dataset(args.dataset, data_root, args.allow_noncanonical)   # DataError: shown once
    check_run_dirs(cfgs)
    pack = _uses_cuda(cfgs[0]) if args.executor == "local" else cluster.uses_cuda(args, cfgs[0])
    gpus = _visible_gpus() if pack else []
    units = plan_units(cfgs, pack_by_depth=pack)
    for u in units:
        if u.finished:
            u.status = "skipped"
    todo = [u for u in units if u.status != "skipped"]
    print(f"reproduce: run id {run_id}, preset {args.preset}, {len(cfgs)} runs in {len(units)} "
          f"executions ({len(units) - len(todo)} finished, skipped); data: {ds.provenance} "
          f"({ds.train_y.numel()} train / {ds.test_y.numel()} test, fingerprint {ds.fingerprint[:12]}); "
          f"{'CUDA, ' + str(len(gpus)) + ' GPU(s), one execution per depth' if pack else 'CPU, one execution per model'}; "
          f"--parallel {args.parallel}", flush=True)
    print(f"reproduce: to resume after an interruption: resnet-nb reproduce --preset {args.preset} "
          f"--run-id {run_id} ... (same options)", flush=True)
    for u in units:
        if u.status == "skipped":
            print(f"[{u.name}] {_describe(u)}", flush=True)
    figures_root = Path(args.figures_root).expanduser().resolve()
    base = out_dir / run_id

    with tempfile.TemporaryDirectory(prefix="resnet-nb-reproduce-") as tmp:
        runner = _Runner(args.parallel, gpus, args.kernel, root, Path(tmp))
        try:
            _execute_units(args, runner, [(u, nb_dir / "02_train.ipynb", [d / "02_train.ipynb" for d in u.run_dirs],
                                           u.parameters(several)) for u in todo], base)
            finals = []
            theory = theory_parameters(args.preset, cfgs[0], run_id, figures_root, args.theory_depths,
                                       args.theory_seeds, args.theory_batch)
            if args.skip_theory:
                pass
            elif _theory_done(theory, ds.fingerprint):
                print("[01_theory] skipped (its figures for these settings exist)", flush=True)
            else:
                finals.append((Unit("01_theory", []), nb_dir / "01_theory.ipynb", [base / "01_theory.ipynb"],
                               theory))
            if any((d / "metrics.json").is_file() for u in units for d in u.run_dirs):
                finals.append((Unit("03_analysis", []), nb_dir / "03_analysis.ipynb", [base / "03_analysis.ipynb"],
                               {"run_id": run_id, "runs_dir": str(out_dir), "figures_root": str(figures_root),
                                "expected_models": ",".join(models)}))
            runner.parallel = 1
            runner.run(finals)
        except KeyboardInterrupt:
            print("reproduce: interrupting the running executions (the runs keep a resumable "
                  "last.pth) ...", file=sys.stderr, flush=True)
            try:
                runner.stop()
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                for p in runner.procs:
                    p.kill()
            print(f"reproduce: interrupted; rerun with --run-id {run_id} (same options) to resume",
                  file=sys.stderr)
            return 130
    failed = [u for u in units + [j[0] for j in finals] if u.status == "failed"]
    print(f"reproduce: {sum(u.status == 'ok' for u in units)} executed, "
          f"{sum(u.status == 'skipped' for u in units)} skipped, {len(failed)} failed; "
          f"runs in {base}, figures in {figures_root / run_id}", flush=True)
    for u in failed:
        print(f"reproduce: {u.name}: {_describe(u)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    from resnet_nb.cli import main

    sys.exit(main(["reproduce", *sys.argv[1:]]))
