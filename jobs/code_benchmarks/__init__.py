"""Code benchmarks: names, data loading, prompts, stop words, post-processing, test assembly."""
