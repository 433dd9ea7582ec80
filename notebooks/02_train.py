# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train one model (or several) under one controlled recipe
#
# Every comparison in the report holds the recipe fixed and changes only the network: the
# depth (20 vs 56) and whether the blocks add their shortcut (plain vs ResNet, He et al.
# 2016, sec. 4.2). This notebook trains the runs its parameters describe into
# `<out_dir>/<run_id>/<run_name>/` (config.json, metrics.json, best.pth, last.pth) and
# ends with their loss and accuracy curves.
#
# **Parameters.** The names map 1:1 onto the fields of `resnet_nb.training.config.TrainConfig`;
# a value left at `None` comes from the `preset` (`seed`: the seed report's recipe, `short`:
# the seed recipe at 20 epochs, for a CPU, `paper`: sec. 4.2 with 64k iterations and a 45k/5k
# split, `smoke`: a CPU-sized check).
# Two extras, `models` and `seeds` (comma lists), train the cross product, named `<model>`
# or `<model>-seed<s>` when there are several seeds. With papermill:
#
# ```
# papermill notebooks/02_train.ipynb out.ipynb -p preset smoke -p model resnet20 -p dataset synthetic
# ```
#
# A parameter name that is not a field is refused with the list of valid names; a run dir
# of the same run id that holds another config is refused with the differing fields.
# Rerunning resumes an unfinished run from `last.pth`; a finished run is not trained again.

# %%
from resnet_nb.analysis import aggregate, plots
from resnet_nb.pipeline.notebook import check_run_dirs, configs_from_parameters, notebook_setup
from resnet_nb.runs.rundir import effective_status, load_run
from resnet_nb.training.train import train, train_many

notebook_setup(globals())  # relative paths below are relative to the project root

# %% tags=["parameters"]
# Every name but models/seeds is a TrainConfig field: `resnet-nb train --help` says what each means.
# None takes the preset's value.
preset = "seed"  # seed | short | paper | smoke
model = "resnet20"
models = ""  # comma list (plain20,resnet20): several models, instead of model
seed = 0
seeds = ""  # comma list (0,1,2): several seeds, runs named <model>-seed<s>
shortcut = None
epochs = None
batch_size = None
lr = None
momentum = None
weight_decay = None
schedule = None
milestones = None
gamma = None
max_iters = None
warmup_iters = None
warmup_lr = None
normalization = None
val_split = None
train_subset = None
test_subset = None
dataset = "cifar10"
data_root = None
allow_noncanonical = None
device = "auto"
precision = None
out_dir = "experiments"
run_id = ""
run_name = ""
eval_every = None
time_budget = None
pack_mode = None

# %% [markdown]
# ## Load: the configs these parameters describe
#
# Everything is validated here, before any training: values, names, and the run dirs
# already present under the run id.

# %%
cfgs = configs_from_parameters(globals())
check_run_dirs(cfgs)
for cfg in cfgs:
    print(f"{cfg.run_name}: {cfg.model}, preset {cfg.preset}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
          f"lr {cfg.lr} (x{cfg.gamma} at {cfg.schedule} {','.join(map(str, cfg.milestones))}), "
          f"seed {cfg.seed} -> {cfg.out_dir}/{cfg.run_id}/{cfg.run_name}")

# %% [markdown]
# ## Train
#
# One line per epoch: train loss and accuracy, test loss and accuracy, learning rate, time.

# %%
run_dirs = train_many(cfgs) if len(cfgs) > 1 else [train(cfgs[0])]

# %% [markdown]
# ## This run's curves
#
# Training (dashed) and test (solid) loss and accuracy per epoch, read back from the run
# directories, exactly what the analysis notebook and the report will see.

# %%
runs = [load_run(d) for d in run_dirs]
curves = {r["config"]["run_name"]: aggregate.model_curves([r]) for r in runs if r["metrics"]}
plots.show(plots.run_curves_figure(curves, aggregate.runs_label(runs)))

# %%
# NBVAL_CHECK_OUTPUT
for r in runs:
    print(f"{r['config']['run_name']}: status {effective_status(r)}, {len(r['metrics'])} of "
          f"{r.get('epochs_planned')} epochs, {r['params']:,} parameters, data {r['dataset']['provenance']}")

# %%
for r in runs:
    best = max((m for m in r["metrics"] if m["test_acc"] is not None), key=lambda m: m["test_acc"], default=None)
    if best:
        print(f"{r['config']['run_name']}: best test acc {best['test_acc']:.4f} at epoch {best['epoch']}, "
              f"last {r['metrics'][-1]['test_acc']:.4f}; {r['metrics'][-1]['elapsed']:.0f} s; {r['path']}")
