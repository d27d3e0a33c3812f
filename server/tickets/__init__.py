"""The ticket engine: the grid-governance loop from report to evaluation.

Stages and roles, the lifecycle state machine, the category table and working calendar, SLA clocks
and escalation, correlation of events into incidents and tickets, and the indicators. Imports the
registry and the base (db, models, clock); nothing that receives events or serves HTTP.
"""
