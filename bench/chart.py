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
    return next(r[key] for r in rows if r["target"] == target and r["workload"] == workload)


fig, axes = plt.subplots(1, 3, figsize=(16, 5))
panels = [("opsPerSecond", "throughput (ops/s, higher is better)"), ("p50Ms", "p50 latency (ms)"), ("p99Ms", "p99 latency (ms)")]
width = 0.8 / len(targets)
for axis, (key, title) in zip(axes, panels):
    for i, target in enumerate(targets):
        positions = [x + i * width for x in range(len(workloads))]
        axis.bar(positions, [metric(target, w, key) for w in workloads], width, label=target)
    axis.set_xticks([x + width * (len(targets) - 1) / 2 for x in range(len(workloads))])
    axis.set_xticklabels(workloads, rotation=25, ha="right", fontsize=8)
    axis.set_title(title)
    axis.set_yscale("log")
    axis.legend()
fig.suptitle(f"{name}: {data['machine']} ({data['date'][:10]})", fontsize=9)
fig.tight_layout()
fig.savefig(results / f"{name}.png", dpi=110)
print(f"wrote bench/results/{name}.png")
