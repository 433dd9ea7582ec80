"""bf16 against fp32: the comparison ``resnet-nb parity`` (``resnet_nb.bench.parity``) makes of
the first epochs of runs in both precisions, and its Markdown table (the command prints it; the
README shows a published one).

For each model, per epoch and measure (test accuracy, training loss), the mean |bf16 - fp32| over
seeds is set against |fp32 seed a - fp32 seed b|: parity holds when the first is no larger than
the second at every epoch.
"""
from __future__ import annotations

from resnet_nb.models.resnet import model_label

__all__ = ["MEASURES", "compare_precisions", "parity_table"]

MEASURES = ("test_acc", "train_loss")


def compare_precisions(series: dict[tuple[str, int], list[dict]], seeds: list[int]) -> dict:
    """Per epoch and measure: |bf16 - fp32| averaged over seeds, and |fp32 of seed a - fp32 of
    seed b| (the first two seeds); ``holds``: the first no larger than the second everywhere."""
    a, b = seeds[0], seeds[1]
    epochs = min(len(v) for v in series.values())
    rows, holds = [], True
    for e in range(epochs):
        row = {"epoch": e + 1}
        for k in MEASURES:
            prec = [abs(series[("bf16", s)][e][k] - series[("fp32", s)][e][k]) for s in seeds]
            seed = abs(series[("fp32", a)][e][k] - series[("fp32", b)][e][k])
            row[k] = {"fp32": [series[("fp32", s)][e][k] for s in seeds],
                      "bf16": [series[("bf16", s)][e][k] for s in seeds],
                      "bf16_vs_fp32": sum(prec) / len(prec), "seed_vs_seed": seed}
            holds = holds and row[k]["bf16_vs_fp32"] <= row[k]["seed_vs_seed"]
        rows.append(row)
    return {"epochs": rows, "holds": holds}


def parity_table(result: dict) -> str:
    """The comparison as a Markdown table, one row per model and epoch."""
    lines = ["| Model | Epoch | test acc fp32 (seeds) | test acc bf16 (seeds) | mean \\|bf16 - fp32\\| | "
             "\\|fp32 seed - seed\\| | train loss fp32 | train loss bf16 | mean \\|bf16 - fp32\\| | "
             "\\|fp32 seed - seed\\| |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f4 = (lambda xs: " / ".join(f"{x:.4f}" for x in xs))
    for m, res in result["models"].items():
        for r in res["epochs"]:
            t, l = r["test_acc"], r["train_loss"]
            lines.append(f"| {model_label(m)} | {r['epoch']} | {f4(t['fp32'])} | {f4(t['bf16'])} | "
                         f"{t['bf16_vs_fp32']:.4f} | {t['seed_vs_seed']:.4f} | {f4(l['fp32'])} | {f4(l['bf16'])} | "
                         f"{l['bf16_vs_fp32']:.4f} | {l['seed_vs_seed']:.4f} |")
    return "\n".join(lines)
