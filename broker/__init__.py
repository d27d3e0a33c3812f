"""The MQTT contract shared by edge and server: topics, payload models, JSON Schemas, broker configs."""
