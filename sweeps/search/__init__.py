"""`ablate search-steps`: the fewest steps whose mean final val loss beats a target.

    spec      the search spec: a sweep spec without a grid, plus [search]
    method    the noisy bisection over the step grid, on an Optuna study (no Ray)
    study     the study in its RDB storage, kept true to the curves on disk
    searcher  the bisection as a Ray Tune Searcher: each probe is a sweep trial
    cli       the command
"""
