"""p_z and (n, p)-discoverable extraction [Hay25, Coo25]: hand-worked fixtures."""

from __future__ import annotations

import math

import pytest

from casekit.pz import (
    MissingScores,
    can_compute,
    extraction_probability,
    greedy_rate,
    log_p_z,
    min_samples,
    np_discoverable,
    np_rates,
    p_z,
    pz_histogram,
    pz_threshold_shares,
    pz_upper_bound_from_top_logprobs,
    union_length,
)
from casekit.records import TokenScore

LN = math.log


def ts(logprob: float, rank: int | None, lse: float | None = None,
       is_top: bool | None = None) -> TokenScore:
    top = (rank == 0) if is_top is None else is_top
    return TokenScore(token="t", token_id=1, logprob=logprob, top_token_id=1 if top else 2,
                      top_logprob=logprob if top else 0.0, is_top=top, rank=rank,
                      top40_logsumexp=lse)


# --- p_z --------------------------------------------------------------------------------------


def test_greedy_p_z_is_the_product_of_rank_zero_indicators() -> None:
    # greedy (k = 1): p~ = 1 for the top token, 0 otherwise; p_z = prod [rank == 0].
    ok = [ts(LN(0.9), 0), ts(LN(0.4), 0), ts(LN(0.7), 0)]
    assert p_z(ok, "greedy") == 1.0 and log_p_z(ok, "greedy") == 0.0
    # One token of rank 3: p~ = 0 at that step, so p_z = 1 * 0 * 1 = 0.
    bad = [ts(LN(0.9), 0), ts(LN(0.1), 3), ts(LN(0.7), 0)]
    assert p_z(bad, "greedy") == 0.0 and log_p_z(bad, "greedy") == -math.inf
    # Scores recorded before `rank` existed fall back to is_top (rank 0 iff is_top).
    old = [ts(LN(0.9), None, is_top=True), ts(LN(0.2), None, is_top=False)]
    assert p_z(old, "greedy") == 0.0
    assert p_z(old[:1], "greedy") == 1.0 and can_compute(old, "greedy")


def test_top40_p_z_renormalizes_over_the_top_40() -> None:
    # Step 1: p = 0.5, top-40 mass 0.8 -> p~ = 0.5 / 0.8 = 5/8.
    # Step 2: p = 0.2, top-40 mass 0.9 -> p~ = 0.2 / 0.9 = 2/9.
    # p_z = 5/8 * 2/9 = 10/72 = 5/36 = 0.13888...
    scores = [ts(LN(0.5), 0, LN(0.8)), ts(LN(0.2), 7, LN(0.9))]
    assert p_z(scores, "top40") == pytest.approx(5 / 36, rel=1e-12)
    assert log_p_z(scores, "top40") == pytest.approx(LN(5 / 36), rel=1e-12)
    # The same tokens under greedy: step 2 has rank 7, so greedy p_z = 0.
    assert p_z(scores, "greedy") == 0.0
    # A token of rank 40 is outside the top 40: masked, p~ = 0, p_z = 0.
    masked = [ts(LN(0.5), 0, LN(0.8)), ts(LN(0.001), 40, LN(0.9))]
    assert p_z(masked, "top40") == 0.0 and log_p_z(masked, "top40") == -math.inf
    # Rank 39 is still inside: p~ = 0.001 / 0.9.
    inside = [ts(LN(0.001), 39, LN(0.9))]
    assert p_z(inside, "top40") == pytest.approx(0.001 / 0.9)


def test_p_z_stays_finite_in_log_space() -> None:
    # 100 tokens of p~ = 1e-4 each: p_z = 1e-400 underflows, log p_z = 100 * ln(1e-4) does not.
    scores = [ts(LN(1e-4), 5, 0.0) for _ in range(100)]
    assert log_p_z(scores, "top40") == pytest.approx(100 * LN(1e-4))
    assert p_z(scores, "top40") == 0.0


def test_p_z_refuses_what_it_cannot_compute() -> None:
    no_lse = [ts(LN(0.5), 0, None)]
    assert not can_compute(no_lse, "top40") and can_compute(no_lse, "greedy")
    with pytest.raises(MissingScores):
        p_z(no_lse, "top40")
    with pytest.raises(MissingScores):
        p_z([ts(LN(0.5), None, LN(0.9), is_top=True)], "top40")
    with pytest.raises(ValueError, match="empty"):
        p_z([], "greedy")
    with pytest.raises(ValueError, match="preset"):
        p_z(no_lse, "top5")  # type: ignore[arg-type]


# --- upper bound from API top-20 log-probs -------------------------------------------------------


def test_upper_bound_from_top_logprobs() -> None:
    # greedy: the lists decide rank 0, so the value is exact.
    tops = [[("a", LN(0.6)), ("x", LN(0.3))], [("b", LN(0.5)), ("y", LN(0.2))]]
    g = pz_upper_bound_from_top_logprobs(["a", "b"], tops, "greedy")
    assert g.upper == 1.0 and g.exact and g.label == "exact"
    g0 = pz_upper_bound_from_top_logprobs(["a", "y"], tops, "greedy")
    assert g0.upper == 0.0 and g0.log_upper == -math.inf and g0.exact
    # top40, step 1: "a" listed, p = 0.6, listed mass Z = 0.6 + 0.3 = 0.9 <= Z40,
    #   so p~ <= 0.6 / 0.9 = 2/3.
    # top40, step 2: "c" unlisted, p <= p_min = 0.2, listed mass Z = 0.7,
    #   so p~ <= 0.2 / (0.7 + 0.2) = 2/9.
    # bound = 2/3 * 2/9 = 4/27 = 0.148148...
    b = pz_upper_bound_from_top_logprobs(["a", "c"], tops, "top40")
    assert b.upper == pytest.approx(4 / 27, rel=1e-12)
    assert not b.exact and b.label == "upper bound"
    with pytest.raises(ValueError):
        pz_upper_bound_from_top_logprobs(["a"], tops, "top40")
    with pytest.raises(ValueError):
        pz_upper_bound_from_top_logprobs(["a"], [[]], "greedy")


def test_upper_bound_is_above_the_exact_value() -> None:
    # Full distribution of one step: a .5, b .2, c .1, then 40 tokens of .005 (sum .2).
    # Exact top-40 p~ of "b": top-40 = a, b, c and 37 of the .005s -> Z40 = .8 + .185 = .985,
    # p~ = .2 / .985 = 0.20305. From a top-3 list Z = .8, bound = .2 / .8 = .25 >= 0.20305.
    exact = 0.2 / 0.985
    b = pz_upper_bound_from_top_logprobs(
        ["b"], [[("a", LN(0.5)), ("b", LN(0.2)), ("c", LN(0.1))]], "top40")
    assert b.upper == pytest.approx(0.25) and b.upper >= exact


# --- (n, p)-discoverable extraction -----------------------------------------------------------


def test_np_discoverable_hand_values() -> None:
    # p_z = 0.5, n = 1: 1 - 0.5 = 0.5 >= 0.5.
    assert np_discoverable(0.5, 1, 0.5)
    # p_z = 0.5, p = 0.9: n = 3 gives 1 - 0.125 = 0.875 < 0.9; n = 4 gives 0.9375 >= 0.9.
    assert not np_discoverable(0.5, 3, 0.9) and np_discoverable(0.5, 4, 0.9)
    assert min_samples(0.5, 0.9) == 4
    # p_z = 0.01, p = 0.5: n >= ln 0.5 / ln 0.99 = 68.97, so 69:
    # 1 - 0.99^69 = 0.50016 >= 0.5 and 1 - 0.99^68 = 0.49511 < 0.5.
    assert min_samples(0.01, 0.5) == 69
    assert np_discoverable(0.01, 69, 0.5) and not np_discoverable(0.01, 68, 0.5)
    assert extraction_probability(0.01, 100) == pytest.approx(1 - 0.99 ** 100)
    # Tiny p_z: 1 - (1 - 1e-12)^1e6 = 1e-6 (a naive 1 - (1 - p)^n loses most digits).
    assert extraction_probability(1e-12, 10 ** 6) == pytest.approx(1e-6, rel=1e-6)
    assert np_discoverable(1.0, 1, 0.99) and not np_discoverable(0.0, 10 ** 9, 0.1)
    assert min_samples(0.0, 0.5) is None and min_samples(1.0, 0.99) == 1
    with pytest.raises(ValueError):
        extraction_probability(0.5, 0)


def test_np_rates_over_windows() -> None:
    # Windows p_z = 1.0, 0.5, 0.01, 0.0:
    #   p=0.5: n=1 -> {1.0, 0.5} = 2/4; n=10 -> 0.01 gives 1-.99^10 = .096: 2/4;
    #          n=100 -> 0.01 gives .634 >= .5: 3/4.
    #   p=0.9: n=1 -> {1.0} = 1/4; n=10 -> 0.5 gives 1-2^-10 = .999: 2/4; n=100 -> .634 < .9: 2/4.
    rows = np_rates([1.0, 0.5, 0.01, 0.0], ps=(0.5, 0.9), ns=(1, 10, 100))
    got = {(r.p, r.n): (r.rate.k, r.rate.n) for r in rows}
    assert got == {(0.5, 1): (2, 4), (0.5, 10): (2, 4), (0.5, 100): (3, 4),
                   (0.9, 1): (1, 4), (0.9, 10): (2, 4), (0.9, 100): (2, 4)}
    assert [(r.p, r.n) for r in rows][:3] == [(0.5, 1), (0.5, 10), (0.5, 100)]
    # Default grid: 4 p values x 5 n values.
    assert len(np_rates([0.5])) == 20
    # Greedy rate: windows whose greedy log p_z is 0 (p_z = 1): 2 of 3.
    g = greedy_rate([0.0, -math.inf, 0.0])
    assert (g.k, g.n) == (2, 3)


# --- census [Coo25] ---------------------------------------------------------------------------


def test_pz_histogram_log10_bins() -> None:
    # p_z: 1 and 0.1 -> [1e-1, 1]; 0.05 and 0.01 -> [1e-2, 1e-1) (0.01 exactly on the edge
    # belongs to the upper bin although ln(.01)/ln(10) rounds to -1.9999999999999996);
    # 1e-15 -> below 1e-12; 0 (log -inf) -> the zero bin. 6 windows.
    logs = [0.0, LN(0.1), LN(0.05), LN(0.01), LN(1e-15), -math.inf]
    bins = {b.label: (b.count, b.share) for b in pz_histogram(logs)}
    assert bins["0"] == (1, 1 / 6)
    assert bins["< 1e-12"] == (1, 1 / 6)
    assert bins["[1e-2, 1e-1)"] == (2, 2 / 6)
    assert bins["[1e-1, 1]"] == (2, 2 / 6)
    assert sum(c for c, _ in bins.values()) == 6
    # 1 zero bin + 1 underflow bin + 12 decades from 1e-12 to 1.
    assert len(bins) == 14
    with pytest.raises(ValueError):
        pz_histogram([0.5])


def test_pz_threshold_shares_of_windows_and_characters() -> None:
    # Four windows over a 100-character work, with their credited (suffix) character ranges:
    #   A p_z = 0.8 [0, 20); B 0.6 [10, 30); C 0.05 [50, 60); D 0 [70, 80).
    # tau 0.75: A -> 1 window, 20 chars.      tau 0.5: A, B -> union [0, 30) = 30 chars.
    # tau 0.1: A, B -> 30.   tau 0.01 and 0.001: A, B, C -> 30 + 10 = 40 chars.
    logs = [LN(0.8), LN(0.6), LN(0.05), -math.inf]
    ranges = [(0, 20), (10, 30), (50, 60), (70, 80)]
    rows = {r.tau: (r.windows, r.window_share, r.chars, r.char_share)
            for r in pz_threshold_shares(logs, ranges, 100)}
    assert rows == {0.75: (1, 0.25, 20, 0.2), 0.5: (2, 0.5, 30, 0.3), 0.1: (2, 0.5, 30, 0.3),
                    0.01: (3, 0.75, 40, 0.4), 0.001: (3, 0.75, 40, 0.4)}
    # p_z exactly at tau counts (>=): 0.5 at tau 0.5.
    (r,) = pz_threshold_shares([LN(0.5)], [(0, 5)], 10, taus=(0.5,))
    assert r.windows == 1
    assert union_length([(0, 5), (3, 8), (10, 12), (11, 11)]) == 10


# --- p_z bounds from a generation's API top-k log-probs ---------------------------------------


def _steps(*rows: tuple[str, list[tuple[str, float]]]) -> list:
    return [(tok, [(t, math.log(p)) for t, p in top]) for tok, top in rows]


def test_generation_that_spells_the_suffix_bounds_every_step() -> None:
    from casekit.pz import pz_bound_from_generation

    # Suffix " bright cold day", three generated tokens spelling it, each its list's maximum:
    # top-40 bound per step p / Z(listed): 0.6/0.9, 0.5/0.75, 0.8/0.9 -> (2/3)(2/3)(8/9) = 32/81;
    # greedy p_z is exactly 1.
    steps = _steps((" bright", [(" bright", 0.6), (" dark", 0.3)]),
                   (" cold", [(" cold", 0.5), (" warm", 0.25)]),
                   (" day", [(" day", 0.8), (" night", 0.1)]))
    b = pz_bound_from_generation(" bright cold day", steps)
    assert b is not None and b.covered_chars == 16 and b.steps_used == 3
    assert b.greedy.exact and b.greedy.upper == 1.0
    assert not b.top40.exact and b.top40.label == "upper bound"
    assert b.top40.upper == pytest.approx(32 / 81, rel=1e-12)


def test_divergence_bounds_the_suffix_token_by_the_best_fitting_listed_token() -> None:
    from casekit.pz import pz_bound_from_generation

    # After " bright" (2/3 as above) the model generated " warm", its list's maximum: greedy
    # p_z is exactly 0. The suffix continues " cold day": listed tokens that fit it are
    # " cold" (0.25) and " co" (0.1); the bound takes the larger: 0.25 / 0.85.
    # top-40 bound = (2/3)(0.25/0.85) = 0.196078...; later steps bound nothing.
    steps = _steps((" bright", [(" bright", 0.6), (" dark", 0.3)]),
                   (" warm", [(" warm", 0.5), (" cold", 0.25), (" co", 0.1)]),
                   (" day", [(" day", 0.9)]))
    b = pz_bound_from_generation(" bright cold day", steps)
    assert b is not None and b.covered_chars == 7 and b.steps_used == 2
    assert b.greedy.exact and b.greedy.upper == 0.0
    assert b.top40.upper == pytest.approx((2 / 3) * (0.25 / 0.85), rel=1e-12)


def test_unlisted_suffix_token_is_bounded_by_the_smallest_listed_probability() -> None:
    from casekit.pz import pz_bound_from_generation

    # " warm" 0.5 and " hot" 0.2 listed, neither fits " cold...": p <= p_min = 0.2, so
    # p~ <= 0.2 / (Z + 0.2) = 0.2 / 0.9 = 2/9.
    steps = _steps((" warm", [(" warm", 0.5), (" hot", 0.2)]))
    b = pz_bound_from_generation(" cold day", steps)
    assert b is not None and b.covered_chars == 0
    assert b.top40.upper == pytest.approx(2 / 9, rel=1e-12)
    assert b.greedy.exact and b.greedy.upper == 0.0


def test_a_generation_that_stops_early_leaves_greedy_undetermined() -> None:
    from casekit.pz import pz_bound_from_generation

    steps = _steps((" bright", [(" bright", 0.6), (" dark", 0.3)]))
    b = pz_bound_from_generation(" bright cold day", steps)
    assert b is not None and not b.greedy.exact and b.greedy.label == "upper bound"
    assert b.greedy.upper == 1.0 and b.top40.upper == pytest.approx(2 / 3, rel=1e-12)


def test_a_suffix_token_that_was_not_the_top_choice_makes_greedy_zero() -> None:
    from casekit.pz import pz_bound_from_generation

    # Sampled at T > 0 (or a tie broken the other way): " bright" was generated but " dark"
    # was the list's maximum, so greedy decoding would not reproduce the suffix.
    steps = _steps((" bright", [(" dark", 0.6), (" bright", 0.3)]),
                   (" cold", [(" cold", 0.9)]))
    b = pz_bound_from_generation(" bright cold", steps)
    assert b is not None and b.greedy.exact and b.greedy.upper == 0.0


def test_generation_steps_read_chat_and_legacy_completions_shapes() -> None:
    from casekit.pz import generation_steps

    chat = {"body": {"choices": [{"logprobs": {"content": [
        {"token": " a", "logprob": -0.5, "top_logprobs": [{"token": " b", "logprob": -0.2}]}]}}]}}
    # The generated token is added to its list when the API left it out.
    assert generation_steps(chat) == [(" a", [(" b", -0.2), (" a", -0.5)])]
    legacy = {"body": {"choices": [{"logprobs": {"tokens": [" a"], "token_logprobs": [-0.5],
                                                 "top_logprobs": [{" a": -0.5, " c": -1.0}]}}]}}
    assert generation_steps(legacy) == [(" a", [(" a", -0.5), (" c", -1.0)])]
    assert generation_steps({"body": {"choices": [{"logprobs": None}]}}) is None
    assert generation_steps({"text": "no body"}) is None
