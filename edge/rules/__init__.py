"""Rules turn tracked objects in zones into incidents (start / update / end)."""
