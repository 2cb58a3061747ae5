"""Training step: fits the model on the bundled data and reports its error."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import model  # noqa: E402

xs, ys = model.load(os.path.join(os.path.dirname(__file__), "..", "datasets", "data.csv"))
m = model.fit(xs, ys)
err = model.rmse(m, xs, ys)
model.save(m, "model.json")
print(f"trained: slope={m['slope']:.4f} intercept={m['intercept']:.4f} rmse={err:.4f}")
model.output("rmse", f"{err:.6f}")
