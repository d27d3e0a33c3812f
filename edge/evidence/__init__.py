"""Evidence: the JPEG snapshots an incident carries, stored on the node with bounded retention.

Owns annotation, crops, the redaction of faces and plates in every stored image with its blur
manifest (privacy, plates), the camera's privacy masks blacked out (privacy), and the encrypted
unblurred originals a site may keep (originals), and the event clips cut from each camera's ring buffer
of recent frames, blurred the same way and H.264-encoded off the detection path (clips).
Imports the stages before it; delivery sends what it stores.
"""
