"""Setting ranges declared once per class: the vocabulary, the one validator, and who applies it."""

import inspect
import math

import numpy as np
import pytest

import handgrad as hg
from handgrad.constraints import Boolean, Integer, Options, Pair, Real, check_settings
from handgrad.errors import HandgradError


@pytest.mark.parametrize("rule, good, bad, requirement", [
    (Real(0, 1, closed="left"), [0, 0.5, np.float32(0.9)], [1, -0.1, math.nan, "0.5", True, None], "lie in [0, 1)"),
    (Real(0, 1), [0, 1], [1.0001, -1e-9], "lie in [0, 1]"),
    (Real(0, closed="neither"), [1e-300, 7], [0, -1, math.inf], "be a positive number"),
    (Real(0), [0, 3.5], [-0.1, math.nan], "be a finite number ≥ 0"),
    (Integer(1), [1, np.int64(7), 10**12], [0, 2.5, True, np.bool_(True), "3"], "be a positive integer"),
    (Options("mean", "sum"), ["mean", "sum"], ["average", ["mean"], None], "be one of 'mean', 'sum'"),
    (Boolean(), [True, False, np.bool_(False)], [1, 0, "True", None], "be True or False"),
    (Pair(Real(0, 1, closed="left")), [(0.9, 0.999), [0, 0.5], np.array([0.1, 0.2])],
     [(0.9, 1.0), (0.9,), 0.9, (0.9, 0.9, 0.9)], "lie in [0, 1), both of them"),
])
def test_each_rule_accepts_its_range_and_names_it_for_anything_else(rule, good, bad, requirement):
    assert all(rule.requirement(value) is None for value in good)
    assert all(rule.requirement(value) == requirement for value in bad)


def test_a_cap_is_named_apart_from_the_range_it_bounds():
    rule = Real(0, cap=1e6)
    assert rule.requirement(-1) == "be a finite number ≥ 0"
    assert rule.requirement(1e308) == "be at most 1e+06"
    assert rule.requirement(1e6) is None


def test_a_broken_rule_is_one_line_with_the_class_setting_value_and_remedy():
    rules = {"p": Real(0, 1, closed="left", meaning="a probability", remedy="use 0.2"), "mode": Options("a", "b")}
    with pytest.raises(HandgradError) as info:
        check_settings("Thing", rules, {"p": 1.5, "mode": "a"})
    assert str(info.value) == "Thing p is a probability and must lie in [0, 1), got 1.5; use 0.2"
    with pytest.raises(HandgradError, match="^unknown mode 'c' for Thing; choose one of 'a', 'b'$"):
        check_settings("Thing", rules, {"mode": "c"})
    check_settings("Thing", rules, {"other": object()})          # a setting without a rule is not checked


def test_a_subclass_inherits_its_parents_rules_and_adds_its_own():
    class Shifted(hg.LeakyReLU):
        constraints = {"shift": Real(0)}

        def __init__(self, negative_slope=0.01, shift=0.0):
            super().__init__(negative_slope)
            self.shift = shift

    assert set(Shifted.constraints) == {"negative_slope", "shift"}
    with pytest.raises(HandgradError, match="Shifted negative_slope must be a finite number ≥ 0, got -1"):
        Shifted(-1)
    with pytest.raises(HandgradError, match="Shifted shift must be a finite number ≥ 0, got -2"):
        Shifted(shift=-2)
    assert Shifted(0.1, 2.0).config() == {"type": "Shifted", "negative_slope": 0.1, "shift": 2.0}


def test_a_piece_without_a_declaration_is_not_checked():
    class Scaled(hg.Activation):
        def __init__(self, scale):
            self.scale = scale

    assert Scaled.constraints == {} and math.isnan(Scaled(math.nan).scale)


@pytest.mark.parametrize("cls", [hg.Dense, hg.BatchNorm, hg.Dropout, hg.LeakyReLU, hg.ELU, hg.SoftmaxCrossEntropy,
                                 hg.SGD, hg.Adam, hg.schedules.Constant, hg.schedules.Cosine,
                                 hg.schedules.StepDecay])
def test_every_setting_of_the_core_pieces_is_declared(cls):
    settings = {name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "dtype", "seed")}
    assert settings == set(cls.constraints)
