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
# # 03 · Analysis: degradation, and what the shortcut changes
#
# He et al. 2016 (sec. 4.2, Fig. 6) show on CIFAR-10 that a deeper *plain* net has higher
# training **and** test error than a shallower one (the degradation problem: an optimisation
# difficulty, not overfitting), while the residual nets of the same depths do not degrade
# and gain from depth. This notebook reads the run directories of one run id (files only,
# so it works on results trained elsewhere), and writes into `report/figures/<run_id>/`:
#
# * `resnet_train_loss.png` and `resnet_test_accuracy.png` (the seed report's figures),
# * `resnet_error_fig6.png`: training error dashed, test error solid, plain and residual panels,
#   one colour per depth (several seeds: the mean with a shaded ± std band),
# * `resnet_error_vs_depth.png` (with a depth sweep, `--models sweep`): test error against depth,
#   beside the paper's Table 6,
# * `summary.json`: per model the best test accuracy and its epoch, the last-epoch test
#   accuracy, final and minimal training loss, parameters, wall time, and the dataset's
#   provenance; means over seeds (with the std) when a model has several.
#
# Every number shown is computed from the run directories (`resnet_nb.analysis.aggregate`).

# %%
from IPython.display import Image, Markdown, display

from resnet_nb.analysis import aggregate, claims, responses, verdicts
from resnet_nb.models.resnet import SEED_MODELS
from resnet_nb.pipeline.notebook import notebook_setup
from resnet_nb.runs.rundir import effective_status

notebook_setup(globals())  # relative paths below are relative to the project root

# %% tags=["parameters"]
run_id = ""                                          # "" -> the newest run id under runs_dir
runs_dir = "experiments"                             # root folder of run directories
figures_root = "report/figures"                      # output: <figures_root>/<run_id>/
expected_models = ""                                 # comma list to compare ("": the 2x2, models.SEED_MODELS); absent ones are listed as missing

# %% [markdown]
# ## Load the run directories

# %%
run_id, runs = aggregate.load_runs(runs_dir, run_id)
expected = [m.strip() for m in expected_models.split(",") if m.strip()] or SEED_MODELS

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(runs)} run(s):")
for r in runs:
    print(f"  {r['config']['run_name']}: {r['config']['model']}, seed {r['config']['seed']}, preset {r['config']['preset']}, "
          f"{len(r['metrics'])} epochs, status {effective_status(r)}")

# %% [markdown]
# ## Summarise, plot, export
#
# `analysis.analyze` writes the figures and `summary.json`; the theory figures of
# `01_theory`, when present in the same folder, are listed in the summary too.

# %%
summary = aggregate.analyze(runs_dir, run_id, figures_root, expected)
fig_dir = aggregate.figures_dir_of(figures_root, run_id)
print(f"run id {summary['run_id']} ({summary['preset']} preset), data: {summary['dataset']['provenance']} "
      f"(canonical: {summary['dataset']['canonical']}, fingerprint {summary['dataset']['fingerprint'][:12]})")
print(f"missing models: {', '.join(summary['missing']) or 'none'}")
print(f"the figure titles name the data: {aggregate.runs_label(runs)}")
print(f"written to {fig_dir}: summary.json, {', '.join(summary['figures'].values())}")

# %% [markdown]
# ## Training loss and test accuracy (the seed report's figures)

# %%
display(Image(filename=str(fig_dir / summary["figures"]["train_loss"])))
display(Image(filename=str(fig_dir / summary["figures"]["test_accuracy"])))

# %% [markdown]
# ## Paper Fig. 6 style: training error (dashed) and test error (solid)
#
# Left the plain nets, right the ResNets, one colour per depth; with several seeds each curve
# is the per-epoch mean with a shaded ± std band. Degradation shows as the deeper plain net's
# curves lying *above* the shallower one's, in training error as well as test error. The
# y-axis is the paper's 0-20 %, extended (the title says so) when errors lie above it.

# %%
display(Image(filename=str(fig_dir / summary["figures"]["error_fig6"])))

# %% [markdown]
# ## Depth sweep: error against depth (the paper's Table 6)
#
# Test error per depth, ours (each seed's final-epoch test accuracy; mean ± std, n seeds) beside the
# paper's ResNets, read from `report/literature.json`. It needs results at three depths or
# more in a family (`resnet-nb reproduce --models sweep`).

# %%
ready, why = aggregate.sweep_ready(summary["models"])
if ready:
    display(Markdown(aggregate.depth_table(summary)))
    display(Image(filename=str(fig_dir / summary["figures"]["error_vs_depth"])))
else:
    print(f"no depth sweep: {why}")

# %% [markdown]
# ## The seed report's two tables
#
# Best test accuracy over all epochs, and the test accuracy at the last epoch; the last
# column is the number of seeds (n) each row averages.

# %%
best_table, last_table = aggregate.results_tables(summary)
display(Markdown(best_table))
display(Markdown(last_table))

# %% [markdown]
# ## Degradation and the residual fix, judged by one rule table
#
# For each depth pair present: does the deeper plain net test worse and train worse than the
# shallower one, and does the residual net of the deeper depth beat the plain net of that depth
# and the shallower residual net? The accuracy compared is the final epoch's (the paper reports
# the net at the end of training; the best epoch is chosen on the test set). Every verdict comes
# from the rule table of `resnet_nb.analysis.verdicts` (the report prints the same table): synthetic
# data, the smoke preset or an unfinished run are not assessable; one seed counts only beyond
# the published seed noise; several seeds are tested with Welch's t-test; the three primary
# claims are corrected for multiplicity (Holm).

# %%
display(Markdown(verdicts.rule_table("en")))
for line in aggregate.degradation_checks(summary):
    print(line)

# %% [markdown]
# The same comparisons at the shallowest and the deepest depth that both families have, as a
# table: primary or secondary, seeds per model (n), means, the gap in the claimed direction
# with its 95 % interval (†: resting on the published seed noise) and the one-sided p
# (Holm-adjusted in brackets for the primary claims).

# %%
pair = claims.paired_depths(summary["models"])
if pair:
    display(Markdown(claims.claims_table(summary, *pair)))
else:
    print("no two depths with both a plain and a residual net: no claims table")

# %% [markdown]
# Every run on its own: seed, final and best test accuracy, final training loss. A seed that
# diverged is named here and left out of the means and verdicts above.

# %%
display(Markdown(aggregate.per_seed_table(summary)))

# %% [markdown]
# ## Paper Fig. 7: the layer responses of the trained nets
#
# He et al. (sec. 4.2, Fig. 7) measure the standard deviation of every 3x3 layer's response,
# its output after BN and before the ReLU and the addition, and find the ResNets' responses
# smaller than the plain nets' and smaller still in deeper ResNets: the residual functions
# stay close to zero. `responses.layer_responses` loads each run's `best.pth`, puts the net
# in eval mode (BN running statistics) and runs the run's test images through it, with a hook
# on every such BN; a layer's std pools all its output values (images, channels, positions).
# It writes `layer_responses.json` and `resnet_layer_responses_fig7.png` next to
# `summary.json`. It needs a `best.pth` of both families and runs on the CPU.

# %%
fig7 = responses.layer_responses(runs_dir, run_id, figures_root)
if "skipped" in fig7:
    print(f"Fig. 7 skipped: {fig7['skipped']}")
else:
    display(Image(filename=str(fig_dir / fig7["figure"])))
    for line in responses.comparison_lines(fig7):
        print(line)
