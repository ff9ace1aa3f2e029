"""The veto itself: crop -> normalize -> CNN. No pluggy in here but the built-in registrations."""
