"""Smoothed estimates of the world a drafter sees, and the features the learned window policy
reads from them: what the adaptive window policies decide from."""

from __future__ import annotations

import collections
import math
import statistics

import numpy as np

from runtime.observations import RoundObservation


class Ewma:
    """An exponentially weighted mean; ``initial`` (None: unknown) until the first sample,
    which replaces an unknown value and is averaged into a given one."""

    def __init__(self, weight: float, initial: float | None = None) -> None:
        self.weight = weight
        self.value: float | None = initial

    def add(self, sample: float) -> None:
        if self.value is None:
            self.value = sample
        else:
            self.value += self.weight * (sample - self.value)


def _ratio(successes: Ewma, failures: Ewma) -> float:
    s, f = successes.value or 0.0, failures.value or 0.0
    return min(s / (s + f), 0.999) if s + f > 0 else 0.5


class WindowEstimates:
    """Smoothed signals from the rounds a drafter has seen: what adaptive policies decide from.

    Acceptance is estimated from accepted tokens and first rejections (the maximum-likelihood
    estimate for runs of accepted tokens) with a longer memory, since one round's run ends at
    random, and starts from a prior of α = 0.5: one fully accepted first round must not read
    as α = 1. Verify time is kept per token of batch width (``overhead_tokens`` + the longest
    row, which every row of a padded batch pays for); the round time and the queue wait in
    units of verify time; the server's utilisation and the batch's acceptance as verdicts
    report them.
    """

    def __init__(
        self,
        smoothing: float = 0.3,
        acceptance_smoothing: float = 0.1,
        overhead_tokens: float = 4.0,
    ) -> None:
        self.overhead_tokens = overhead_tokens
        self.successes = Ewma(acceptance_smoothing, initial=1.0)
        self.failures = Ewma(acceptance_smoothing, initial=1.0)
        self.draft_step_ms = Ewma(smoothing)
        self.recent_network_ms: collections.deque[float] = collections.deque(maxlen=5)
        # The median network time of the last few rounds: recorded round trips have
        # one-round spikes (a retransmission, a handover) that are over before a window
        # drafted for them could pay off, while a lasting change shows within three rounds.
        # Kept up to date here, since each decision weighs it for every γ.
        self.typical_network_ms = 0.0
        self.network_ms, self.network_ms_slow = Ewma(smoothing), Ewma(smoothing / 4)
        self.queue_ms, self.queue_ms_slow = Ewma(smoothing), Ewma(smoothing / 4)
        self.queue_batches = Ewma(smoothing)
        self.round_batches = Ewma(smoothing)
        self.utilisation = Ewma(smoothing)
        self.batch_successes = Ewma(acceptance_smoothing, initial=1.0)
        self.batch_failures = Ewma(acceptance_smoothing, initial=1.0)
        self.verify_ms_per_token = Ewma(smoothing)
        self.batch_size = Ewma(smoothing)
        self.peer_width = Ewma(smoothing)
        self.round_ms_per_token = Ewma(smoothing)
        self.round_ms_per_token_slow = Ewma(smoothing / 4)
        self.last_gamma = 0
        self.context_len = 0

    def alpha(self) -> float:
        return _ratio(self.successes, self.failures)

    def batch_alpha(self) -> float:
        """Acceptance over the rows this edge's requests were batched with (its own where
        the server does not report it)."""
        return _ratio(self.batch_successes, self.batch_failures)

    def server_cycle_ms(self, gamma: int) -> float:
        """How long the server takes to verify a round of every edge it serves, were all of
        them to draft ``gamma``: its busy share of this edge's round, scaled with the verify
        time. On a saturated server this, not the edge's own path, sets the round time."""
        busy = (self.utilisation.value or 0.0) * (self.round_batches.value or 0.0)
        return busy * self.verify_ms(gamma)

    def ready(self) -> bool:
        """Whether a verdict has been seen: before it, nothing is known of the server."""
        return self.verify_ms_per_token.value is not None

    def verify_ms(self, gamma: int) -> float:
        """Predicted verify time of a batch in which this edge's row drafts ``gamma`` tokens:
        a batch is as wide as its longest row, so at least as wide as other edges' rows have
        been making it; up to that width a longer row costs nothing more."""
        width = max(gamma + 1.0, self.peer_width.value or 0.0)
        return (self.verify_ms_per_token.value or 0.0) * (self.overhead_tokens + width)

    def observe(self, o: RoundObservation) -> None:
        self.recent_network_ms.append(o.network_ms)
        self.typical_network_ms = statistics.median(self.recent_network_ms)
        self.network_ms.add(o.network_ms)
        self.network_ms_slow.add(o.network_ms)
        self.queue_ms.add(o.server_queue_ms)
        self.queue_ms_slow.add(o.server_queue_ms)
        self.last_gamma, self.context_len = o.gamma, o.context_len
        self.batch_size.add(o.batch_size)
        if o.server_verify_ms > 0:
            self.verify_ms_per_token.add(
                o.server_verify_ms / (self.overhead_tokens + max(o.batch_width, o.gamma + 1))
            )
            self.queue_batches.add(o.server_queue_ms / o.server_verify_ms)
            server_ms = o.server_queue_ms + o.server_verify_ms
            round_ms = o.gamma * o.draft_step_ms + self.typical_network_ms + server_ms
            self.round_batches.add(round_ms / o.server_verify_ms)
            self.utilisation.add(o.utilisation)
            self.peer_width.add(o.peer_width)
        if o.drafted > 0:
            self.draft_step_ms.add(o.draft_step_ms)
            self.successes.add(o.accepted)
            self.failures.add(1.0 if o.accepted < o.drafted else 0.0)
            if o.batch_accepted >= 0:
                self.batch_successes.add(o.batch_accepted / o.batch_size)
                self.batch_failures.add(o.batch_rejected / o.batch_size)
            else:
                self.batch_successes.add(o.accepted)
                self.batch_failures.add(1.0 if o.accepted < o.drafted else 0.0)
        round_ms = o.gamma * o.draft_step_ms + o.round_trip_ms
        self.round_ms_per_token.add(round_ms / (o.accepted + 1))
        self.round_ms_per_token_slow.add(round_ms / (o.accepted + 1))


WINDOW_FEATURES = (
    "acceptance",
    "log_draft_step_ms",
    "log_network_ms",
    "network_change",
    "log_verify_ms_per_token",
    "queue_batches",
    "queue_change",
    "log_batch_size",
    "peer_width",
    "utilisation",
    "batch_acceptance",
    "log_tpot_ms",
    "tpot_change",
    "last_gamma",
    "log_context_len",
)


def _change(fast: Ewma, slow: Ewma, floor: float) -> float:
    """A signal's trend: its short-memory mean relative to its long-memory one."""
    if fast.value is None or slow.value is None:
        return 0.0
    return (fast.value - slow.value) / (slow.value + floor)


def window_features(e: WindowEstimates) -> np.ndarray | None:
    """``WINDOW_FEATURES`` of the estimates, on scales a network takes well (logs of times,
    trends as relative changes); None before the first verdict."""
    if not e.ready():
        return None
    return np.array(
        [
            e.alpha(),
            math.log1p(e.draft_step_ms.value or 0.0),
            math.log1p(e.typical_network_ms),
            _change(e.network_ms, e.network_ms_slow, 10.0),
            math.log1p(e.verify_ms_per_token.value or 0.0),
            e.queue_batches.value or 0.0,
            _change(e.queue_ms, e.queue_ms_slow, 10.0),
            math.log(max(1.0, e.batch_size.value or 1.0)),
            e.peer_width.value or 0.0,
            e.utilisation.value or 0.0,
            e.batch_alpha(),
            math.log1p(e.round_ms_per_token.value or 0.0),
            _change(e.round_ms_per_token, e.round_ms_per_token_slow, 1.0),
            float(e.last_gamma),
            math.log1p(e.context_len),
        ]
    )
