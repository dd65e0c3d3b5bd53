"""pada_nas: PA&DA supernet training and ranking on a NAS-Bench-201-style
search space, built on pada_ext as a user would build on it."""
