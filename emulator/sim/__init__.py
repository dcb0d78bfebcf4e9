"""DSD-Sim: the discrete-event simulator of the scenarios the emulator runs.

``simulation.Simulation`` builds a run from a scenario file; ``engine`` is the event loop;
``links``, ``edge`` and ``server`` model the network, the drafters and the target;
``calibration`` reads a model pair's profile.
"""
