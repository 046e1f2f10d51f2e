"""Hyperparameter sweeps with Ray Tune: search-space translation (:mod:`.space`), the trial
(:mod:`.trainable`), the sweep runner (:mod:`.runner`) and overfitting statistics
(:mod:`.overfitting`)."""
