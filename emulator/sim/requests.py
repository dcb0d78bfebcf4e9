"""Each request's draws where the workload gives distributions (the simulator's; the runtime
runs every request alike): its answer's token budget, its prompt's length, and in a closed
loop the think time before the next. Seeded per edge, so every mode and policy meets the
same requests."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from emulator.scenario import ThinkTime, Workload
from runtime.arrivals import random_stream


@dataclass
class RequestDraws:
    answer_tokens: list[int] = field(default_factory=list)  # empty: the workload's budget
    prompt_tokens: list[int] = field(default_factory=list)  # empty: the prompt's own length
    think_ms: list[float] = field(default_factory=list)  # after each request (closed loop)
    start_ms: float = 0.0  # the first request's arrival


def think_draw(think: ThinkTime, rng: random.Random) -> float:
    """A lognormal draw with the think time's mean and CV, at least its minimum."""
    if think.cv <= 0:
        return max(think.low_ms, think.mean_ms)
    sigma = math.sqrt(math.log1p(think.cv**2))
    mu = math.log(think.mean_ms) - sigma**2 / 2
    return max(think.low_ms, rng.lognormvariate(mu, sigma))


def request_draws(workload: Workload, requests: int, seed: int, host: str) -> RequestDraws:
    draws = RequestDraws()
    rng = random_stream(seed, f"{host}-requests")
    answers, prompts, think = workload.answer_tokens, workload.prompt_tokens, workload.think_time
    if answers is not None:
        draws.answer_tokens = [
            min(answers.high, max(answers.low, round(rng.gauss(answers.mean, answers.std))))
            for _ in range(requests)
        ]
    if prompts is not None:
        draws.prompt_tokens = [rng.randint(*prompts) for _ in range(requests)]
    if think is not None:
        draws.start_ms = think_draw(think, rng)
        draws.think_ms = [think_draw(think, rng) for _ in range(requests)]
    return draws
