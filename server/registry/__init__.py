"""The registry: who and where. Grids, communities, streets, people and units; cameras bound to grids;
login accounts and API tokens; each camera's saved zones.

Imports the base (db, models) and the contract only: every other room may build on it.
"""
