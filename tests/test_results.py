"""The metric names every layer shares (trainers/results.py): the strings MLflow holds must not move."""

import pytest

from trainers.results import (
    EPOCH_METRICS,
    FINAL_METRICS,
    FLOOR_METRICS,
    ONCE_METRICS,
    factor_of,
    factor_probe,
    floor_metric,
    probe_metric,
)


def test_probe_names_are_the_ones_stored_runs_hold():
    assert [probe_metric(p, s) for p in ("knn", "linear") for s in ("val", "test")] == \
        ["val_knn_acc", "knn_acc", "val_linear_acc", "linear_acc"]
    assert factor_probe("shape", "test") == "linear_acc_shape" and factor_probe("hue", "val") == "val_linear_acc_hue"
    assert floor_metric("linear_acc") == "init_linear_acc"
    assert set(FLOOR_METRICS) == {"init_val_knn_acc", "init_val_linear_acc", "init_knn_acc", "init_linear_acc"}
    assert EPOCH_METRICS == ("train_loss", "val_knn_acc", "ring_lower", "ring_upper", "imgs_per_s", "diverged")
    assert {"mi_nats", "label_mi_nats", "n_test_images"} <= set(ONCE_METRICS) and "linear_acc" in FINAL_METRICS
    with pytest.raises(ValueError):
        probe_metric("linear", "train")


@pytest.mark.parametrize("name, factor", [("linear_acc_shape", "shape"), ("val_linear_acc_colour_hue", "colour_hue"),
                                          ("linear_acc", None), ("val_linear_acc", None), ("linear_acc_", None),
                                          ("knn_acc_shape", None), ("init_linear_acc", None), ("mi_nats", None)])
def test_a_factor_probe_is_recognised_by_its_name_and_nothing_else_is(name, factor):
    assert factor_of(name) == factor
    if factor:
        assert name in (factor_probe(factor, "val"), factor_probe(factor, "test"))
