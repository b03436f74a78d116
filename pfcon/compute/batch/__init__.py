"""Batch schedulers (Slurm): a scheduler is data over one shared backend that writes job scripts."""
