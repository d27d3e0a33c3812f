"""Models: the manifest (name, upstream, sha256, licence), the resolver that finds a verified local copy,
and the face detector both the edge (to blur) and the server (to check the blur) run.

Imports nothing of edge, server or broker; they import it.
"""
