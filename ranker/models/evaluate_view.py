"""What a person reads of `ranker evaluate`: a plain-text table and propensity.png.

The table lists the judged and click metrics with their intervals, the IPS metric per device, and
per device and position the learned, harvested (with its 95% interval) and true examination ratio.
The plot draws the same curves, one panel per device.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ranker import storage  # noqa: E402

PROPENSITY_PLOT = "propensity.png"


def _ci(block: dict, key: str) -> str:
    value = block.get(key)
    if value is None:
        return "–"
    ci = block.get("ci95")
    return f"{value:.4f}" + (f"  [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _metric_rows(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    judged = metrics.get("judged")
    if judged:
        rows += [(f"judged {k} ({judged['lists']} lists)", f"{judged[k]:.4f}") for k in judged if k.startswith("ndcg")]
    clicks = metrics.get("clicks")
    if clicks:
        rows += [("click log loss (eval)", f"{clicks['log_loss']:.4f}"), ("click AUC (eval)", f"{clicks['auc']:.4f}"),
                 ("click nDCG@10, biased (eval)", f"{clicks['ndcg@10']:.4f}")]
    ips = metrics.get("ips")
    if ips:
        rows.append((f"IPS click nDCG@10 ({ips['lists']} lists, p from {ips['propensity_source']},"
                     f" clip {ips['clip']:g}, {ips['clipped_clicks']:.1%} clipped)", _ci(ips, "ndcg@10")))
        rows += [(f"  IPS click nDCG@10, {device}", _ci(block, "ndcg@10"))
                 for device, block in metrics.get("ips_by_device", {}).items()]
    for key, label in (("propensity_error", "propensity error, learned vs true"),
                       ("propensity_harvested_error", "propensity error, harvested vs true")):
        if metrics.get(key) is not None:
            rows.append((label, f"{metrics[key]:.4f}"))
    return rows


def _curves(metrics: dict) -> dict[str, dict[str, list]]:
    """{device: {"learned": […], "harvested": […], "true": […]}} of whichever curves exist."""
    out: dict = {}
    for key, name in (("propensity", "learned"), ("propensity_harvested", "harvested"), ("propensity_truth", "true")):
        for device, curve in (metrics.get(key) or {}).items():
            out.setdefault(device, {})[name] = curve
    return out


def _width(name: str) -> int:
    return 22 if name == "harvested" else 9


def table(metrics: dict) -> str:
    rows = _metric_rows(metrics)
    width = max((len(label) for label, _ in rows), default=0)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    intervals = metrics.get("propensity_harvested_ci95", {})
    disagree = metrics.get("propensity_disagreement", {})
    for device, curves in _curves(metrics).items():
        names = list(curves)
        bounds = intervals.get(device) or []
        lines += ["", f"propensity, {device} (relative to position 1)",
                  "position  " + "  ".join(f"{n:>{_width(n)}}" for n in names)]
        for k in range(max(len(c) for c in curves.values())):
            cells = []
            for name in names:
                value = curves[name][k] if k < len(curves[name]) else None
                text = "–" if value is None else f"{value:.3f}"
                ci = bounds[k] if name == "harvested" and 0 < k < len(bounds) else None
                if ci:
                    text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
                cells.append(f"{text:>{_width(name)}}")
            flag = "  learned outside the harvested interval" if k + 1 in disagree.get(device, []) else ""
            lines.append(f"{k + 1:>8}  " + "  ".join(cells) + flag)
    return "\n".join(lines)


def plot_propensity(metrics: dict, path: str) -> str | None:
    """propensity.png: per device, the learned, harvested (with its interval) and true curves."""
    curves = _curves(metrics)
    if not curves:
        return None
    intervals = metrics.get("propensity_harvested_ci95", {})
    panels = {device: [(name, by_name[name], style, intervals.get(device) if name == "harvested" else None)
                       for name, style in (("true", "k--"), ("learned", "o-"), ("harvested", "s:"))
                       if by_name.get(name)]
              for device, by_name in curves.items()}
    title = "Position propensity: " + ", ".join(sorted({n for c in curves.values() for n in c}))
    return plot_device_curves(panels, title, path)


def plot_device_curves(panels: dict, title: str, path: str) -> str:
    """One panel per device of examination curves relative to position 1: `panels` is
    {device: [(label, curve, matplotlib style, 95% intervals per position or None), …]}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, (device, lines) in zip(axes[0], panels.items()):
        for label, curve, style, intervals in lines:
            points = [(k + 1, v) for k, v in enumerate(curve) if v is not None]
            line, = ax.plot(*zip(*points), style, label=label, markersize=4)
            spans = [(k + 1, ci) for k, ci in enumerate(intervals or []) if ci]
            if spans:
                ax.fill_between([k for k, _ in spans], [c[0] for _, c in spans], [c[1] for _, c in spans],
                                alpha=0.2, color=line.get_color(), label=f"{label} 95% interval")
        ax.set_title(device)
        ax.set_xlabel("position")
        ax.set_ylim(0, 1.1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("examination relative to position 1")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
    """Writes a figure as PNG to a local path or an object-store URL; closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with storage.open_file(path, "wb") as fh:
        fh.write(buffer.getvalue())
    return path
