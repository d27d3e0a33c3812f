"""Evidence: the JPEG snapshots an incident carries, stored on the node with bounded retention.

Owns annotation, crops and face blurring (privacy). Imports the stages before it; delivery sends
what it stores.
"""
