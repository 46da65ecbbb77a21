"""The call centre: agents on shifts working each contact window's queue of calls.

The rules (minutes on the world's clock):

* ``capacity`` agents exist; a roster takes ``capacity - on_duty[hour]`` of them off duty at
  every hour where the number on duty changes. An agent is taken off duty when free (an agent
  busy on a window's queue finishes that window first).
* A window's dialler opens at the window's start with its calls in dialling order and one work
  session per call, up to ``capacity``. Each session waits for a free agent (behind the roster
  and behind older sessions); with an agent it works through the shared queue, one call at a
  time, each call holding the agent for its handle time, and starts no call at or after the
  window's close (a call started before the close is finished).
* Sessions still waiting at the close give up; calls never started are dropped. The window's
  outcome is known when its last session has ended.

These are the rules of a ``simpy.PriorityResource`` with one process per session and one timeout
per call (the world's first implementation). Here they run as a small event loop of their own,
which costs a heap push and pop per call instead of a SimPy process step, and the world's SimPy
clock gets one event per window: the moment its outcome is known. Every preset scenario gives
the same results, to the last bit, as under the SimPy version, which had two flaws this one
does not: a window opening at the hour a shift ended could still be worked by that shift's free
agents (with no compliance profile, late calls were made after 21:00), and withdrawing an
off-duty claim that was still waiting for its agent left it queued, so once granted it kept an
agent off duty for good.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

# order of simultaneous events: shifts change on the hour before a window opens or closes
# there, and agents finishing calls come last
_ROSTER, _OPEN, _CLOSE, _FREE = 0, 1, 2, 3


class _Window:
    __slots__ = ("alive", "closes_at", "end", "handle", "next", "payload", "pending")

    def __init__(self, closes_at: float, handle: list[float], payload: Any) -> None:
        self.closes_at, self.handle, self.payload = closes_at, handle, payload
        self.next = 0  # the first call not yet started
        self.alive = 0  # sessions not yet ended
        self.end = -np.inf  # when the last session ended so far
        self.pending: list[_Request] = []


class _Request:
    """A claim on one agent: a window's work session, or the roster's (window is None)."""

    __slots__ = ("cancelled", "granted", "window")

    def __init__(self, window: _Window | None) -> None:
        self.window, self.granted, self.cancelled = window, False, False


class CallCentre:
    """Agents, shifts and the calls of each window; ``advance`` reports the windows finished."""

    def __init__(self, on_duty_by_hour: Sequence[int], minutes_per_day: int) -> None:
        self.on_duty = [int(x) for x in on_duty_by_hour]
        self.capacity = max(1, max(self.on_duty))
        self.day_minutes = minutes_per_day
        self.changes = [h for h in range(24) if h == 0 or self.on_duty[h] != self.on_duty[h - 1]]
        self.busy = 0  # agents held by a session or by the roster
        self.held: list[_Request] = []  # the roster's claims, newest last
        self.roster_waiting: deque[_Request] = deque()
        self.sessions_waiting: deque[_Request] = deque()
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self._push(0.0, _ROSTER, None)

    def _push(self, at: float, kind: int, what: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, what))

    def dial(self, opens_at: float, closes_at: float, handle_min: np.ndarray, payload: Any) -> None:
        """Queue a window's calls (handle times in dialling order); ``payload`` comes back with the outcome."""
        self._push(opens_at, _OPEN, _Window(closes_at, handle_min.tolist(), payload))

    def advance(self, until: float) -> list[tuple[Any, int, float]]:
        """Run every event before ``until``; returns ``(payload, calls_made, finished_at)`` for each
        window whose last session ended."""
        done: list[tuple[Any, int, float]] = []
        events, pop, push = self.events, heapq.heappop, heapq.heappush
        while events and events[0][0] < until:
            at, kind, _, what = pop(events)
            if kind == _FREE:
                # the hot path, one per call made: what _work does, inline
                k = what.next
                if k < len(what.handle) and at < what.closes_at:
                    what.next = k + 1
                    self.seq += 1
                    push(events, (at + what.handle[k], _FREE, self.seq, what))
                else:
                    self.busy -= 1
                    self._end(what, at, done)
                    self._grant(at, done)
            elif kind == _OPEN:
                self._open(what, at, done)
            elif kind == _CLOSE:
                for req in what.pending:
                    if not req.granted and not req.cancelled:
                        req.cancelled = True
                        self._end(what, at, done)
                what.pending = []
            else:
                self._roster(at, done)
        return done

    # -- the loop's steps

    def _open(self, w: _Window, at: float, done: list[tuple[Any, int, float]]) -> None:
        n = min(len(w.handle), self.capacity)
        w.alive = n
        if n == 0:
            w.end = at
            done.append((w.payload, 0, at))
            return
        for _ in range(n):
            req = _Request(w)
            w.pending.append(req)
            self.sessions_waiting.append(req)
        self._push(w.closes_at, _CLOSE, w)
        self._grant(at, done)

    def _work(self, w: _Window, at: float) -> bool:
        """An agent of window ``w`` free at ``at`` starts the next call, if there is one and the window is open."""
        if w.next < len(w.handle) and at < w.closes_at:
            k = w.next
            w.next += 1
            self._push(at + w.handle[k], _FREE, w)
            return True
        return False

    def _end(self, w: _Window, at: float, done: list[tuple[Any, int, float]]) -> None:
        """A session of ``w`` ended at ``at`` (its agent, if it had one, is already released)."""
        w.alive -= 1
        w.end = max(w.end, at)
        if w.alive == 0:
            done.append((w.payload, w.next, w.end))

    def _grant(self, at: float, done: list[tuple[Any, int, float]]) -> None:
        """Free agents go to waiting claims: the roster's first, then sessions in the order they asked."""
        while self.busy < self.capacity:
            queue = self.roster_waiting if self.roster_waiting else self.sessions_waiting
            if not queue:
                return
            req = queue.popleft()
            if req.cancelled:
                continue
            req.granted = True
            self.busy += 1
            w = req.window
            if w is not None and not self._work(w, at):
                self.busy -= 1  # nothing to do: the agent is free again at once
                self._end(w, at, done)

    def _roster(self, at: float, done: list[tuple[Any, int, float]]) -> None:
        hour = int(at // 60) % 24
        want = self.capacity - self.on_duty[hour]
        while len(self.held) > want:
            req = self.held.pop()
            if req.granted:
                self.busy -= 1
            else:
                req.cancelled = True
        while len(self.held) < want:
            req = _Request(None)
            self.held.append(req)
            self.roster_waiting.append(req)
        self._grant(at, done)
        later = [h for h in self.changes if h > hour]
        next_hour = later[0] if later else 24 + self.changes[0]
        day_start = (at // self.day_minutes) * self.day_minutes
        self._push(day_start + next_hour * 60, _ROSTER, None)


def lone_call_start(on_duty_by_hour: Sequence[int], opens_at: float, closes_at: float, going_until: Sequence[float] = ()) -> float | None:
    """When a window's only call starts under the rules above, or None if it is dropped: the first
    moment in ``[opens_at, closes_at)`` at which an agent is on shift and free. ``going_until``: the
    ends of earlier calls that may still hold agents (a one-debtor world dials one call a day, but
    a call can last past the next day's window).

    With one call in the window, the queue has nothing to order. At a moment in hour ``h`` the
    roster keeps ``capacity - on_duty[h]`` agents off duty, taking them as they come free before
    any session does, so a free agent exists exactly when ``on_duty[h]`` exceeds the number of
    earlier calls still going. That can change only at an hour boundary or at an earlier call's
    end, so only those moments are tried."""
    ends = sorted(e for e in going_until if e > opens_at)
    t = opens_at
    while t < closes_at:
        going = sum(1 for e in ends if e > t)
        if on_duty_by_hour[int(t // 60) % 24] > going:
            return t
        nxt = (t // 60 + 1) * 60
        t = min([e for e in ends if t < e < nxt], default=nxt)
    return None
