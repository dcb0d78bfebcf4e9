"""The emulated network: Mininet topologies from scenarios, links shaped (tc/netem or the
delay line) and replayed live from their traces, and the sweep of what a killed run left."""
