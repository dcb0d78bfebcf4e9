"""The server's part in the window decision: one γ for the edges it serves, chosen from what
only it sees (every row of its batches, its load, its own verify cost).

Edges that choose alone each count the width other rows give a batch as free, so on a shared
server their windows ratchet up and pad every batch to the longest row. The advisor instead
predicts, for each common γ, the tokens per ms its edges get together: each edge's own rate,
E[tokens](γ) over its round (drafting, network, queue, verify), summed, and capped by the
server's capacity, a batch of ``min(sessions, max_batch)`` rows of E[tokens](γ) tokens per
verify time. Verdicts carry the best as ``gamma_hint`` to the edges that asked for it (by
sending their drafting time). Both worlds' servers feed it the same way, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from runtime.estimates import Ewma


class PositionAcceptance:
    """How far rows' runs of accepted drafts reach, per draft position: the chance of a first
    rejection at position k given the run reached k, from decayed counts (Kaplan–Meier).

    A constant per-token α misleads where acceptance comes in bursts (a run that got far
    tends to go on): measured on long rows it reads high, and γ chosen from it ratchets up.
    A position seldom reached leans on the one before it (``prior_rows`` pseudo-rows), the
    first on α = 0.5.
    """

    def __init__(self, decay: float, prior_rows: float = 2.0, known_rows: float = 4.0) -> None:
        self.decay, self.prior_rows, self.known_rows = decay, prior_rows, known_rows
        self.reached: list[float] = []
        self.rejected: list[float] = []
        self.deepest = 0  # the most positions ever reached by ``known_rows`` rows

    def add(self, rows: Sequence[tuple[int, int]]) -> None:
        """One batch's rows as (drafted, accepted)."""
        keep = 1.0 - self.decay
        self.reached = [r * keep for r in self.reached]
        self.rejected = [r * keep for r in self.rejected]
        for drafted, accepted in rows:
            depth = min(accepted + 1, drafted)  # positions this row's run reached
            while len(self.reached) < depth:
                self.reached.append(0.0)
                self.rejected.append(0.0)
            for k in range(depth):
                self.reached[k] += 1.0
            if accepted < drafted:
                self.rejected[accepted] += 1.0
        known = sum(1 for r in self.reached if r >= self.known_rows)
        self.deepest = max(self.deepest, known)

    def expected_tokens(self, gamma: int) -> float:
        """Tokens a round of ``gamma`` drafts emits: 1 + the chance of reaching each draft."""
        hazard, survive, total = 0.5, 1.0, 1.0
        for k in range(gamma):
            if k < len(self.reached):
                hazard = (self.rejected[k] + self.prior_rows * hazard) / (
                    self.reached[k] + self.prior_rows
                )
            survive *= 1.0 - hazard
            total += survive
        return total


@dataclass
class EdgeView:
    """What the server learns of one edge from its requests and the verdicts it was sent."""

    smoothing: float
    draft_step_ms: Ewma = field(init=False)
    network_ms: Ewma = field(init=False)
    replied_ms: float | None = None  # when its last verdict left (None: no round pending)
    active: bool = False

    def __post_init__(self) -> None:
        self.draft_step_ms = Ewma(self.smoothing)
        self.network_ms = Ewma(self.smoothing)

    def ready(self) -> bool:
        return self.network_ms.value is not None and self.draft_step_ms.value is not None


class WindowAdvisor:
    """Chooses the common γ after each batch; see the module docstring.

    Acceptance is pooled over every row the server verifies, per draft position
    (``PositionAcceptance``), with a long memory, since one round's run ends at random.
    Verify time is the server's own, measured per batch shape (rows, width), and
    where a width is not yet measured modelled as AWC models it, proportional to
    (``overhead_tokens`` + width); a row's wait in the queue as a share of the verify time,
    as measured. It advises at most one draft beyond the deepest position rows have ever
    reached often enough to measure, so that a longer window is tried before it is trusted;
    a new γ is taken only for a predicted gain above ``hysteresis``.
    """

    def __init__(
        self,
        max_batch: int,
        low: int = 1,
        high: int = 16,
        overhead_tokens: float = 4.0,
        smoothing: float = 0.3,
        acceptance_decay: float = 0.02,
        hysteresis: float = 0.02,
    ) -> None:
        if not 1 <= low <= high or max_batch < 1:
            raise ValueError(f"need 1 <= low <= high and max_batch >= 1, got {low}, {high}")
        self.max_batch, self.low, self.high = max_batch, low, high
        self.overhead_tokens = overhead_tokens
        self.smoothing = smoothing
        self.hysteresis = hysteresis
        self.edges: dict[Hashable, EdgeView] = {}
        self.acceptance = PositionAcceptance(acceptance_decay)
        self.verify_cells: dict[tuple[int, int], Ewma] = {}  # verify ms by (rows, width)
        self.batch_rows = Ewma(smoothing)
        self.queue_share = Ewma(smoothing)  # a row's queue wait in units of its verify time
        self.gamma = 0  # the advice; 0 until the first prediction

    def request(self, edge: Hashable, now_ms: float, drafted: int, draft_ms: float) -> None:
        """A verify request arrived from an edge that asks for advice."""
        view = self.edges.get(edge)
        if view is None:
            view = self.edges[edge] = EdgeView(self.smoothing)
        if view.replied_ms is not None:
            view.network_ms.add(max(0.0, now_ms - view.replied_ms - draft_ms))
        if drafted > 0:
            view.draft_step_ms.add(draft_ms / drafted)
        view.active = True

    def batch(
        self,
        widths: Sequence[int],
        drafted: Sequence[int],
        accepted: Sequence[int],
        verify_ms: float,
        queue_ms: Sequence[float],
        sessions: int,
    ) -> None:
        """A batch ran (its rows' widths, drafted and accepted tokens; the advised rows'
        queue waits): learn the server's cost, wait and acceptance, then choose the common
        γ for the ``sessions`` it serves now."""
        if verify_ms <= 0:
            return
        rows = len(widths)
        cell = self.verify_cells.setdefault((rows, max(widths)), Ewma(self.smoothing))
        cell.add(verify_ms)
        self.batch_rows.add(rows)
        for wait in queue_ms:
            self.queue_share.add(wait / verify_ms)
        self.acceptance.add([(d, a) for d, a in zip(drafted, accepted, strict=True) if d > 0])
        self._choose(max(1, sessions))

    def verdict(self, edge: Hashable, now_ms: float, done: bool) -> int:
        """A verdict leaves for an advised edge: its advice (0: none yet)."""
        view = self.edges[edge]
        view.replied_ms = None if done else now_ms
        view.active = not done
        return self.gamma

    def close(self, edge: Hashable) -> None:
        """The edge's session ended."""
        self.edges.pop(edge, None)

    def verify_ms(self, rows: float, width: int) -> float:
        """A batch's verify time as measured at this shape; at a width not yet measured,
        the nearest measured width's at these rows, scaled by (overhead + width)."""
        size = min({r for r, _ in self.verify_cells}, key=lambda r: (abs(r - rows), -r))
        measured = {w: e.value or 0.0 for (r, w), e in self.verify_cells.items() if r == size}
        if width in measured:
            return measured[width]
        nearest = min(measured, key=lambda w: (abs(w - width), -w))
        return measured[nearest] * (self.overhead_tokens + width) / (self.overhead_tokens + nearest)

    def predicted_rate(self, gamma: int, sessions: int, views: Sequence[EdgeView]) -> float:
        """Tokens per ms the advised edges (``views``, each ready) would get together if
        every edge drafted ``gamma``."""
        expected = self.acceptance.expected_tokens(gamma)
        verify = self.verify_ms(self.batch_rows.value or 1.0, gamma + 1)
        wait = (self.queue_share.value or 0.0) * verify
        own = sum(
            expected
            / (gamma * (v.draft_step_ms.value or 0.0) + (v.network_ms.value or 0.0) + wait + verify)
            for v in views
        )
        rows = min(sessions, self.max_batch)
        capacity = rows * expected / self.verify_ms(rows, gamma + 1)
        # the advised edges' share of what the server can give every session it serves
        return min(own, capacity * min(1.0, len(views) / sessions))

    def _choose(self, sessions: int) -> None:
        views = [v for v in self.edges.values() if v.active and v.ready()]
        if not views or not self.verify_cells:
            return
        top = max(self.low, min(self.high, self.acceptance.deepest + 1))
        rates = {g: self.predicted_rate(g, sessions, views) for g in range(self.low, top + 1)}
        best = max(rates, key=rates.__getitem__)
        current = rates.get(self.gamma)
        if current is None or rates[best] > current * (1.0 + self.hysteresis):
            self.gamma = best
