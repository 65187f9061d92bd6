"""Training jobs: a SQLAlchemy job store, a Huey queue and the worker that runs trainings with the engine."""
