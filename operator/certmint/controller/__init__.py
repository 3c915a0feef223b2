"""The imperative shell: caches, work queue, reconcilers and the kopf wiring."""
