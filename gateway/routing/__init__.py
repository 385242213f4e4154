"""Routing of submitted requests to facility queues, workers and the staff workflow."""
