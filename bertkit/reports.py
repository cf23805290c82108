"""Run reports: ``report.json`` for machines, ``report.md`` for people, PNG plots; written atomically.

Recipes fill the task-specific parts (per-class / per-type tables, wrong predictions) as markdown sections built
with :func:`md_table`; :func:`write_run_report` (called by ``Trainer.write_report``) adds the run summary.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from bertkit.errors import ConfigError


# ------------------------------------------------------------------------------------------------------- markdown
def format_value(value, digits: int = 4) -> str:
    """Numbers for tables: floats to ``digits`` places, ints with thousands separators, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and abs(value) < 10 ** -(digits - 1):
            return f"{value:.3g}"  # learning rates and other small numbers: 2e-05, not 0.0000
        return f"{value:.{digits}f}"
    return str(value)


def _cell(value) -> str:
    """One table cell: escaped pipes, no line breaks (they would end the table row)."""
    text = format_value(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(header: Sequence, rows: Iterable[Sequence], *, align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table. Numeric columns are right-aligned unless ``align`` (``"l"``/``"r"``/``"c"`` per
    column) says otherwise; cells are formatted with :func:`format_value` and escaped."""
    header = list(header)
    rows = [list(row) for row in rows]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} cells, the header {len(header)}")
    if align is None:
        align = []
        for j in range(len(header)):
            column = [row[j] for row in rows if row[j] is not None]
            numeric = column and all(isinstance(v, (int, float)) and not isinstance(v, bool) or
                                     hasattr(v, "dtype") for v in column)
            align.append("r" if numeric else "l")
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "| " + " | ".join(rule[a] for a in align) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def per_class_table(per_class: Mapping[str, Mapping], *, name: str = "class") -> str:
    """The ``per_class`` dict of :func:`bertkit.metrics.classification_metrics` (or per-type P/R/F1 with optional
    support) as a markdown table."""
    columns = ["precision", "recall", "f1"] + (["support"] if any("support" in v for v in per_class.values()) else [])
    return md_table([name] + columns, [[label] + [scores.get(c) for c in columns]
                                       for label, scores in per_class.items()])


# ----------------------------------------------------------------------------------------------------------- plots
def _save_figure(figure, path) -> Path:
    from bertkit.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def _history_dict(history) -> dict[str, list]:
    if isinstance(history, (str, os.PathLike)):
        from bertkit.training import history_from_rows, read_metrics_csv

        return history_from_rows(read_metrics_csv(history))
    if hasattr(history, "history"):  # a keras History callback
        return dict(history.history)
    return dict(history)


def plot_history(history, keys: Sequence[str], path, *, title: str | None = None) -> Path | None:
    """Plot ``keys`` per epoch from a metrics CSV path, a Keras ``History`` or a dict of lists; one PNG.
    Keys not in the history are left out; returns None (writes nothing) when none is there."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    data = _history_dict(history)
    present = [k for k in keys if k in data and len(data[k])]
    if not present:
        return None
    epochs = data.get("epoch") or list(range(1, len(data[present[0]]) + 1))
    figure = Figure(figsize=(6, 3.6), dpi=100)
    axes = figure.add_subplot()
    for key in present:
        axes.plot(epochs[:len(data[key])], data[key], marker="o", label=key)
    axes.set_xlabel("epoch")
    axes.set_title(title or ", ".join(present))
    axes.grid(alpha=0.3)
    axes.legend()
    if len(epochs) <= 20:
        axes.set_xticks(list(epochs))
    figure.tight_layout()
    return _save_figure(figure, path)


def plot_confusion(matrix, labels: Sequence, path, *, title: str = "confusion matrix (rows: true)") -> Path:
    """A confusion matrix (``matrix[i][j]``: true ``labels[i]`` predicted ``labels[j]``) as a PNG heat map."""
    import numpy as np
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {len(labels)} labels")
    size = max(3.5, 0.5 * len(labels) + 2)
    figure = Figure(figsize=(size, size), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), [str(l) for l in labels], rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), [str(l) for l in labels])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if matrix[i, j] > threshold else "black")
    figure.tight_layout()
    return _save_figure(figure, path)


# ---------------------------------------------------------------------------------------------------- run report
def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "metric"


def _headline(headline, metrics: Mapping) -> tuple[str, float]:
    if isinstance(headline, (tuple, list)) and len(headline) == 2:
        return str(headline[0]), float(headline[1])
    name = str(headline)
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "dtype"):
        raise ConfigError(f"report: headline metric {name!r} is not a number in metrics {sorted(metrics)}")
    return name, float(value)


def _scalar_rows(metrics: Mapping) -> list[list]:
    return [[key, value] for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def _sections(markdown_sections) -> list[str]:
    out = []
    for section in markdown_sections or ():
        if isinstance(section, str):
            out.append(section.strip() + "\n")
        else:
            title, body = section
            out.append(f"## {title}\n\n{str(body).strip()}\n")
    return out


def write_run_report(trainer, *, dataset, split, headline, metrics: Mapping, markdown_sections=(),
                     figures: Mapping[str, str | os.PathLike] | None = None, file_stem: str = "report") -> Path:
    """``<file_stem>.json``, ``<file_stem>.md`` and ``loss.png`` / ``<headline>.png`` in ``trainer.output_dir``
    (``file_stem`` is ``eval_report`` for ``--eval-only``, which never replaces the training report)."""
    from bertkit.cli import args_to_dict
    from bertkit.fileio import atomic_write_json, atomic_write_text

    out = Path(trainer.output_dir)
    name, value = _headline(headline, metrics)
    train = dict(trainer.train_stats)
    encoder = trainer._encoder_summary()
    report = {
        "task": trainer.task, "dataset": str(dataset), "split": str(split),
        "headline": {"metric": name, "value": value},
        "metrics": dict(metrics), "train": train, "encoder": encoder, "args": args_to_dict(trainer.args),
        "history": trainer.history, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    plots = {}
    if trainer.history:
        csv_or_history = trainer.history
        loss_keys = [k for k in ("loss", "dev_loss") if k in csv_or_history]
        loss_plot = plot_history(csv_or_history, loss_keys, out / "loss.png", title="training loss per epoch")
        if loss_plot:
            plots["loss per epoch"] = loss_plot.name
        metric_plot = plot_history(csv_or_history, [f"dev_{name}"], out / f"{_safe_name(name)}.png",
                                   title=f"dev {name} per epoch")
        if metric_plot:
            plots[f"dev {name} per epoch"] = metric_plot.name
    if (out / "lr_schedule.png").is_file():
        plots["learning rate per step"] = "lr_schedule.png"
    report["plots"] = sorted(plots.values())

    lines = [f"# {trainer.task}: {dataset} {split}\n",
             f"**{name} = {value:.4f}** on {dataset} {split}.\n"]
    summary = [["encoder", f"{encoder.get('bert_dir', '–')} ({encoder.get('num_hidden_layers', '?')} layers, "
                           f"hidden {encoder.get('hidden_size', '?')})"]]
    for key in ("epochs", "steps", "seconds", "examples_per_second", "best_epoch", "checkpoint"):
        if train.get(key) is not None:
            summary.append([f"train {key.replace('_', ' ')}", train[key]])
    args = report["args"]
    for key in ("lr", "batch_size", "max_len", "warmup_ratio", "weight_decay", "seed", "trainable_layers",
                "max_train_examples", "strategy", "mixed_precision"):
        if key in args:
            summary.append([key, args[key]])
    summary.append(["output", str(out)])
    lines += ["## Run\n", md_table(["", "value"], summary, align=["l", "l"])]
    scalars = _scalar_rows(metrics)
    if scalars:
        lines += ["## Metrics\n", md_table(["metric", "value"], scalars)]
    lines += _sections(markdown_sections)
    if trainer.history and "epoch" in trainer.history:
        keys = [k for k in trainer.history if k == "loss" or k.startswith("dev_") or k == "lr"]
        rows = [[int(e)] + [trainer.history[k][i] for k in keys] for i, e in enumerate(trainer.history["epoch"])]
        lines += ["## Per epoch\n", md_table(["epoch"] + keys, rows)]
    all_figures = {**plots, **{caption: os.path.relpath(Path(p), out) if Path(p).is_absolute() or
                               Path(p).exists() else str(p) for caption, p in (figures or {}).items()}}
    if all_figures:
        lines.append("## Figures\n")
        lines += [f"![{caption}]({path})\n" for caption, path in all_figures.items()]
    report["figures"] = all_figures

    atomic_write_text(out / f"{file_stem}.md", "\n".join(lines))
    return atomic_write_json(out / f"{file_stem}.json", report)
