"""A simulated IP camera: GStreamer's RTSP server (``server.py``, run by the system Python with Debian's
``python3-gi``) serving a clip the way a compound's Hikvision or Dahua camera does, and the clips it serves,
encoded by Debian's ffmpeg (``camera.py``).

The RTSP tests, ``python -m bench rtsp`` and an installer checking an edge box without a camera on the desk
all start the same camera from here. It imports nothing of GridWatch's: the edge reads it as any camera.
"""
