"""Promotion step: sets the candidate as champion when validation said so."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import model  # noqa: E402

verdict = os.environ.get("DROVER_OUTPUT_VALIDATE_VERDICT", "promote")
rmse = os.environ.get("DROVER_OUTPUT_TRAIN_RMSE")
if verdict != "promote":
    print("validation kept the champion: nothing promoted")
    sys.exit(0)
if rmse is None:
    sys.exit("no rmse from the train stage")
record = {"rmse": float(rmse), "sha": os.environ.get("DROVER_SHA"), "run": os.environ.get("DROVER_RUN_ID")}
with open(os.path.join(model.registry_dir(), "champion.json"), "w") as f:
    json.dump(record, f)
print(f"promoted: champion is now {record}")
