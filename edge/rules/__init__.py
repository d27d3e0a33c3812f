"""Rules: tracked objects in zones become incidents (start / update / end) and gate decisions.

Zone membership, time windows, the courier, fire-lane and loitering rules, and the gate policy
(its factors: uniform, the rider's signed QR code, the company's printed words).
Zone and rule settings are the contract's (``gridwatch.broker.zones``). Imports reading, perception and
capture, never evidence, delivery or the node.
"""
