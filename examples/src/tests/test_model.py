import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "steps"))
import model  # noqa: E402


def test_fit_recovers_a_line():
    xs = [0.0, 1.0, 2.0, 3.0]
    ys = [1.0, 3.0, 5.0, 7.0]
    m = model.fit(xs, ys)
    assert abs(m["slope"] - 2.0) < 1e-9
    assert abs(m["intercept"] - 1.0) < 1e-9
    assert model.rmse(m, xs, ys) < 1e-9
