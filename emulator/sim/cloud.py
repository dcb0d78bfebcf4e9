"""Several simulated targets behind the runtime's router, as ``runtime.router`` runs them.

Every message of a session goes to the target its ``open`` was routed to; the router
counts a session against its target from ``open`` until the edge's ``close`` reaches it,
and the policy (``runtime.routing``) chooses from those counts, so both worlds give a
session the same target from the same history. The hop through the router and the links
inside the cloud are not priced (about a millisecond against rounds of hundreds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.sim.engine import Engine
from emulator.sim.messages import Close, Open, Verify
from emulator.sim.server import TargetSim
from runtime.events import EventLog
from runtime.routing import SessionTable

KINDS = {Open: "open", Verify: "verify", Close: "close"}


@dataclass
class RoutedCloud:
    engine: Engine
    targets: list[TargetSim]
    table: SessionTable
    log: EventLog
    fanout: dict[str, list[int]] = field(default_factory=dict)  # edge -> its targets (all)

    def arrive(self, message: Open | Verify | Close) -> None:
        edge = message.edge
        key = f"{edge.name}/{edge.active.session}"
        kind = KINDS[type(message)]
        index = self.table.route(key, kind, self.fanout.get(edge.name))
        if kind == "open":
            now = self.engine.now / 1000.0
            self.log.write("route", t=now, **self.table.route_event(edge.active.session, index))
        self.targets[index].arrive(message)

    @property
    def busy(self) -> bool:
        """Whether any target computes (what slows an edge computing beside the cloud)."""
        return any(target.busy for target in self.targets)
