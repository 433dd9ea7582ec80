"""bf16 against fp32: the comparison ``resnet-nb parity`` (``resnet_nb.bench.parity``) makes of
the first epochs of runs in both precisions, and its Markdown table (the command prints it; the
README shows a published one).

For each model, per epoch and measure (test accuracy, training loss), the mean |bf16 - fp32| over
seeds is set against |fp32 seed a - fp32 seed b|: parity holds when the first is no larger than
the second at every epoch.
"""
from __future__ import annotations

from resnet_nb.models.resnet import model_label

__all__ = ["MEASURES", "compare_precisions", "parity_table", "parity_sentence"]

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


def parity_sentence(model: str, res: dict) -> str:
    """One line per model: whether bf16 stayed within the fp32 seed-to-seed difference, at which
    epochs it did not, and which way it went at the last epoch (ahead of fp32 or behind: a bf16
    that learns slower would overstate the degradation, one that learns faster would understate it)."""
    rows = res["epochs"]
    off = [r["epoch"] for r in rows if any(r[k]["bf16_vs_fp32"] > r[k]["seed_vs_seed"] for k in MEASURES)]
    last = rows[-1]
    mean = (lambda xs: sum(xs) / len(xs))
    acc = {p: mean(last["test_acc"][p]) for p in ("fp32", "bf16")}
    loss = {p: mean(last["train_loss"][p]) for p in ("fp32", "bf16")}
    head = (f"{model_label(model)}: bf16 within the fp32 seed-to-seed difference at every epoch of {len(rows)}"
            if res["holds"] else
            f"{model_label(model)}: bf16 NOT within the fp32 seed-to-seed difference (epoch{'s' * (len(off) > 1)} "
            f"{', '.join(map(str, off))} of {len(rows)})")
    return (f"{head}; at epoch {last['epoch']} bf16's mean test accuracy is {acc['bf16']:.4f} against fp32's "
            f"{acc['fp32']:.4f} ({acc['bf16'] - acc['fp32']:+.4f}) and its mean training loss {loss['bf16']:.4f} "
            f"against {loss['fp32']:.4f} ({loss['bf16'] - loss['fp32']:+.4f})")
