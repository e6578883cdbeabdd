"""The UDP transport: a sans-I/O core (packets, sessions, rate control, AEAD) and a thin socket driver."""
