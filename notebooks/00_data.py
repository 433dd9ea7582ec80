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
# # 00 · CIFAR-10: obtain, verify, look
#
# He et al. (2016, sec. 4.2) train on the 50k CIFAR-10 training images and test on the 10k
# test images: 32×32 colour images in 10 classes. Before any training this notebook checks
# that the data is what it claims to be: the six batch files must match the published md5
# sums (*canonical*), and a sha256 *fingerprint* of all pixels and labels goes into every
# run's `config.json`, so every number in the report can be traced to the exact data.
#
# Cell order in every notebook: imports · parameters · load · action · export.
# All logic lives in the `resnet_nb` package; the notebook only calls it and says why.

# %%
import torch

from resnet_nb.analysis import aggregate, plots
from resnet_nb.data import augment, cifar10
from resnet_nb.pipeline.notebook import notebook_setup

notebook_setup(globals())  # relative paths below are relative to the project root

# %% tags=["parameters"]
dataset = "cifar10"         # cifar10 | synthetic (a generated stand-in for demos and tests)
data_root = None            # folder holding CIFAR-10 (None: $RESNET_NB_DATA or data/cifar10)
allow_noncanonical = False  # accept a copy whose md5 sums differ (then labelled non-canonical)
samples_per_class = 8       # images per class in the sample grid
preview_images = 8          # images in the augmentation preview
seed = 0                    # which images are shown, and the augmentation draw
export_dir = None           # folder for data_samples.png, data_augmentation.png (None: no files)

# %% [markdown]
# ## Load and verify
#
# `load_dataset` finds the extracted batches or the official archive (downloading it when
# missing and the network allows), checks the md5 sums and loads everything as uint8
# tensors `(N, 3, 32, 32)`. Without data and without network it stops with a message that
# says where to put the archive.

# %%
ds = cifar10.load_dataset(dataset, data_root, allow_noncanonical)
data_label = plots.provenance_label(ds.info())  # every figure title names the data: CIFAR-10, copy or synthetic

# %% [markdown]
# ## Provenance, class balance, channel statistics
#
# CIFAR-10 is balanced: 5000 training and 1000 test images per class. The per-channel mean
# and std below are what the `seed` recipe normalises with (the `paper` recipe subtracts the
# per-pixel mean image instead, sec. 4.2).

# %%
# NBVAL_CHECK_OUTPUT
print(aggregate.dataset_overview(ds))

# %%
plots.show(plots.class_balance_figure(ds.train_y.bincount(minlength=10).tolist(),
                                      ds.test_y.bincount(minlength=10).tolist(), cifar10.CLASSES, data_label))

# %% [markdown]
# ## Samples per class

# %%
samples_fig = plots.sample_grid_figure(ds.train_x, ds.train_y, cifar10.CLASSES, samples_per_class, seed, data_label)
plots.show(samples_fig)

# %% [markdown]
# ## Augmentation preview
#
# Training augments every image on the device with the paper's recipe: pad 4 pixels of
# zeros on each side, take a random 32×32 crop, flip horizontally with probability ½; it
# draws a whole epoch's order, crops and flips at once (`data.augment_epoch`). The preview
# draws the same crop and flip for one batch (`data.random_crop_flip`); both are pure
# batched functions over `data.crop_flip` that run the same on CPU and GPU.
# Each row below is a fresh draw for the same images.

# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(seed)
originals = ds.train_x[:preview_images]                         # (K, 3, 32, 32) uint8
draws = [augment.random_crop_flip(originals, generator) for _ in range(3)]
print("augmented batch:", tuple(draws[0].shape), draws[0].dtype)

# %%
augmentation_fig = plots.augmentation_figure(originals, draws, data_label=data_label)
plots.show(augmentation_fig)

# %% [markdown]
# ## Export
#
# With `export_dir` set, the two figures are written there (e.g. for the report).

# %%
if export_dir:
    for name, fig in (("data_samples.png", samples_fig), ("data_augmentation.png", augmentation_fig)):
        print("wrote", plots.save(fig, f"{export_dir}/{name}"))
