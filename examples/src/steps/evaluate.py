"""Validation step: the candidate must beat the champion (lower rmse) by a margin."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import model  # noqa: E402

candidate = float(os.environ.get("DROVER_OUTPUT_TRAIN_RMSE", "nan"))
champion_file = os.path.join(model.registry_dir(), "champion.json")
champion = json.load(open(champion_file))["rmse"] if os.path.exists(champion_file) else None
min_absolute_change = 0.0
if candidate != candidate:
    sys.exit("no rmse from the train stage")
if champion is not None and not candidate < champion - min_absolute_change:
    print(f"candidate rmse {candidate:.4f} does not beat champion {champion:.4f}: not promoted")
    model.output("verdict", "keep-champion")
else:
    print(f"candidate rmse {candidate:.4f} beats champion {champion}: challenger")
    model.output("verdict", "promote")
