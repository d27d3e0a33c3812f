"""Mosquitto hardening for a production site: private CA, per-principal credentials, ACL, CRL.

Everything is generated into one broker directory by ``gridwatch broker init/add-*/revoke-*`` from a
registry file there, so the password file, the ACL and the CRL are always a function of who was
added and who was revoked, never of hand edits.
"""
