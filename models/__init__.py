"""Models: the manifest (name, upstream, sha256, licence), the resolver that finds a verified local copy,
the copies derived from it once into the model cache (symbolic input size, onnxruntime's optimised
graph), and the face detector both the edge (to blur) and the server (to check the blur) run.

Imports nothing of edge, server or broker; they import it.
"""
