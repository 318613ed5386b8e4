"""Interval estimates, checked against values derived by hand or from closed forms."""

from __future__ import annotations

import math

import pytest

from casekit.stats import clopper_pearson, clopper_pearson_upper, rate, wilson


def test_clopper_pearson_at_zero_is_closed_form() -> None:
    # k = 0: upper = 1 - (alpha/2)^(1/n); n = 10 -> 1 - 0.025^(0.1) = 0.30849...
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** 0.1, abs=1e-9)


def test_clopper_pearson_at_n_is_closed_form() -> None:
    lo, hi = clopper_pearson(20, 20)
    assert hi == 1.0
    assert lo == pytest.approx(0.025 ** (1 / 20), abs=1e-9)


def test_one_sided_upper_bound_rule_of_three() -> None:
    # 0 of n -> 1 - 0.05^(1/n), about 3/n: n = 100 -> 0.02951...
    assert clopper_pearson_upper(0, 100) == pytest.approx(1 - 0.05 ** 0.01, abs=1e-9)
    assert 2.9 / 100 < clopper_pearson_upper(0, 100) < 3.0 / 100


def test_clopper_pearson_interior_known_value() -> None:
    # Standard table value: k = 5, n = 20 -> (0.08657, 0.49105)
    lo, hi = clopper_pearson(5, 20)
    assert lo == pytest.approx(0.08657, abs=1e-4)
    assert hi == pytest.approx(0.49105, abs=1e-4)


def test_wilson_known_value() -> None:
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half = 1.96*sqrt(0.025+0.0096)/1.384 = 0.2634...
    lo, hi = wilson(5, 10)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)


def test_rate_chooses_method() -> None:
    assert rate(0, 5).method == "clopper-pearson"
    assert rate(5, 5).method == "clopper-pearson"
    assert rate(2, 5).method == "wilson"
    r = rate(0, 0)
    assert r.rate is None and r.method == "none"


def test_fisher_one_sided_matches_hand_computed_values() -> None:
    from casekit.stats import fisher_one_sided
    # 2 of 10 against 0 of 12: P(X >= 2), X hypergeometric(22, 2, 10) = C(10,2) / C(22,2).
    assert fisher_one_sided(2, 10, 0, 12) == pytest.approx(45 / 231)
    # The classic tea-tasting table [[3, 1], [1, 3]]: one-sided p = 17/70.
    assert fisher_one_sided(3, 4, 1, 4) == pytest.approx(17 / 70)
    assert fisher_one_sided(0, 10, 0, 12) == 1.0
    assert fisher_one_sided(0, 10, 5, 12) == 1.0  # the subject is lower: no evidence it is higher
    assert fisher_one_sided(10, 10, 0, 10) == pytest.approx(1 / 184756)
    assert fisher_one_sided(3, 5, 0, 0) == 1.0  # no control: nothing to compare
    with pytest.raises(ValueError):
        fisher_one_sided(6, 5, 0, 3)


def test_holm_adjusts_in_step_down_order_and_keeps_the_order() -> None:
    from casekit.stats import holm
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_chance_count_is_the_rate_and_its_rounded_one_sided_bound() -> None:
    # The control floor in findings.json and every count the report prints beside it come
    # from this one function: 0 of 16 is bounded by 17.075% (about 3/n), as findings.json
    # holds it; k = n by 1; no attempts, no bound.
    from casekit.stats import chance_count, clopper_pearson_upper, rate

    r, upper = chance_count(0, 16)
    assert r == rate(0, 16) and upper == 0.17075
    assert upper == round(clopper_pearson_upper(0, 16), 6)
    assert chance_count(3, 3)[1] == 1.0
    assert chance_count(2, 40)[1] == round(clopper_pearson_upper(2, 40), 6)
    r0, none = chance_count(0, 0)
    assert r0.n == 0 and r0.rate is None and none is None
