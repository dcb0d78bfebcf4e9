"""One emulated run: the main job (``mainjob.run_scenario``), its processes placed in the
network, its progress and resources watched, the simulator's prediction beside it, and the
same run in a child process for programs that need many."""
