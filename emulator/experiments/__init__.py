"""Experiments made of many runs or simulations: the fidelity suite, the capacity sweep, the
capacity planner, the corrections to DSD-Sim, replayed edges against real ones."""
