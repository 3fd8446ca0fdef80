"""The tuner (hyperparameter optimisation) service."""
