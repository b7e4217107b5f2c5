"""Compute side of mftlaunch: module entry points that Slurm tasks run (train, merge, generate,
evaluate, collect) and what they need. Nothing here imports the launcher's CLI code."""
