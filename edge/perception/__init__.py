"""Perception: what a frame shows, before any rule looks at it.

The ONNX detector and its output layouts, the tracker, the motion gate that spares the detector,
the tamper check, OSNet appearance embeddings, the fire lane's background model, and uniforms
(matching a torso to a uniform, enrolling a new one). Imports capture and the edge config, never
rules or anything downstream.
"""
