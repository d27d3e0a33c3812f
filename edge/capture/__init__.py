"""Capture: frames from files, RTSP/HTTP streams and USB cameras, sampled at each camera's detect rate.

Owns reopening a stalled stream and the reader thread per camera. Imports only the edge config
and the contract; it knows nothing of detection.
"""
