"""The running node: every stage wired together per camera, and everything around the pipeline.

The camera pipeline, the scheduler that shares one detector among cameras, the runner, camera
health, Prometheus metrics, hot reload, remote camera config and uniform examples, and the
``gridwatch edge`` commands.
The only edge folder that may import all the others; nothing in the edge imports it.
"""
