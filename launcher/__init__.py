"""Submit side of mftlaunch: recipes, cluster profiles, plans, Slurm submission. Never imports torch."""
