"""A clustered broker for district scale: NATS with JetStream and its MQTT gateway (see README.md)."""
