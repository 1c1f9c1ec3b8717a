"""The machinery every stage shares: sites, the stage registry, array planning, job specs, runs, Slurm, the local executor."""
