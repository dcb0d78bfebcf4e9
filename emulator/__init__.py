"""The emulator: Mininet topologies, link shaping, trace replay and the simulator.

It imports ``runtime``; ``runtime`` never imports it (checked by tests/test_layering.py).
"""
