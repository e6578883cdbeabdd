"""The coordinator: command-line front end, scan -> compare -> plan -> dispatch."""
