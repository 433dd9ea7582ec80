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
# # 01 · Why `y = F(x) + x` eases optimisation
#
# A residual block (He et al. 2016, sec. 3.1, eq. 1) computes
#
# $$y = \mathrm{relu}\big(F(x, \{W_i\}) + x\big), \qquad F(x) = \mathrm{BN}(W_2\,\mathrm{relu}(\mathrm{BN}(W_1 x))),$$
#
# so the stacked layers only have to learn the *residual* $F(x) = H(x) - x$ of the mapping
# $H$ they should represent. If the identity is close to optimal, driving $F$ towards zero is
# easier than fitting an identity with a stack of non-linear layers. The plain network used
# as the control is the same stack without the `+ x` (`resnet_nb.models.resnet`).
#
# The shortcut also changes how signals travel. Backwards, a residual block passes
# $\partial L/\partial x = \partial L/\partial y\,(I + \partial F/\partial x)$: an identity
# term reaches every earlier block directly, while in the plain net the gradient is
# re-multiplied by every conv-BN-relu on the way down. Forwards, each block *adds* a
# normalised branch to its input instead of replacing it.
#
# The paper notes (sec. 4.1) that its plain nets with BN do not suffer from *vanishing*
# gradients, and locates the degradation problem in optimisation itself. The measurements
# below make the difference in signal propagation visible at initialisation (He init, BN
# in training mode, one batch of training images), for plain and residual nets of the
# depths and seeds the parameters name. The full probe (`probes.FULL_PROBE`, this
# notebook's defaults) is depth 20, 56 and 110 with three seeds; a smaller one, such as the
# smoke preset's, prints what it left out below and says so in every figure title, as every
# title also says which data the batch came from. The functions live in `resnet_nb.analysis.probes`.

# %%
from IPython.display import Markdown, display

from resnet_nb.analysis import plots, probes
from resnet_nb.analysis.aggregate import figures_dir_of
from resnet_nb.data import cifar10
from resnet_nb.pipeline.notebook import notebook_setup
from resnet_nb.training.prepare import resolve_device

notebook_setup(globals())  # relative paths below are relative to the project root

# %% tags=["parameters"]
dataset = "cifar10"           # cifar10 | synthetic
data_root = None              # folder holding CIFAR-10 (None: $RESNET_NB_DATA or data/cifar10)
allow_noncanonical = False    # accept a CIFAR-10 copy whose md5 sums differ
depths = "20,56,110"          # network depths 6n+2 to probe
seeds = "0,1,2"               # initialisation seeds per depth and family
batch_size = 128              # images in the probe batch (one SGD batch of the recipe)
normalization = "channel"     # channel | pixel: as the training recipe normalises
device = "auto"               # auto | cpu | cuda
run_id = ""                   # figures go to <figures_root>/<run_id>/ ("" -> <figures_root>/theory/)
figures_root = "report/figures"

# %% [markdown]
# ## The block, in code
#
# `resnet_nb.models.resnet.BasicBlock` is the equation above: `residual_branch` is $F(x)$, two 3x3
# conv-BN layers, and `forward` adds the shortcut before the last ReLU. The plain control is the
# same block built with `shortcut=None`; where the shape changes, option A (`ShortcutA`)
# subsamples and zero-pads the identity (sec. 3.3).

# %%
import inspect

from resnet_nb.models.resnet import BasicBlock

print(inspect.getsource(BasicBlock.residual_branch))
print(inspect.getsource(BasicBlock.forward))

# %% [markdown]
# ## Load: one batch of training images
#
# The batch's provenance (CIFAR-10, a non-canonical copy, or the synthetic fixture) goes
# with the probe's parameters into `theory_probes.json` and into every figure title.

# %%
ds = cifar10.load_dataset(dataset, data_root, allow_noncanonical)
x, y = probes.probe_batch(ds, batch_size, seed=0, normalization=normalization,
                          device=resolve_device(device))
probe_parameters = dict(dataset=dataset, provenance=ds.provenance, fingerprint=ds.fingerprint, depths=depths,
                        seeds=seeds, batch_size=batch_size, normalization=normalization)
data_label = probes.probe_label(probe_parameters)
print(f"probe batch: {tuple(x.shape)} on {x.device}")
print(f"figures say: {data_label}")

# %% [markdown]
# ## Measure
#
# For every depth, family and seed: build the network with that seed (plain and residual
# nets of one seed start from identical conv weights), run the batch forward and backward
# once through the cross-entropy loss, and record
# 1. `||dL/dW||` of every 3×3 conv weight (layer 1 is the stem, then two per block);
# 2. the standard deviation of the stem output and of every block output;
# 3. `||dL/dx||`, the gradient that reaches the input images;
# 4. the shattering probe: the gradient of one logit with respect to the input at points on a
#    line through input space, and how well neighbouring gradients correlate.

# %%
results = probes.run_probes(x, y, probes.parse_int_list(depths, "depths"),
                            probes.parse_int_list(seeds, "seeds"), progress=True)
summary = probes.summarize_probes(results)

# %%
# NBVAL_CHECK_OUTPUT
print(probes.probe_shapes(summary))

# %% [markdown]
# ## Gradient norm of every conv layer
#
# Plotted against the layer index (log scale; band: ±1 std over seeds). In the plain nets the
# gradient changes by a factor that grows with depth between the last and the first layers,
# so no single learning rate suits all layers; the residual nets keep every layer's gradient
# in a narrow band. The table below gives the max/min ratio per model.

# %%
plots.show(plots.grad_norm_figure(summary, data_label))

# %% [markdown]
# ## Forward activation std by depth
#
# In the plain net every block ends in BN + relu, so the output scale is reset at every
# block. In the residual net each block adds a unit-variance branch to its input: the
# signal grows along the depth while the identity part carries the input unchanged.

# %%
plots.show(plots.activation_std_figure(summary, data_label))

# %% [markdown]
# ## The gradient that reaches the input
#
# `||dL/dx||` against depth, every seed a dot. Its growth with depth measures how much the
# backward pass amplifies on the way down.

# %%
plots.show(plots.input_grad_figure(summary, data_label))

# %% [markdown]
# ## Shattered gradients: do nearby inputs get similar gradients?
#
# Balduzzi et al. (2017, Fig. 1) fed a line of inputs through deep nets and found that the
# gradient with respect to the input of a deep *plain* net jumps from point to point like
# white noise ("shattered"), while a residual net's stays correlated. Here the line starts
# at one probe image and heads towards another in `batch_size` steps of 1/1000 of their
# distance (`probes.SHATTER_STEP`); at each point we take the gradient of the class-0 logit
# with respect to the input (3x32x32 values) and correlate it with the gradients of the
# points 1, 2, ... steps further on (Pearson correlation over the input values, mean over the
# line). 1 means the gradient does not change along the line, 0 white noise. The nets are
# freshly initialised with BN in training mode, as in the probes above: the points of the line
# are one batch, so BN normalises with their statistics.

# %%
plots.show(plots.grad_correlation_figure(summary, data_label, probes.SHATTER_STEP))

# %% [markdown]
# Compared with the literature, computed from the measurements (Balduzzi et al. 2017 on
# shattering; Yang et al. 2019, "A Mean Field Theory of Batch Normalization", on gradients
# that explode with depth in plain BN nets at initialisation; He et al. 2016, sec. 4.1, who
# verified during training that BN gives "healthy" backward norms):

# %%
for line in probes.literature_lines(probes.literature_checks(summary)):
    print(line)

# %% [markdown]
# ## The numbers, and the comparisons the text makes
#
# Computed from the measurements above, not typed in (means over seeds).

# %%
display(Markdown(probes.probe_table(summary)))

# %%
# NBVAL_CHECK_OUTPUT
for depth, checks in probes.residual_contrast(summary).items():
    print(f"depth {depth}: residual net has the narrower conv-gradient spread: {checks['grad_spread_smaller']}; "
          f"its last block output has the larger std: {checks['signal_grows']}")

# %% [markdown]
# ## Export for the report

# %%
fig_dir = figures_dir_of(figures_root, run_id or "theory")
written = probes.write_theory_outputs(results, fig_dir, probe_parameters)
for path in written.values():
    print("wrote", path)
