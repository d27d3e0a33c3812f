"""The registry: who and where. Grids, communities, streets, people and units; cameras bound to grids;
login accounts and API tokens; residents' vehicles (plate -> unit, person, phone); each camera's saved
zones; the uniform examples added in the console.

Imports the base (db, models) and the contract only: every other room may build on it.
"""
