"""Sweeps: a spec becomes a Ray Tune run whose trials are distributed trainings. The only
package that imports Ray Tune and Optuna."""
