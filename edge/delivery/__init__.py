"""Delivery: getting events off the box and commands to the gate, without losing any.

The on-disk outbox (kept until the broker acknowledges), the MQTT publisher with snapshot upload,
its fail-over between a site's brokers, and the gate controller's command/ack round trip. Imports
evidence and the contract; the node wires it to the pipeline.
"""
