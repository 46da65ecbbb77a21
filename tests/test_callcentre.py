"""The call centre's rules on hand-checkable schedules (minutes; day 0; windows as in policies.schema)."""

import numpy as np

from sim.callcentre import CallCentre

MORNING, AFTERNOON, EVENING = (8 * 60, 12 * 60), (12 * 60, 17 * 60), (17 * 60, 21 * 60)


def on_duty(**hours: int) -> list[int]:
    """``on_duty(h8_12=1)``: agents on duty per hour, from ``hFROM_TO=count`` keywords."""
    out = [0] * 24
    for key, k in hours.items():
        a, b = (int(x) for x in key[1:].split("_"))
        for h in range(a, b):
            out[h] += k
    return out


def run(cc: CallCentre, windows: list[tuple[tuple[int, int], list[float]]], until: float = 1440) -> dict[str, tuple[int, float]]:
    for i, ((a, b), handle) in enumerate(windows):
        cc.dial(a, b, np.array(handle), f"w{i}")
    return {p: (made, at) for p, made, at in cc.advance(until)}


def test_one_agent_works_the_queue_in_order_and_starts_no_call_at_the_close():
    cc = CallCentre(on_duty(h8_16=1), 1440)
    # calls start at 480, 540, 600, 660; the fifth would start at 720, the close: dropped
    assert run(cc, [(MORNING, [60.0] * 5)]) == {"w0": (4, 720.0)}


def test_a_call_started_before_the_close_is_finished():
    cc = CallCentre(on_duty(h8_16=1), 1440)
    assert run(cc, [(MORNING, [200.0, 100.0, 5.0])]) == {"w0": (2, 780.0)}  # 480-680, 680-780; 780 >= 720


def test_agents_share_the_queue_and_the_window_ends_with_the_last_call():
    cc = CallCentre(on_duty(h8_16=2), 1440)
    # two agents: 480-540 and 480-500, then 500-530, 530-600, 540-560: all five made
    assert run(cc, [(MORNING, [60.0, 20.0, 30.0, 70.0, 20.0])]) == {"w0": (5, 600.0)}


def test_an_agent_whose_shift_starts_mid_window_joins_then():
    cc = CallCentre(on_duty(h8_16=1, h10_16=1), 1440)
    # agent A: 480, 540, 600, 660; agent B from 10:00: 600, 660 -> 6 of 8 made
    assert run(cc, [(MORNING, [60.0] * 8)]) == {"w0": (6, 720.0)}


def test_an_overrunning_call_delays_the_next_window():
    cc = CallCentre(on_duty(h8_21=1), 1440)
    out = run(cc, [(MORNING, [230.0, 60.0]), (AFTERNOON, [60.0] * 10)])
    assert out["w0"] == (2, 770.0)  # 480-710, 710-770
    # the afternoon's only agent is free at 770: calls at 770, 830, ..., 1010 -> 5 made; the sixth would start at 1070 > 1020
    assert out["w1"] == (5, 1070.0)


def test_calls_without_an_agent_on_duty_are_all_dropped_at_the_close():
    cc = CallCentre(on_duty(h8_21=3), 1440)
    assert run(cc, [((21 * 60, 23 * 60), [5.0] * 4)]) == {"w0": (0, 23 * 60.0)}


def test_a_window_still_running_at_the_end_of_the_advance_reports_later():
    cc = CallCentre(on_duty(h8_16=1), 1440)
    cc.dial(*MORNING, np.array([60.0, 60.0]), "w0")
    assert cc.advance(500.0) == []
    assert cc.advance(1440.0) == [("w0", 2, 600.0)]


def test_a_shift_ending_while_its_agents_are_busy_does_not_keep_an_agent_off_duty_for_good():
    """Two agents 8-16, one at 16-17, two again 17-21. At 16:00 the roster claims an agent, but both
    are on overrunning afternoon calls; at 17:00 the claim is withdrawn. Both agents then work the
    evening, on this day and the next."""
    duty = on_duty(h8_16=2, h16_17=1, h17_21=2)
    cc = CallCentre(duty, 1440)
    # afternoon: each agent starts a 320-minute call at 12:00 and works until 17:20
    out = run(cc, [(AFTERNOON, [320.0, 320.0]), (EVENING, [10.0] * 1000)])
    assert out["w0"] == (2, 1040.0)
    # two agents from 17:20 to 21:00: 22 calls each
    assert out["w1"][0] == 44
    day2 = {p: (m, at) for p, m, at in (cc.dial(1440 + EVENING[0], 1440 + EVENING[1], np.array([10.0] * 1000), "d2") or cc.advance(2880))}
    assert day2["d2"][0] == 48  # both agents from 17:00 to 21:00, 24 calls each


def test_a_window_dialled_with_no_calls_reports_at_once():
    cc = CallCentre(on_duty(h8_16=1), 1440)
    assert run(cc, [(MORNING, [])]) == {"w0": (0, 480.0)}
