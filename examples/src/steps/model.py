"""A least-squares line: the smallest model that still has a metric to beat."""
import csv
import json
import math
import os


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [float(r["x"]) for r in rows], [float(r["y"]) for r in rows]


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return {"slope": slope, "intercept": my - slope * mx}


def rmse(model, xs, ys):
    err = [(model["slope"] * x + model["intercept"] - y) ** 2 for x, y in zip(xs, ys)]
    return math.sqrt(sum(err) / len(err))


def output(key, value):
    """Hands a value to later stages (drover reads DROVER_OUTPUTS)."""
    path = os.environ.get("DROVER_OUTPUTS")
    if path:
        with open(path, "a") as f:
            f.write(f"{key}={value}\n")


def registry_dir():
    """Where this demo keeps its champion: beside drover's workspaces."""
    ws = os.environ.get("DROVER_WORKSPACE", ".")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ws))), "registry")
    os.makedirs(path, exist_ok=True)
    return path


def save(model, path):
    with open(path, "w") as f:
        json.dump(model, f)
