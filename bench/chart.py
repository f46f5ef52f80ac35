"""Renders bench/results/<name>.json (rows of workload/target/metrics) as a PNG."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

name = sys.argv[1]
results = Path(__file__).parent / "results"
data = json.loads((results / f"{name}.json").read_text())
rows = data["rows"]
workloads = list(dict.fromkeys(row["workload"] for row in rows))
targets = list(dict.fromkeys(row["target"] for row in rows))


def metric(target, workload, key):
    # A row a server refused or did not finish has no number (null): no bar.
    value = next((r.get(key) for r in rows if r["target"] == target and r["workload"] == workload), None)
    return float("nan") if value is None else value


# A result may say which numbers to draw and for which workloads (bench:brain
# compares watch rows by latency only); by default every workload, three panels.
# A panel may also name its targets (bench:brain's replica chart puts replica
# counts and failover medians/maxima side by side).
panels = [
    (p["key"], p["title"], p.get("rows", workloads), p.get("targets", targets))
    for p in data.get("panels", [])
] or [(key, title, workloads, targets) for key, title in [
    ("opsPerSecond", "throughput (ops/s, higher is better)"), ("p50Ms", "p50 latency (ms)"), ("p99Ms", "p99 latency (ms)")]]
# At least 9 inches: the title (machine, date, run kind) must fit above one panel.
fig, axes = plt.subplots(1, len(panels), figsize=(max(9, 6 * len(panels)), 5), squeeze=False)
for axis, (key, title, shown, drawn) in zip(axes[0], panels):
    width = 0.8 / len(drawn)
    for i, target in enumerate(drawn):
        positions = [x + i * width for x in range(len(shown))]
        axis.bar(positions, [metric(target, w, key) for w in shown], width, label=target)
    axis.set_xticks([x + width * (len(drawn) - 1) / 2 for x in range(len(shown))])
    axis.set_xticklabels(shown, rotation=25, ha="right", fontsize=8)
    axis.set_title(title)
    axis.set_yscale("log")
    axis.legend(fontsize=7, framealpha=0.6)
quick = " — QUICK SMOKE RUN, not a result" if data.get("quick") else " — PARTIAL RUN, not a result" if data.get("provisional") else ""
fig.suptitle(f"{name}: {data['machine']} ({data['date'][:10]}){quick}", fontsize=9)
fig.tight_layout()
fig.savefig(results / f"{name}.png", dpi=110)
print(f"wrote bench/results/{name}.png")
