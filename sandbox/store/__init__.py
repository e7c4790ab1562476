"""The records of a sandbox: the seeded world, its workspaces, and where changes are kept."""
