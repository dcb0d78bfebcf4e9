"""What a link does to packets, on any clock: Mahimahi's queues, the stages of one
direction, packet logs in Mahimahi's format, and mm-link command lines."""
