"""The AsyncAPI 3 description of the MQTT contract, generated from the code that implements it.

``asyncapi.yaml`` (for tools) and ``README.md`` (for people) are both rendered from
:func:`document.build`, which takes channel addresses from the builders in ``topics.py``, payloads
from the JSON Schemas in ``broker/schemas/`` and examples from real contract model instances; tests
keep the committed files equal to what the code generates.
"""
