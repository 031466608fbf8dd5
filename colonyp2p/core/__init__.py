"""The protocol core: pure state machines. No clock reads, no I/O, no sleeping, no spawning.

Input: a verified message or a timer, with ``now`` (the node's own clock).
Output: a list of effects that a driver (the trio+libp2p daemon, or the
simulator) carries out in order, persisting before it sends.
"""
