"""Perception: what a frame shows, before any rule looks at it.

The ONNX detector and its output layouts, the tracker, the motion gate that spares the detector,
the tamper check, OSNet appearance embeddings, the fire lane's background model, colour under the
frame's own illuminant, uniforms (the open-set decision, enrolling a profile against site
negatives), and reading the QR codes riders show at a gate. Imports capture and the edge config, never
rules or anything downstream.
"""
